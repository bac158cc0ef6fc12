// DmaArena and DmaBuffer: translation only inside the arena, allocation limits and alignment,
// zero-filled and coalesced memory, buffers that keep their arena alive.
#include "nvmux/nvme/dma.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace nvmux::nvme {
namespace {

TEST(DmaArena, TranslatesOnlyInsideTheArenaAndReusesFreedMemory) {
  auto arena = DmaArena::create(1 << 20).value();
  auto a = arena->alloc(100, 64).value();
  EXPECT_EQ(a.iova() % 64, 0u);
  EXPECT_EQ(arena->translate(a.iova(), 100), a.data());
  EXPECT_EQ(arena->translate(arena->iova_base() - 8, 16), nullptr);
  EXPECT_EQ(arena->translate(arena->iova_base() + arena->size() - 8, 16), nullptr);
  EXPECT_EQ(arena->translate(0, 1), nullptr);
  auto big = arena->alloc(arena->size() + 1);
  EXPECT_EQ(big.status().code(), StatusCode::kUnavailable);
  {
    auto b = arena->alloc(4096, 4096).value();
    EXPECT_EQ(b.iova() % 4096, 0u);
  }
  a.reset();
  EXPECT_EQ(arena->bytes_in_use(), 0u);
  auto all = arena->alloc(arena->size());  // everything coalesced back into one range
  EXPECT_TRUE(all.ok());
}

TEST(DmaArena, RefusesBadSizesAndAlignments) {
  EXPECT_EQ(DmaArena::create(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DmaArena::create(4096, DmaArena::kDefaultIovaBase + 512).status().code(), StatusCode::kInvalidArgument);
  auto arena = DmaArena::create(1 << 16).value();
  EXPECT_EQ(arena->size(), std::size_t{1} << 16);
  EXPECT_EQ(arena->alloc(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(arena->alloc(64, 3).status().code(), StatusCode::kInvalidArgument) << "not a power of two";
  EXPECT_EQ(arena->alloc(64, 8192).status().code(), StatusCode::kInvalidArgument) << "above the page";
  EXPECT_EQ(arena->bytes_in_use(), 0u);
}

TEST(DmaArena, SizeRoundsUpToAPageAndIovaIsNotTheHostAddress) {
  auto arena = DmaArena::create(5000, 0x10000).value();
  EXPECT_EQ(arena->size(), 8192u);
  EXPECT_EQ(arena->iova_base(), 0x10000u);
  auto buf = arena->alloc(10).value();
  EXPECT_NE(buf.iova(), reinterpret_cast<std::uintptr_t>(buf.data()));
  EXPECT_EQ(arena->translate(buf.iova(), 10), buf.data());
  EXPECT_EQ(arena->translate(reinterpret_cast<std::uintptr_t>(buf.data()), 10), nullptr)
      << "a host pointer where an IOVA belongs must not translate";
  EXPECT_EQ(arena->bytes_in_use(), DmaArena::kAllocGranuleBytes) << "allocations are whole granules";
}

TEST(DmaArena, MemoryComesBackZeroFilled) {
  auto arena = DmaArena::create(4096).value();
  {
    auto dirty = arena->alloc(4096).value();
    std::memset(dirty.data(), 0xa5, dirty.size());
  }
  auto clean = arena->alloc(4096).value();
  EXPECT_TRUE(std::all_of(clean.data(), clean.data() + clean.size(), [](std::byte b) { return b == std::byte{0}; }));
}

TEST(DmaArena, FreedNeighboursCoalesceInAnyOrder) {
  auto arena = DmaArena::create(3 * 4096).value();
  auto a = arena->alloc(4096).value();
  auto b = arena->alloc(4096).value();
  auto c = arena->alloc(4096).value();
  EXPECT_EQ(arena->alloc(64).status().code(), StatusCode::kUnavailable) << "the arena is full";
  a.reset();
  c.reset();
  EXPECT_EQ(arena->alloc(2 * 4096).status().code(), StatusCode::kUnavailable) << "two free pages, not adjacent";
  b.reset();
  EXPECT_TRUE(arena->alloc(3 * 4096).ok()) << "the middle release joins both neighbours";
}

TEST(DmaBuffer, SlicesAndKeepsItsArenaAlive) {
  auto arena = DmaArena::create(4096).value();
  auto buf = arena->alloc(256).value();
  IoVec part = buf.slice(16, 32);
  EXPECT_EQ(part.iova, buf.iova() + 16);
  EXPECT_EQ(part.bytes, 32u);
  EXPECT_EQ(buf.whole().bytes, 256u);
  std::weak_ptr<DmaArena> weak = arena;
  arena.reset();
  EXPECT_FALSE(weak.expired()) << "a live buffer holds its arena";
  buf.data()[255] = std::byte{7};  // still mapped
  DmaBuffer moved = std::move(buf);
  EXPECT_FALSE(buf.valid());  // NOLINT(bugprone-use-after-move): a moved-from buffer is empty
  EXPECT_TRUE(moved.valid());
  moved.reset();
  EXPECT_TRUE(weak.expired()) << "the last buffer's release frees the arena";
}

TEST(DmaBufferDeathTest, SliceOutsideTheBufferCrashes) {
  auto arena = DmaArena::create(4096).value();
  auto buf = arena->alloc(64).value();
  EXPECT_DEATH((void)buf.slice(60, 8), "outside a 64-byte buffer");
}

}  // namespace
}  // namespace nvmux::nvme
