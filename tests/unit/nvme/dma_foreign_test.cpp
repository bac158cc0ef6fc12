// DmaArena's foreign regions: memory the arena did not allocate, made device-reachable.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <thread>
#include <vector>

#include "nvmux/nvme/dma.hpp"

namespace nvmux::nvme {
namespace {

struct Pages {
  explicit Pages(std::size_t n) : bytes(n * 4096) {
    ptr = static_cast<std::byte*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  }
  ~Pages() { munmap(ptr, bytes); }
  std::span<std::byte> span() const { return {ptr, bytes}; }
  std::byte* ptr;
  std::size_t bytes;
};

TEST(DmaForeign, TranslatesInsideTheRegionOnlyAndOnlyWhileMapped) {
  auto arena = DmaArena::create(1 << 20).value();
  Pages pages(4);
  auto region = arena->map_foreign(pages.span());
  ASSERT_TRUE(region.ok()) << region.status().to_string();
  EXPECT_EQ(arena->foreign_regions_in_use(), 1u);
  EXPECT_EQ(arena->translate(region->iova(), pages.bytes), pages.ptr);
  EXPECT_EQ(arena->translate(region->iova() + 4096, 100), pages.ptr + 4096);
  EXPECT_EQ(arena->translate(region->iova() + 1, pages.bytes), nullptr);  // one byte past the end
  EXPECT_EQ(arena->translate(region->iova() - 1, 2), nullptr);
  EXPECT_FALSE(arena->owns(pages.ptr, 1));
  std::uint64_t iova = region->iova();
  region->reset();
  EXPECT_EQ(arena->translate(iova, 1), nullptr);
  EXPECT_EQ(arena->foreign_regions_in_use(), 0u);
}

TEST(DmaForeign, RegionsGetDisjointIovasAndTheArenaKeepsItsOwn) {
  auto arena = DmaArena::create(1 << 20).value();
  auto own = arena->alloc(4096).value();
  Pages a(1), b(1);
  auto ra = arena->map_foreign(a.span()).value();
  auto rb = arena->map_foreign(b.span()).value();
  EXPECT_NE(ra.iova(), rb.iova());
  EXPECT_EQ(arena->translate(ra.iova(), 4096), a.ptr);
  EXPECT_EQ(arena->translate(rb.iova(), 4096), b.ptr);
  EXPECT_EQ(arena->translate(own.iova(), 4096), own.data());
  EXPECT_TRUE(arena->owns(own.data(), 4096));
}

// What a backend pinning regions on its own (uring's registered buffers) relies on: every map and
// unmap changes the epoch, and a slot's generation is 0 when free and new for every mapping, even
// of the same memory into the same slot.
TEST(DmaForeign, EveryMapAndUnmapChangesTheEpochAndEachMappingHasItsOwnGeneration) {
  auto arena = DmaArena::create(1 << 20).value();
  Pages pages(2);
  const std::uint64_t epoch0 = arena->foreign_epoch();
  auto first = arena->map_foreign(pages.span()).value();
  const std::size_t slot = (first.iova() - DmaArena::kForeignIovaBase) / DmaArena::kForeignRegionSpanBytes;
  const std::uint64_t generation = arena->foreign_generation(slot);
  EXPECT_NE(generation, 0u);
  EXPECT_NE(arena->foreign_epoch(), epoch0);
  auto view = arena->foreign_snapshot()[slot];
  EXPECT_EQ(view.host, pages.ptr);
  EXPECT_EQ(view.bytes, pages.bytes);
  EXPECT_EQ(view.generation, generation);
  const std::uint64_t epoch1 = arena->foreign_epoch();
  first.reset();
  EXPECT_NE(arena->foreign_epoch(), epoch1);
  EXPECT_EQ(arena->foreign_generation(slot), 0u);
  EXPECT_EQ(arena->foreign_snapshot()[slot].bytes, 0u);
  auto again = arena->map_foreign(pages.span()).value();
  ASSERT_EQ(again.iova(), DmaArena::kForeignIovaBase + slot * DmaArena::kForeignRegionSpanBytes);
  EXPECT_NE(arena->foreign_generation(slot), 0u);
  EXPECT_NE(arena->foreign_generation(slot), generation) << "a new mapping must not look like the old one";
}

TEST(DmaForeign, BadRegionsAreClearErrors) {
  auto arena = DmaArena::create(1 << 20).value();
  Pages p(2);
  EXPECT_EQ(arena->map_foreign({}).status().code(), StatusCode::kInvalidArgument);
  auto misaligned = arena->map_foreign(p.span().subspan(8));
  EXPECT_EQ(misaligned.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(misaligned.status().message().find("not page aligned"), std::string::npos);
  std::vector<ForeignRegion> all;
  for (std::size_t i = 0; i < DmaArena::kMaxForeignRegions; ++i) all.push_back(arena->map_foreign(p.span()).value());
  auto full = arena->map_foreign(p.span());
  EXPECT_EQ(full.status().code(), StatusCode::kUnavailable);
  all.pop_back();
  EXPECT_TRUE(arena->map_foreign(p.span()).ok());  // a freed slot is reused
}

// A backend behind an IOMMU (vfio) follows every region: mapped at the region's IOVA before
// map_foreign returns, unmapped when the handle goes; a refused mapping fails map_foreign and
// leaves the slot free.
TEST(DmaForeign, IommuHooksFollowEveryRegion) {
  auto arena = DmaArena::create(1 << 20).value();
  struct Call {
    bool map;
    std::uint64_t iova;
    std::size_t bytes;
  };
  std::vector<Call> calls;
  bool refuse = false;
  arena->set_iommu_hooks(IommuHooks{[&](std::uint64_t iova, std::byte*, std::size_t bytes) {
                                      if (refuse) return Status::error(StatusCode::kResourceExhausted, "no room");
                                      calls.push_back({true, iova, bytes});
                                      return Status();
                                    },
                                    [&](std::uint64_t iova, std::size_t bytes) {
                                      calls.push_back({false, iova, bytes});
                                    }});
  Pages p(3);
  {
    auto region = arena->map_foreign(p.span().first(2 * 4096 + 100)).value();
    ASSERT_EQ(calls.size(), 1u);
    EXPECT_TRUE(calls[0].map);
    EXPECT_EQ(calls[0].iova, region.iova());
    EXPECT_EQ(calls[0].bytes, 3u * 4096) << "rounded up to whole pages";
  }
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_FALSE(calls[1].map);
  EXPECT_EQ(calls[1].iova, calls[0].iova);
  EXPECT_EQ(calls[1].bytes, 3u * 4096);
  refuse = true;
  auto refused = arena->map_foreign(p.span());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(arena->foreign_regions_in_use(), 0u);
}

// Huge pages when the system has them, 4 KiB pages otherwise: either way a working arena.
TEST(DmaArenaPages, HugePreferredFallsBackToSmallPages) {
  auto arena = DmaArena::create(3 << 20, DmaArena::kDefaultIovaBase, DmaPages::kHugePreferred).value();
  EXPECT_TRUE(arena->page_bytes() == DmaArena::kHugePageBytes || arena->page_bytes() == 4096u);
  EXPECT_EQ(arena->size() % arena->page_bytes(), 0u);
  auto buf = arena->alloc(8192).value();
  EXPECT_EQ(arena->translate(buf.iova(), 8192), buf.data());
  EXPECT_EQ(DmaArena::create(4096).value()->page_bytes(), 4096u);
}

// The device thread translates while another thread maps and unmaps other regions.
TEST(DmaForeign, TranslateRacesMapAndUnmapOfOtherRegions) {
  auto arena = DmaArena::create(1 << 20).value();
  Pages stable(1), churn(1);
  auto region = arena->map_foreign(stable.span()).value();
  std::atomic<bool> stop{false};
  std::thread mapper([&] {
    for (int i = 0; i < 20000 && !stop.load(std::memory_order_relaxed); ++i) {
      auto r = arena->map_foreign(churn.span());
      ASSERT_TRUE(r.ok());
    }
  });
  for (int i = 0; i < 200000; ++i) ASSERT_EQ(arena->translate(region.iova() + 8, 8), stable.ptr + 8);
  stop = true;
  mapper.join();
}

}  // namespace
}  // namespace nvmux::nvme
