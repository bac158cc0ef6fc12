#include "nvmux/common/shm.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

static_assert(nvmux::SharedMemory::kRequiredSeals == (F_SEAL_SHRINK | F_SEAL_GROW));

namespace nvmux {

namespace {
std::size_t round_to_page(std::size_t bytes) {
  auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page;
}
}  // namespace

Result<SharedMemory> SharedMemory::create(const std::string& name, std::size_t bytes) {
  if (bytes == 0) return Status::error(StatusCode::kInvalidArgument, "shared memory '{}' of 0 bytes", name);
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return Status::from_errno(errno, fmt::format("memfd_create('{}')", name));
  std::size_t size = round_to_page(bytes);
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    close(fd);
    return Status::from_errno(err, fmt::format("ftruncate('{}', {} bytes)", name, size));
  }
  // F_SEAL_SEAL too: no one who receives the fd may add seals of their own (F_SEAL_FUTURE_WRITE
  // would stop this side from mapping it again).
  if (fcntl(fd, F_ADD_SEALS, kRequiredSeals | F_SEAL_SEAL) != 0) {
    int err = errno;
    close(fd);
    return Status::from_errno(err, fmt::format("sealing '{}' against resizing", name));
  }
  auto mapped = map(fd, size);
  close(fd);  // map() keeps its own duplicate
  return mapped;
}

Result<SharedMemory> SharedMemory::map(int fd, std::size_t bytes) {
  if (bytes == 0) return Status::error(StatusCode::kInvalidArgument, "mapping 0 bytes of fd {}", fd);
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    int err = errno;
    return Status::error(StatusCode::kPermissionDenied,
                         "fd {} cannot be sealed ({}): only a memfd sealed against shrink and grow is mapped", fd,
                         std::strerror(err));
  }
  if ((seals & kRequiredSeals) != kRequiredSeals) {
    return Status::error(StatusCode::kPermissionDenied,
                         "fd {} is not sealed against {}: its owner could resize it under this mapping (SIGBUS)", fd,
                         (seals & F_SEAL_SHRINK) == 0 ? "shrinking" : "growing");
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) return Status::from_errno(errno, fmt::format("fstat(fd {})", fd));
  if (static_cast<std::size_t>(st.st_size) < bytes) {
    return Status::error(StatusCode::kInvalidArgument, "fd {} holds {} bytes, fewer than the {} asked to map", fd,
                         st.st_size, bytes);
  }
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return Status::from_errno(errno, fmt::format("dup(fd {})", fd));
  void* addr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, own, 0);
  if (addr == MAP_FAILED) {
    int err = errno;
    close(own);
    return Status::from_errno(err, fmt::format("mmap(fd {}, {} bytes)", fd, bytes));
  }
  SharedMemory shm;
  shm.fd_ = own;
  shm.addr_ = addr;
  shm.size_ = bytes;
  return shm;
}

SharedMemory::SharedMemory(SharedMemory&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), addr_(std::exchange(other.addr_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

SharedMemory& SharedMemory::operator=(SharedMemory&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
    addr_ = std::exchange(other.addr_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SharedMemory::~SharedMemory() { reset(); }

void SharedMemory::reset() {
  if (addr_ != nullptr) munmap(addr_, size_);
  if (fd_ >= 0) close(fd_);
  addr_ = nullptr;
  fd_ = -1;
  size_ = 0;
}

}  // namespace nvmux
