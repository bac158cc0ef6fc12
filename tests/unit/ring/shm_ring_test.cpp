// The ring placed in caller-provided memory: create, attach and every attach error, and the
// untrusted-peer checks.
#include <gtest/gtest.h>

#include <cstring>

#include "nvmux/common/shm.hpp"
#include "nvmux/ring/spsc_ring.hpp"

namespace nvmux {
namespace {

struct Desc {
  std::uint64_t seq;
  std::uint32_t op;
  std::uint32_t pad;
};

class ShmRingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = SharedMemory::create("ring-test", ring_region_bytes(kCap, sizeof(Desc)));
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    shm_ = std::move(*m);
    auto r = create_ring<Desc>(shm_.bytes(), kCap);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    region_ = *r;
  }
  RingHeader& header() { return region_.state->header; }

  static constexpr std::uint64_t kCap = 64;
  SharedMemory shm_;
  RingRegion<Desc> region_;
};

TEST_F(ShmRingTest, AttachFromASecondMappingSharesTheRing) {
  auto other = SharedMemory::map(shm_.fd(), shm_.size());
  ASSERT_TRUE(other.ok());
  auto attached = attach_ring<Desc>(other->bytes(), kCap);
  ASSERT_TRUE(attached.ok()) << attached.status().to_string();
  RingProducer<Desc> producer(region_);
  RingConsumer<Desc> consumer(*attached, Peer::kUntrusted);
  for (std::uint64_t i = 0; i < 1000; ++i) {
    ASSERT_TRUE(producer.try_push(Desc{i, 1, 0}));
    Desc d{};
    ASSERT_TRUE(consumer.try_pop(d));
    ASSERT_EQ(d.seq, i);
  }
  EXPECT_FALSE(consumer.failed());
}

TEST_F(ShmRingTest, AttachAcceptsAnyValidCapacityWhenNoneIsExpected) {
  auto attached = attach_ring<Desc>(shm_.bytes());
  ASSERT_TRUE(attached.ok());
  EXPECT_EQ(attached->capacity, kCap);
}

void expect_attach_error(std::span<std::byte> bytes, StatusCode code, const std::string& words,
                         std::uint64_t expected_capacity = 0) {
  auto r = attach_ring<Desc>(bytes, expected_capacity);
  ASSERT_FALSE(r.ok()) << "expected an error about: " << words;
  EXPECT_EQ(r.status().code(), code) << r.status().to_string();
  EXPECT_NE(r.status().message().find(words), std::string::npos) << r.status().message();
}

TEST_F(ShmRingTest, AttachErrorWrongMagic) {
  header().magic ^= 1;
  expect_attach_error(shm_.bytes(), StatusCode::kCorruption, "magic");
}

TEST_F(ShmRingTest, AttachErrorWrongVersion) {
  header().layout_version = 99;
  expect_attach_error(shm_.bytes(), StatusCode::kCorruption, "layout version is 99");
}

TEST_F(ShmRingTest, AttachErrorWrongElementSize) {
  header().elem_size = 24;
  expect_attach_error(shm_.bytes(), StatusCode::kCorruption, "element size is 24 bytes, this side expects 16");
}

TEST_F(ShmRingTest, AttachErrorCapacityNotAPowerOfTwo) {
  header().capacity = 48;
  expect_attach_error(shm_.bytes(), StatusCode::kCorruption, "capacity 48 is not a power of two");
}

TEST_F(ShmRingTest, AttachErrorCapacityNotTheExpectedOne) {
  expect_attach_error(shm_.bytes(), StatusCode::kCorruption, "capacity is 64, expected 128", 128);
}

TEST_F(ShmRingTest, AttachErrorSlotOffset) {
  header().slots_offset = 0;
  expect_attach_error(shm_.bytes(), StatusCode::kCorruption, "slot offset");
}

TEST_F(ShmRingTest, AttachErrorRegionTooSmallForTheSlots) {
  expect_attach_error(shm_.bytes().first(ring_region_bytes(kCap, sizeof(Desc)) - 1), StatusCode::kCorruption,
                      "needs 1408 bytes");
}

TEST_F(ShmRingTest, AttachErrorRegionTooSmallForTheHeader) {
  expect_attach_error(shm_.bytes().first(100), StatusCode::kInvalidArgument, "smaller than the 384-byte header");
}

TEST_F(ShmRingTest, AttachErrorMisalignedRegion) {
  expect_attach_error(shm_.bytes().subspan(8), StatusCode::kInvalidArgument, "not 128-byte aligned");
}

TEST_F(ShmRingTest, CreateErrors) {
  EXPECT_EQ(create_ring<Desc>(shm_.bytes(), 3).status().code(), StatusCode::kInvalidArgument);
  auto small = create_ring<Desc>(shm_.bytes().first(1000), kCap);
  EXPECT_EQ(small.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(small.status().message().find("region has 1000"), std::string::npos);
}

TEST_F(ShmRingTest, UntrustedConsumerDetectsATailTooFarAhead) {
  RingConsumer<Desc> consumer(region_, Peer::kUntrusted);
  region_.state->tail.value.store(kCap + 1);  // a producer claiming more than the ring holds
  Desc d{};
  EXPECT_FALSE(consumer.try_pop(d));
  ASSERT_TRUE(consumer.failed());
  EXPECT_EQ(consumer.status().code(), StatusCode::kCorruption);
  EXPECT_NE(consumer.status().message().find("producer tail moved from 0 to 65"), std::string::npos)
      << consumer.status().message();
  // Once failed, it stays failed even if the index looks sane again.
  region_.state->tail.value.store(1);
  EXPECT_FALSE(consumer.try_pop(d));
  EXPECT_EQ(consumer.consume([](Desc&) {}, 10), 0u);
}

TEST_F(ShmRingTest, UntrustedConsumerDetectsATailGoingBackwards) {
  RingProducer<Desc> producer(region_);
  RingConsumer<Desc> consumer(region_, Peer::kUntrusted);
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(producer.try_push(Desc{i, 0, 0}));
  Desc d{};
  ASSERT_TRUE(consumer.try_pop(d));  // sees tail 10
  for (int i = 0; i < 9; ++i) ASSERT_TRUE(consumer.try_pop(d));
  region_.state->tail.value.store(4);  // rewound below what was already consumed
  EXPECT_FALSE(consumer.try_pop(d));
  EXPECT_TRUE(consumer.failed());
  EXPECT_NE(consumer.status().message().find("from 10 to 4"), std::string::npos) << consumer.status().message();
}

TEST_F(ShmRingTest, UntrustedProducerDetectsAHeadPastTheTail) {
  RingProducer<Desc> producer(region_, Peer::kUntrusted);
  for (std::uint64_t i = 0; i < kCap; ++i) ASSERT_TRUE(producer.try_push(Desc{i, 0, 0}));
  region_.state->head.value.store(kCap + 5);  // a consumer claiming it read more than was written
  EXPECT_FALSE(producer.try_push(Desc{}));
  ASSERT_TRUE(producer.failed());
  EXPECT_NE(producer.status().message().find("consumer head moved from 0 to 69"), std::string::npos)
      << producer.status().message();
  EXPECT_EQ(producer.push_bulk(std::span<const Desc>()), 0u);
}

TEST_F(ShmRingTest, UntrustedProducerDetectsAHeadGoingBackwards) {
  RingProducer<Desc> producer(region_, Peer::kUntrusted);
  RingConsumer<Desc> consumer(region_);
  for (std::uint64_t i = 0; i < kCap; ++i) ASSERT_TRUE(producer.try_push(Desc{i, 0, 0}));
  Desc d{};
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(consumer.try_pop(d));
  ASSERT_TRUE(producer.try_push(Desc{}));  // refreshes: head 8
  region_.state->head.value.store(2);
  for (int i = 0; i < 8 && producer.try_push(Desc{}); ++i) {
  }
  EXPECT_TRUE(producer.failed());
}

TEST_F(ShmRingTest, AnUntrustedConsumerVisitsACopyTheProducerCannotChange) {
  RingProducer<Desc> producer(region_);
  RingConsumer<Desc> consumer(region_, Peer::kUntrusted);
  ASSERT_TRUE(producer.try_push(Desc{7, 1, 0}));
  std::size_t visited = consumer.consume(
      [this](Desc& d) {
        EXPECT_EQ(d.op, 1u);  // checked...
        // ...then the producer rewrites the published slot behind the consumer's back...
        auto* slot = reinterpret_cast<Desc*>(region_.slots);
        slot->op = 666;
        slot->seq = 666;
        // ...and the value being used is still the value that was checked.
        EXPECT_EQ(d.op, 1u);
        EXPECT_EQ(d.seq, 7u);
        EXPECT_NE(static_cast<void*>(&d), static_cast<void*>(slot));
      },
      1);
  EXPECT_EQ(visited, 1u);
}

TEST_F(ShmRingTest, ATrustedConsumerVisitsInPlace) {
  RingProducer<Desc> producer(region_);
  RingConsumer<Desc> consumer(region_, Peer::kTrusted);
  ASSERT_TRUE(producer.try_push(Desc{7, 1, 0}));
  const void* seen = nullptr;
  consumer.consume([&seen](Desc& d) { seen = &d; }, 1);
  EXPECT_EQ(seen, static_cast<const void*>(region_.slots));
}

TEST_F(ShmRingTest, AHeaderRewrittenAfterAttachChangesNothing) {
  auto attached = attach_ring<Desc>(shm_.bytes(), kCap);
  ASSERT_TRUE(attached.ok());
  // The peer rewrites every header field after the attach was checked.
  header().capacity = std::uint64_t{1} << 40;
  header().elem_size = 4096;
  header().slots_offset = 1 << 30;
  header().magic = 0;
  EXPECT_EQ(attached->capacity, kCap);
  EXPECT_EQ(attached->slots, shm_.data() + kRingSlotsOffset);
  RingProducer<Desc> producer(region_);
  RingConsumer<Desc> consumer(*attached, Peer::kUntrusted);
  // The attached side keeps working within the capacity it checked: full at exactly kCap.
  std::uint64_t pushed = 0;
  while (producer.try_push(Desc{pushed, 0, 0})) ++pushed;
  EXPECT_EQ(pushed, kCap);
  EXPECT_EQ(consumer.refresh_available(), kCap);
  for (std::uint64_t i = 0; i < kCap; ++i) {
    Desc d{};
    ASSERT_TRUE(consumer.try_pop(d));
    EXPECT_EQ(d.seq, i);
  }
  EXPECT_FALSE(consumer.failed());
}

TEST_F(ShmRingTest, TrustedEndpointCrashesOnAnImpossibleIndex) {
  RingConsumer<Desc> consumer(region_, Peer::kTrusted);
  region_.state->tail.value.store(kCap * 3);
  Desc d{};
  EXPECT_DEATH((void)consumer.try_pop(d), "trusted ring peer wrote an impossible index");
}

}  // namespace
}  // namespace nvmux
