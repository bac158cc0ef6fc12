// Real threads on the in-process ring: every element is stamped with a sequence number and a
// check word; the consumer verifies order, completeness and integrity. Single and bulk calls mixed
// on both sides. Bounded: a fixed count and a wall-clock deadline.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "nvmux/common/cpu.hpp"
#include "nvmux/ring/spsc_ring.hpp"
#include "support/test_scale.hpp"

namespace nvmux {
namespace {

struct Stamped {
  std::uint64_t seq;
  std::uint64_t check;  // seq * golden ratio: catches torn or stale slot contents
};
constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ull;
constexpr auto kDeadline = std::chrono::seconds(120);

TEST(SpscRingStress, FiftyMillionStampedElementsMixedSingleAndBulk) {
  const std::uint64_t total = test::stress_count(50'000'000);
  SpscRing<Stamped> ring(1024);
  std::atomic<bool> give_up{false};
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;

  std::thread producer([&] {
    std::vector<Stamped> batch(48);
    std::uint64_t next = 0;
    std::uint64_t spins = 0;
    while (next < total && !give_up.load(std::memory_order_relaxed)) {
      // Alternate phases of single pushes and bulk pushes of varying size.
      if ((next >> 12) % 2 == 0) {
        if (ring.try_push(Stamped{next, next * kGolden})) {
          ++next;
          continue;
        }
      } else {
        std::size_t want = 1 + (next % batch.size());
        if (want > total - next) want = static_cast<std::size_t>(total - next);
        for (std::size_t i = 0; i < want; ++i) batch[i] = Stamped{next + i, (next + i) * kGolden};
        std::size_t pushed = ring.push_bulk(std::span<const Stamped>(batch.data(), want));
        next += pushed;
        if (pushed != 0) continue;
      }
      if (++spins % 1024 == 0) std::this_thread::yield();
    }
  });

  std::uint64_t expected = 0;
  std::uint64_t errors = 0;
  std::vector<Stamped> out(64);
  std::uint64_t polls = 0;
  while (expected < total) {
    std::size_t got = 0;
    switch ((expected >> 10) % 3) {
      case 0: {
        Stamped s{};
        if (ring.try_pop(s)) {
          out[0] = s;
          got = 1;
        }
        break;
      }
      case 1: got = ring.pop_bulk(out); break;
      default: got = ring.consume([&, i = std::size_t{0}](Stamped& s) mutable { out[i++] = s; }, 37); break;
    }
    for (std::size_t i = 0; i < got; ++i) {
      if (out[i].seq != expected + i || out[i].check != out[i].seq * kGolden) ++errors;
    }
    expected += got;
    if (got == 0 && ++polls % 1024 == 0) {
      std::this_thread::yield();
      if (std::chrono::steady_clock::now() > deadline) break;
    }
  }
  give_up.store(true);
  producer.join();
  EXPECT_EQ(errors, 0u);
  EXPECT_EQ(expected, total) << "consumer stopped at the deadline";
  Stamped extra{};
  EXPECT_FALSE(ring.try_pop(extra)) << "an element beyond the last one sent";
}

TEST(SpscRingStress, TinyRingForcesConstantFullAndEmpty) {
  const std::uint64_t total = test::stress_count(2'000'000);
  SpscRing<std::uint64_t> ring(2);
  std::thread producer([&] {
    for (std::uint64_t i = 0; i < total;) {
      if (ring.try_push(i))
        ++i;
      else
        cpu_relax();
    }
  });
  std::uint64_t expected = 0, v = 0, errors = 0;
  while (expected < total) {
    if (ring.try_pop(v))
      errors += (v != expected++);
    else
      cpu_relax();
  }
  producer.join();
  EXPECT_EQ(errors, 0u);
}

}  // namespace
}  // namespace nvmux
