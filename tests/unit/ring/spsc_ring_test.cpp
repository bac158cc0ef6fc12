// Single-threaded behaviour of the SPSC ring: edges, wrap-around, bulk calls, in-place consume.
#include "nvmux/ring/spsc_ring.hpp"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

namespace nvmux {
namespace {

TEST(SpscRing, CreateRejectsCapacitiesThatAreNotPowersOfTwo) {
  for (std::uint64_t bad : std::initializer_list<std::uint64_t>{0, 3, 6, 1000, kMaxRingCapacity * 2}) {
    auto r = SpscRing<int>::create(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("not a power of two"), std::string::npos) << r.status().message();
  }
  EXPECT_TRUE(SpscRing<int>::create(1).ok());
}

TEST(SpscRingDeathTest, ConstructorCrashesClearlyOnBadCapacity) {
  EXPECT_DEATH(SpscRing<int> ring(12), "ring capacity 12 is not a power of two");
}

TEST(SpscRing, EmptyAndFullEdges) {
  SpscRing<int> ring(4);
  int out = -1;
  EXPECT_EQ(ring.capacity(), 4u);
  EXPECT_FALSE(ring.try_pop(out));
  EXPECT_TRUE(ring.empty_approx());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(ring.try_push(i));
  EXPECT_FALSE(ring.try_push(99));
  EXPECT_EQ(ring.size_approx(), 4u);
  EXPECT_TRUE(ring.try_pop(out));
  EXPECT_EQ(out, 0);
  EXPECT_TRUE(ring.try_push(4));  // one slot freed, one push fits
  EXPECT_FALSE(ring.try_push(5));
  for (int want = 1; want <= 4; ++want) {
    ASSERT_TRUE(ring.try_pop(out));
    EXPECT_EQ(out, want);
  }
  EXPECT_FALSE(ring.try_pop(out));
  EXPECT_EQ(ring.size_approx(), 0u);
}

TEST(SpscRing, EveryPowerOfTwoCapacityFillsAndDrainsInOrder) {
  for (std::uint64_t cap = 1; cap <= (1u << 20); cap *= 2) {
    SpscRing<std::uint32_t> ring(cap);
    for (std::uint32_t i = 0; i < cap; ++i) ASSERT_TRUE(ring.try_push(i)) << "cap " << cap << " i " << i;
    ASSERT_FALSE(ring.try_push(0)) << cap;
    std::uint32_t out = 0;
    for (std::uint32_t i = 0; i < cap; ++i) {
      ASSERT_TRUE(ring.try_pop(out));
      ASSERT_EQ(out, i);
    }
    ASSERT_FALSE(ring.try_pop(out)) << cap;
  }
}

TEST(SpscRing, LowBitsWrapManyTimes) {
  SpscRing<std::uint64_t> ring(8);
  std::uint64_t next_in = 0, next_out = 0;
  // 1M elements through 8 slots: the slot index wraps 125 000 times, in uneven steps.
  while (next_out < 1'000'000) {
    std::size_t burst = 1 + next_in % 7;
    for (std::size_t i = 0; i < burst && ring.try_push(next_in); ++i) ++next_in;
    std::uint64_t out = 0;
    std::size_t drain = 1 + next_out % 5;
    for (std::size_t i = 0; i < drain && ring.try_pop(out); ++i) ASSERT_EQ(out, next_out++);
  }
}

TEST(SpscRing, SixtyFourBitIndicesCrossTheirWrap) {
  // Start a few laps below 2^64 so the free-running counters overflow mid-test.
  SpscRing<std::uint64_t> ring(16, UINT64_MAX - 40);
  std::uint64_t seq = 0, out = 0;
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 11; ++i) ASSERT_TRUE(ring.try_push(seq + i));
    EXPECT_EQ(ring.size_approx(), 11u);
    for (int i = 0; i < 11; ++i) {
      ASSERT_TRUE(ring.try_pop(out));
      ASSERT_EQ(out, seq + i);
    }
    seq += 11;
  }
  EXPECT_FALSE(ring.try_pop(out));
}

TEST(SpscRing, BulkPushFitsPartly) {
  SpscRing<int> ring(8);
  std::vector<int> first{0, 1, 2, 3, 4};
  EXPECT_EQ(ring.push_bulk(first), 5u);
  std::vector<int> second{5, 6, 7, 8, 9, 10};
  EXPECT_EQ(ring.push_bulk(second), 3u);  // only 3 slots left
  EXPECT_EQ(ring.push_bulk(second), 0u);
  std::array<int, 10> out{};
  EXPECT_EQ(ring.pop_bulk(out), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(out[i], i);
  EXPECT_EQ(ring.pop_bulk(out), 0u);
  EXPECT_EQ(ring.push_bulk(std::span<const int>()), 0u);
}

TEST(SpscRing, BulkCallsSplitAcrossTheWrap) {
  SpscRing<int> ring(8);
  std::array<int, 6> six{};
  std::iota(six.begin(), six.end(), 0);
  ASSERT_EQ(ring.push_bulk(six), 6u);
  std::array<int, 6> out{};
  ASSERT_EQ(ring.pop_bulk(out), 6u);  // head and tail now at slot 6
  std::iota(six.begin(), six.end(), 100);
  ASSERT_EQ(ring.push_bulk(six), 6u);  // slots 6,7,0,1,2,3
  std::array<int, 4> part{};
  ASSERT_EQ(ring.pop_bulk(part), 4u);
  EXPECT_EQ(part, (std::array<int, 4>{100, 101, 102, 103}));
  ASSERT_EQ(ring.pop_bulk(part), 2u);
  EXPECT_EQ(part[0], 104);
  EXPECT_EQ(part[1], 105);
}

TEST(SpscRing, ConsumeVisitsInPlaceAndPublishesOnceAtTheEnd) {
  SpscRing<int> ring(16);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(ring.try_push(i));
  std::vector<int> seen;
  std::size_t n = ring.consume(
      [&](int& v) {
        seen.push_back(v);
        // Nothing is freed until the whole batch is visited.
        EXPECT_EQ(ring.size_approx(), 10u);
      },
      4);
  EXPECT_EQ(n, 4u);
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(ring.size_approx(), 6u);
  EXPECT_EQ(ring.consume([&](int& v) { seen.push_back(v); }, 100), 6u);
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(seen.back(), 9);
  EXPECT_EQ(ring.consume([](int&) {}, 100), 0u);
}

struct Counted {
  static inline int live = 0;
  std::string text;
  explicit Counted(std::string t) : text(std::move(t)) { ++live; }
  Counted(const Counted& o) : text(o.text) { ++live; }
  Counted(Counted&& o) noexcept : text(std::move(o.text)) { ++live; }
  Counted& operator=(Counted&& o) noexcept {
    text = std::move(o.text);
    return *this;
  }
  Counted& operator=(const Counted&) = default;
  ~Counted() { --live; }
};

TEST(SpscRing, NonTrivialElementsAreConstructedAndDestroyedExactlyOnce) {
  Counted::live = 0;
  {
    SpscRing<Counted> ring(4);
    EXPECT_TRUE(ring.try_emplace("a"));
    EXPECT_TRUE(ring.try_push(Counted("b")));
    EXPECT_TRUE(ring.try_emplace("c"));
    EXPECT_EQ(Counted::live, 3);
    Counted out("x");
    EXPECT_TRUE(ring.try_pop(out));
    EXPECT_EQ(out.text, "a");
    EXPECT_EQ(Counted::live, 3);  // two in the ring, one in `out`
  }
  EXPECT_EQ(Counted::live, 0);  // the ring destroyed what it still held
}

TEST(SpscRing, MoveOnlyElements) {
  SpscRing<std::unique_ptr<int>> ring(2);
  EXPECT_TRUE(ring.try_emplace(std::make_unique<int>(7)));
  std::unique_ptr<int> out;
  EXPECT_TRUE(ring.try_pop(out));
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(*out, 7);
}

}  // namespace
}  // namespace nvmux
