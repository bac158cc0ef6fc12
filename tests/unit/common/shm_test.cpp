#include "nvmux/common/shm.hpp"

#include <gtest/gtest.h>
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

TEST(SharedMemory, MoveTransfersOwnership) {
  auto a = SharedMemory::create("test", 4096);
  ASSERT_TRUE(a.ok());
  SharedMemory moved = std::move(*a);
  EXPECT_NE(moved.data(), nullptr);
  EXPECT_EQ(a->data(), nullptr);  // NOLINT(bugprone-use-after-move): checking the moved-from state
}

}  // namespace
}  // namespace nvmux
