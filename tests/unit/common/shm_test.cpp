#include "nvmux/common/shm.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

namespace nvmux {
namespace {

TEST(SharedMemory, CreateIsZeroedAndPageRounded) {
  auto shm = SharedMemory::create("test", 100);
  ASSERT_TRUE(shm.ok()) << shm.status().to_string();
  EXPECT_GE(shm->size(), 100u);
  EXPECT_EQ(shm->size() % static_cast<std::size_t>(sysconf(_SC_PAGESIZE)), 0u);
  for (std::byte b : shm->bytes()) ASSERT_EQ(b, std::byte{0});
}

TEST(SharedMemory, TwoMappingsSeeTheSameBytes) {
  auto a = SharedMemory::create("test", 4096);
  ASSERT_TRUE(a.ok());
  auto b = SharedMemory::map(a->fd(), 4096);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  std::memcpy(a->data(), "hello", 5);
  EXPECT_EQ(std::memcmp(b->data(), "hello", 5), 0);
}

TEST(SharedMemory, ForkedChildWritesAreSeen) {
  auto a = SharedMemory::create("test", 4096);
  ASSERT_TRUE(a.ok());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::memcpy(a->data(), "child", 5);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_EQ(std::memcmp(a->data(), "child", 5), 0);
}

TEST(SharedMemory, BadSizesAreClearErrors) {
  EXPECT_EQ(SharedMemory::create("test", 0).status().code(), StatusCode::kInvalidArgument);
  auto a = SharedMemory::create("test", 4096);
  ASSERT_TRUE(a.ok());
  auto big = SharedMemory::map(a->fd(), 1 << 20);
  EXPECT_EQ(big.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(big.status().message().find("fewer than"), std::string::npos);
}

// A child (standing in for an untrusted peer) tries to truncate the file; returns its errno, 0 if
// the truncate went through.
int truncate_in_child(int fd) {
  pid_t pid = fork();
  if (pid == 0) _exit(ftruncate(fd, 0) == 0 ? 0 : errno);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(SharedMemory, AnUnsealedFileIsRefusedByMap) {
  int fd = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  auto refused = SharedMemory::map(fd, 4096);
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(refused.status().message().find("not sealed against shrinking"), std::string::npos)
      << refused.status().message();
  // Sealed against shrinking only: still refused, naming the missing seal.
  ASSERT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
  auto half = SharedMemory::map(fd, 4096);
  EXPECT_NE(half.status().message().find("not sealed against growing"), std::string::npos) << half.status().message();
  // The reason for the refusal: the peer may truncate it whenever it likes.
  EXPECT_EQ(truncate_in_child(fd), EPERM);  // shrink is sealed now...
  close(fd);
  int other = memfd_create("unsealed", MFD_CLOEXEC);
  ASSERT_GE(other, 0);
  ASSERT_EQ(ftruncate(other, 4096), 0);
  EXPECT_EQ(truncate_in_child(other), 0);  // ...and without seals a child truncates freely.
  EXPECT_EQ(SharedMemory::map(other, 4096).status().code(), StatusCode::kPermissionDenied);
  close(other);
}

TEST(SharedMemory, ANonMemfdIsRefusedByMap) {
  int fd = open("/dev/zero", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto refused = SharedMemory::map(fd, 4096);
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(refused.status().message().find("cannot be sealed"), std::string::npos) << refused.status().message();
  close(fd);
}

TEST(SharedMemory, ACreatedFileCannotBeResizedOrResealedByAPeer) {
  auto a = SharedMemory::create("sealed", 8192);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(truncate_in_child(a->fd()), EPERM);
  EXPECT_NE(ftruncate(a->fd(), 1 << 20), 0);                       // growing is sealed too
  EXPECT_NE(fcntl(a->fd(), F_ADD_SEALS, F_SEAL_FUTURE_WRITE), 0);  // F_SEAL_SEAL: no new seals
  EXPECT_EQ(fcntl(a->fd(), F_GET_SEALS) & SharedMemory::kRequiredSeals, SharedMemory::kRequiredSeals);
  // Still mappable, and the bytes are all still there.
  auto b = SharedMemory::map(a->fd(), 8192);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  b->data()[8191] = std::byte{7};
  EXPECT_EQ(a->data()[8191], std::byte{7});
}

TEST(SharedMemory, MoveTransfersOwnership) {
  auto a = SharedMemory::create("test", 4096);
  ASSERT_TRUE(a.ok());
  SharedMemory moved = std::move(*a);
  EXPECT_NE(moved.data(), nullptr);
  EXPECT_EQ(a->data(), nullptr);  // NOLINT(bugprone-use-after-move): checking the moved-from state
}

}  // namespace
}  // namespace nvmux
