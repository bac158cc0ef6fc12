// TscClock (include/nvmux/common/tsc_clock.hpp): the TSC clock agrees with CLOCK_MONOTONIC, its
// conversions invert each other, and the fallback is CLOCK_MONOTONIC itself.

#include "nvmux/common/tsc_clock.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <thread>

namespace nvmux {
namespace {

constexpr auto kSpan = std::chrono::milliseconds(50);
// Agreement allowed between the clock and CLOCK_MONOTONIC: calibration error (a few ppm over a
// 20 ms span) and NTP slewing (<= 500 ppm) give microseconds here; the tolerances leave room for a
// calibration disturbed by preemption on a loaded machine, and still catch a wrong rate or origin.
constexpr std::int64_t kAgreeNs = 2'000'000;
constexpr double kRateTolerance = 0.003;  // 0.3% over kSpan

std::int64_t signed_difference(std::uint64_t a, std::uint64_t b) {
  return static_cast<std::int64_t>(a) - static_cast<std::int64_t>(b);
}

// A reading of both clocks at (nearly) one instant: CLOCK_MONOTONIC bracketed by two reads of the
// TSC clock no more than kBracketNs apart (a preemption in between widens the bracket: try again).
struct Pair {
  std::uint64_t clock_ns;
  std::uint64_t monotonic_ns;
};
constexpr std::uint64_t kBracketNs = 20'000;

Pair read_both(const TscClock& clock) {
  Pair best{0, 0};
  std::uint64_t best_width = UINT64_MAX;
  for (int attempt = 0; attempt < 1000 && best_width > kBracketNs; ++attempt) {
    std::uint64_t before = clock.now_ns();
    std::uint64_t mono = monotonic_ns();
    std::uint64_t after = clock.now_ns();
    if (after - before < best_width) {
      best_width = after - before;
      best = {before + (after - before) / 2, mono};
    }
  }
  return best;
}

TEST(TscClock, AgreesWithTheMonotonicClock) {
  const TscClock& clock = TscClock::instance();
  if (!clock.uses_tsc()) GTEST_SKIP() << "no invariant TSC here: the clock is CLOCK_MONOTONIC itself";
  Pair first = read_both(clock);
  EXPECT_LT(std::llabs(signed_difference(first.clock_ns, first.monotonic_ns)), kAgreeNs)
      << "clock " << first.clock_ns << " monotonic " << first.monotonic_ns;
  std::this_thread::sleep_for(kSpan);
  Pair second = read_both(clock);
  EXPECT_LT(std::llabs(signed_difference(second.clock_ns, second.monotonic_ns)), kAgreeNs)
      << "clock " << second.clock_ns << " monotonic " << second.monotonic_ns;
  const double rate = static_cast<double>(second.clock_ns - first.clock_ns) /
                      static_cast<double>(second.monotonic_ns - first.monotonic_ns);
  EXPECT_NEAR(rate, 1.0, kRateTolerance);
}

TEST(TscClock, NeverGoesBackwardsOnACore) {
  const TscClock& clock = TscClock::instance();
  auto check = [&clock](int core) {
    if (core < online_cores()) (void)pin_current_thread(core);
    std::uint64_t last = clock.now_ns();
    for (int i = 0; i < 100'000; ++i) {
      std::uint64_t now = clock.now_ns();
      ASSERT_GE(now, last) << "read " << i << " on core " << core;
      last = now;
    }
  };
  std::thread a(check, 0);
  std::thread b(check, 1);
  a.join();
  b.join();
}

TEST(TscClock, ConversionsAreMultiplyShiftOfTheCalibratedRate) {
  const TscClock& clock = TscClock::instance();
  EXPECT_GT(clock.tsc_hz(), 100'000'000u);
  EXPECT_EQ(clock.tsc_hz(), tsc_hz());
  // One second of ticks is one second, to the fixed point's resolution (2^-32 of the rate).
  EXPECT_NEAR(static_cast<double>(clock.ticks_to_ns(clock.tsc_hz())), 1e9, 2.0);
  EXPECT_NEAR(static_cast<double>(clock.ns_to_ticks(1'000'000'000)), static_cast<double>(clock.tsc_hz()), 2.0);
  for (std::uint64_t ns : {0ull, 1ull, 999ull, 1'000'000ull, 3'600'000'000'000ull}) {
    EXPECT_NEAR(static_cast<double>(clock.ticks_to_ns(clock.ns_to_ticks(ns))), static_cast<double>(ns),
                1.0 + static_cast<double>(ns) * 1e-9)
        << ns;
  }
  EXPECT_EQ(tsc_to_ns(12345678), clock.ticks_to_ns(12345678));
}

TEST(TscClock, ATicksReadingGivesTheSameTimeAsAClockRead) {
  const TscClock& clock = TscClock::instance();
  if (!clock.uses_tsc()) GTEST_SKIP() << "no invariant TSC here";
  std::uint64_t before = clock.now_ns();
  std::uint64_t at = clock.now_ns_at(read_tsc());
  std::uint64_t after = clock.now_ns();
  EXPECT_LE(before, at);
  EXPECT_LE(at, after);
}

TEST(TscClock, TheFallbackIsTheMonotonicClock) {
  TscClock fallback = TscClock::calibrate(TscClock::Source::kMonotonic);
  EXPECT_FALSE(fallback.uses_tsc());
  EXPECT_EQ(fallback.source(), TscClock::Source::kMonotonic);
  std::uint64_t m0 = monotonic_ns();
  std::uint64_t c = fallback.now_ns();
  std::uint64_t m1 = monotonic_ns();
  EXPECT_LE(m0, c);
  EXPECT_LE(c, m1);
  // Tick conversion still works: busy/idle accounting uses TSC differences either way.
  EXPECT_NEAR(static_cast<double>(fallback.ticks_to_ns(fallback.tsc_hz())), 1e9, 2.0);
}

TEST(TscClock, TheTscIsUsedExactlyWhenItIsInvariant) {
  TscClock clock = TscClock::calibrate(TscClock::Source::kTsc);
#if defined(__x86_64__) || defined(__i386__)
  EXPECT_EQ(clock.uses_tsc(), tsc_is_invariant());
#else
  EXPECT_FALSE(clock.uses_tsc());
#endif
}

}  // namespace
}  // namespace nvmux
