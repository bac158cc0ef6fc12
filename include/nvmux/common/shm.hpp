#pragma once
// SharedMemory: an anonymous memory file (memfd) mapped MAP_SHARED, the carrier of every
// cross-process ring. Pass fd() to another process (fork, SCM_RIGHTS) and map it there with
// SharedMemory::map.
//
// Threading: the object is owner-thread-only; the mapped bytes are shared and each structure placed
// in them states its own contract. Move-only; the destructor unmaps and closes.

#include <cstddef>
#include <span>
#include <string>

#include "nvmux/common/status.hpp"

namespace nvmux {

class SharedMemory {
 public:
  // A new memfd of `bytes` bytes (rounded up to the page size), zero-filled, mapped read-write.
  // Errors: kInvalidArgument (bytes == 0), kInternal (memfd_create/ftruncate/mmap failed).
  static Result<SharedMemory> create(const std::string& name, std::size_t bytes);
  // Maps an existing memfd (duplicates the fd; the caller keeps its own). `bytes` must not exceed
  // the file's size. Errors: kInvalidArgument (bytes == 0 or larger than the file), kInternal.
  static Result<SharedMemory> map(int fd, std::size_t bytes);

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
