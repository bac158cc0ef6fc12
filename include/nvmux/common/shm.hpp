#pragma once
// SharedMemory: an anonymous memory file (memfd) mapped MAP_SHARED, the carrier of every
// cross-process ring. Pass fd() to another process (fork, SCM_RIGHTS) and map it there with
// SharedMemory::map.
//
// Threading: the object is owner-thread-only; the mapped bytes are shared and each structure placed
// in them states its own contract. Move-only; the destructor unmaps and closes.
//
// Size seals: a process that can ftruncate a file another process maps can make that process take
// SIGBUS on its next access. So create() makes every memfd with MFD_ALLOW_SEALING and seals it
// against shrink and grow (and against further seals) before it is ever handed out, and map()
// refuses any fd that does not carry the shrink and grow seals.

#include <cstddef>
#include <span>
#include <string>

#include "nvmux/common/status.hpp"

namespace nvmux {

class SharedMemory {
 public:
  // A new memfd of `bytes` bytes (rounded up to the page size), zero-filled, mapped read-write,
  // sealed with kRequiredSeals | F_SEAL_SEAL. Errors: kInvalidArgument (bytes == 0), otherwise
  // Status::from_errno of the failed memfd_create/ftruncate/fcntl/mmap.
  static Result<SharedMemory> create(const std::string& name, std::size_t bytes);
  // Maps a memfd another process created (duplicates the fd; the caller keeps its own). `bytes`
  // must not exceed the file's size. Errors: kInvalidArgument (bytes == 0, or larger than the
  // file), kPermissionDenied (the file lacks F_SEAL_SHRINK or F_SEAL_GROW, or cannot be sealed at
  // all), otherwise Status::from_errno of the failed fstat/fcntl/mmap.
  static Result<SharedMemory> map(int fd, std::size_t bytes);

  // The seals map() requires: the size of a mapped file can never change.
  static constexpr int kRequiredSeals = 0x0002 /*F_SEAL_SHRINK*/ | 0x0004 /*F_SEAL_GROW*/;

  SharedMemory() = default;
  SharedMemory(SharedMemory&& other) noexcept;
  SharedMemory& operator=(SharedMemory&& other) noexcept;
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  ~SharedMemory();

  int fd() const { return fd_; }
  std::byte* data() const { return static_cast<std::byte*>(addr_); }
  std::size_t size() const { return size_; }
  std::span<std::byte> bytes() const { return {data(), size_}; }

 private:
  void reset();
  int fd_ = -1;
  void* addr_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace nvmux
