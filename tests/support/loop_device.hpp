#pragma once
// A real block device for tests: a scratch file attached to a free loop device (/dev/loopN) with
// direct I/O, so the uring backend's bdev path (BLKGETSIZE64, O_DIRECT on a device, fallocate on
// a device) runs against the kernel's block layer rather than a filesystem.
//
// The device is configured with LO_FLAGS_AUTOCLEAR: the kernel detaches it when its last opener
// closes it. So a test attaches, opens the device in the code under test, and then drops the
// LoopDevice; the device goes away with the code under test's last fd, whatever the test does.
// The scratch file is unlinked at once: the loop device holds it open.
//
// Needs root (or CAP_SYS_ADMIN) and the loop driver; unavailable() says why when it cannot work.

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "nvmux/common/status.hpp"

namespace nvmux::test {

class LoopDevice {
 public:
  // Creates `scratch_path` at `bytes`, attaches it to a free loop device and unlinks it.
  static Result<LoopDevice> attach(const std::string& scratch_path, std::uint64_t bytes) {
    int file = ::open(scratch_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (file < 0) return Status::from_errno(errno, "create " + scratch_path);
    ::unlink(scratch_path.c_str());
    if (::ftruncate(file, static_cast<off_t>(bytes)) != 0) {
      Status s = Status::from_errno(errno, fmt::format("ftruncate {} to {} bytes", scratch_path, bytes));
      ::close(file);
      return s;
    }
    int control = ::open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (control < 0) {
      Status s = Status::from_errno(errno, "open /dev/loop-control");
      ::close(file);
      return s;
    }
    // Another process (ctest runs tests in parallel) may take the device we were offered; try again.
    Status last = Status::error(StatusCode::kUnavailable, "no free loop device");
    for (int attempt = 0; attempt < 16; ++attempt) {
      int n = ::ioctl(control, LOOP_CTL_GET_FREE);
      if (n < 0) {
        last = Status::from_errno(errno, "LOOP_CTL_GET_FREE");
        break;
      }
      std::string path = fmt::format("/dev/loop{}", n);
      int dev = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
      if (dev < 0) {
        last = Status::from_errno(errno, "open " + path);
        continue;
      }
      loop_config config{};
      config.fd = static_cast<std::uint32_t>(file);
      config.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
      if (::ioctl(dev, LOOP_CONFIGURE, &config) == 0) {
        ::close(control);
        ::close(file);  // the loop device keeps its own reference
        return LoopDevice(std::move(path), dev);
      }
      last = Status::from_errno(errno, "LOOP_CONFIGURE " + path);
      ::close(dev);
      if (errno != EBUSY) break;
    }
    ::close(control);
    ::close(file);
    return last;
  }

  // Why loop devices cannot be used here ("" when they can): tries one 1 MiB device.
  static std::string unavailable(const std::string& scratch_dir) {
    auto probe = attach(fmt::format("{}/nvmux-loop-probe-{}.img", scratch_dir, ::getpid()), 1u << 20);
    return probe.ok() ? std::string() : probe.status().to_string();
  }

  LoopDevice(LoopDevice&& other) noexcept : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}
  LoopDevice& operator=(LoopDevice&& other) noexcept {
    if (this != &other) {
      close_fd();
      path_ = std::move(other.path_);
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;
  ~LoopDevice() { close_fd(); }

  const std::string& path() const { return path_; }

 private:
  LoopDevice(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  void close_fd() {
    if (fd_ >= 0) ::close(fd_);  // the last close of the device detaches it (autoclear)
    fd_ = -1;
  }

  std::string path_;
  int fd_ = -1;
};

}  // namespace nvmux::test
