// walk_prps: PRP1 alone, PRP1 + PRP2, PRP lists chained through their last entry, and the NVMe
// status for each malformed or out-of-arena entry.
#include "prp.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace nvmux::nvme {
namespace {

struct Piece {
  std::byte* host;
  std::size_t bytes;
  bool operator==(const Piece&) const = default;
};

class PrpWalk : public ::testing::Test {
 protected:
  void SetUp() override { arena_ = DmaArena::create(64 * kPageBytes).value(); }

  // The IOVA and host pointer of page `n` of the arena.
  std::uint64_t page(std::size_t n) const { return arena_->iova_base() + n * kPageBytes; }
  std::byte* host(std::uint64_t iova) const { return arena_->translate(iova, 1); }
  std::uint64_t* list_at(std::uint64_t iova) const { return reinterpret_cast<std::uint64_t*>(host(iova)); }

  std::pair<std::uint16_t, std::vector<Piece>> walk(std::uint64_t prp1, std::uint64_t prp2, std::size_t bytes) {
    std::vector<Piece> pieces;
    std::uint16_t status = walk_prps(*arena_, prp1, prp2, bytes, [&](std::byte* h, std::size_t len) {
      pieces.push_back({h, len});
    });
    return {status, pieces};
  }

  const std::uint16_t invalid_offset_ = make_status(GenericStatus::kInvalidPrpOffset, true);
  const std::uint16_t transfer_error_ = make_status(GenericStatus::kDataTransferError, true);
  std::shared_ptr<DmaArena> arena_;
};

TEST_F(PrpWalk, NothingToTransferIsNoSegment) {
  auto [status, pieces] = walk(0, 0, 0);
  EXPECT_EQ(status, 0u);
  EXPECT_TRUE(pieces.empty());
}

TEST_F(PrpWalk, Prp1AloneCoversATransferInsideItsPage) {
  auto [status, pieces] = walk(page(1) + 512, 0, 1024);
  EXPECT_EQ(status, 0u);
  EXPECT_EQ(pieces, (std::vector<Piece>{{host(page(1) + 512), 1024}}));
}

TEST_F(PrpWalk, Prp2IsTheSecondPageWhenTwoPagesSuffice) {
  auto [status, pieces] = walk(page(1) + 512, page(7), kPageBytes);
  EXPECT_EQ(status, 0u);
  EXPECT_EQ(pieces, (std::vector<Piece>{{host(page(1) + 512), kPageBytes - 512}, {host(page(7)), 512}}));
}

TEST_F(PrpWalk, Prp2PointsToAListBeyondTwoPages) {
  std::uint64_t* list = list_at(page(10));
  list[0] = page(3);
  list[1] = page(5);
  list[2] = page(4);
  auto [status, pieces] = walk(page(1), page(10), 3 * kPageBytes + 100);
  EXPECT_EQ(status, 0u);
  EXPECT_EQ(pieces, (std::vector<Piece>{{host(page(1)), kPageBytes},
                                        {host(page(3)), kPageBytes},
                                        {host(page(5)), kPageBytes},
                                        {host(page(4)), 100}}));
}

TEST_F(PrpWalk, AListThatReachesTheEndOfItsPageChainsThroughItsLastEntry) {
  // The list starts 16 bytes before a page end: one data entry, then the pointer to the next list.
  std::uint64_t first_list = page(11) - 16;
  list_at(first_list)[0] = page(3);
  list_at(first_list)[1] = page(20);  // next list page
  list_at(page(20))[0] = page(5);
  list_at(page(20))[1] = page(6);
  auto [status, pieces] = walk(page(1), first_list, 4 * kPageBytes);
  EXPECT_EQ(status, 0u);
  EXPECT_EQ(pieces, (std::vector<Piece>{{host(page(1)), kPageBytes},
                                        {host(page(3)), kPageBytes},
                                        {host(page(5)), kPageBytes},
                                        {host(page(6)), kPageBytes}}));
}

TEST_F(PrpWalk, MisalignedEntriesAreInvalidPrpOffset) {
  EXPECT_EQ(walk(page(1) + 2, 0, 64).first, invalid_offset_) << "PRP1 must be dword aligned";
  EXPECT_EQ(walk(page(1), page(2) + 8, 2 * kPageBytes).first, invalid_offset_) << "PRP2 as a page must be aligned";
  EXPECT_EQ(walk(page(1), page(10) + 4, 3 * kPageBytes).first, invalid_offset_) << "a list must be qword aligned";
  list_at(page(10))[0] = page(3) + 64;
  list_at(page(10))[1] = page(4);
  EXPECT_EQ(walk(page(1), page(10), 3 * kPageBytes).first, invalid_offset_) << "list entries must be page aligned";
}

TEST_F(PrpWalk, AnythingOutsideTheArenaIsADataTransferErrorWithNoHostPointer) {
  std::uint64_t outside = arena_->iova_base() + arena_->size();
  auto [status, pieces] = walk(outside, 0, 64);
  EXPECT_EQ(status, transfer_error_);
  EXPECT_TRUE(pieces.empty());
  EXPECT_EQ(walk(page(1), outside, 2 * kPageBytes).first, transfer_error_) << "PRP2 outside";
  EXPECT_EQ(walk(page(1), outside, 3 * kPageBytes).first, transfer_error_) << "list page outside";
  list_at(page(10))[0] = page(3);
  list_at(page(10))[1] = outside;
  auto [list_status, list_pieces] = walk(page(1), page(10), 3 * kPageBytes);
  EXPECT_EQ(list_status, transfer_error_) << "a list entry outside";
  EXPECT_EQ(list_pieces.size(), 2u) << "the pieces before the bad entry, none after";
  EXPECT_EQ(walk(page(63) + 8, 0, kPageBytes).first, transfer_error_)
      << "the rest of a transfer starting on the last page needs a PRP2, and 0 is outside";
}

}  // namespace
}  // namespace nvmux::nvme
