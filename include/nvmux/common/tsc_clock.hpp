#pragma once
// TscClock: a monotonic nanosecond clock read from the time-stamp counter — one rdtsc and one
// 64x64->128-bit multiply and shift per read, no system call, no division — calibrated once
// against CLOCK_MONOTONIC. Also the TSC <-> nanosecond conversion behind tsc_to_ns / ns_to_tsc.
//
// Where the TSC cannot serve as a clock (no invariant TSC: CPUID 0x80000007 EDX bit 8 clear, so
// its rate may change with frequency or it may stop in deep idle states; or not x86; or the
// calibration gave an implausible rate) now_ns() falls back to CLOCK_MONOTONIC (clock_gettime)
// and uses_tsc() says so. Tick conversion is always available: the runtime's busy/idle
// accounting and latency samples are TSC differences either way.
//
// Agreement with CLOCK_MONOTONIC: the origin is taken at calibration, so the two agree then to
// within a clock_gettime call (tens of ns); afterwards they drift apart only by the calibration's
// rate error (a few ppm: 20 ms against clock_gettime's jitter) and NTP's slewing of
// CLOCK_MONOTONIC (at most 500 ppm). Good for timers and intervals; not a wall clock.
//
// Thread-safety: instance() calibrates once (about 20 ms, the first caller pays; thread-safe) and
// every member is const afterwards: any thread may read the clock concurrently. The TSC must be
// synchronised across cores, which an invariant TSC under Linux's "tsc" clocksource is; a read on
// a core whose TSC is behind the origin returns the origin, never a wrapped value.

#include <cstdint>

#include "nvmux/common/cpu.hpp"

namespace nvmux {

class TscClock {
 public:
  enum class Source {
    kTsc,        // now_ns() from rdtsc, multiply-shift converted
    kMonotonic,  // now_ns() from clock_gettime(CLOCK_MONOTONIC)
  };

  // The process-wide clock, calibrated on first use: kTsc where the TSC is invariant.
  static const TscClock& instance();
  // A newly calibrated clock (tests): `preferred` kMonotonic forces the fallback; kTsc still falls
  // back where the TSC is not usable.
  static TscClock calibrate(Source preferred);

  Source source() const { return source_; }
  bool uses_tsc() const { return source_ == Source::kTsc; }
  std::uint64_t tsc_hz() const { return tsc_hz_; }

  // Nanoseconds on the CLOCK_MONOTONIC time line (see the agreement above).
  std::uint64_t now_ns() const { return uses_tsc() ? tsc_to_clock_ns(read_tsc()) : monotonic_ns(); }
  // The clock's value at a TSC reading taken by the caller (one rdtsc serving both the clock and
  // busy/idle accounting). Only meaningful when uses_tsc(); otherwise reads CLOCK_MONOTONIC.
  std::uint64_t now_ns_at(std::uint64_t tsc) const { return uses_tsc() ? tsc_to_clock_ns(tsc) : monotonic_ns(); }

  // Converts a TSC difference to nanoseconds and back: (x * mult) >> 32, no division.
  std::uint64_t ticks_to_ns(std::uint64_t ticks) const { return mul_shift(ticks, ns_per_tick_q32_); }
  std::uint64_t ns_to_ticks(std::uint64_t ns) const { return mul_shift(ns, ticks_per_ns_q32_); }

 private:
  static constexpr unsigned kShift = 32;  // fixed point of both multipliers: 2^-32 relative resolution

  TscClock() = default;
  static std::uint64_t mul_shift(std::uint64_t x, std::uint64_t mult_q32) {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(x) * mult_q32) >> kShift);
  }
  std::uint64_t tsc_to_clock_ns(std::uint64_t tsc) const {
    // A core whose TSC reads slightly behind the origin gets the origin, not a wrapped difference.
    return origin_ns_ + (tsc > origin_tsc_ ? ticks_to_ns(tsc - origin_tsc_) : 0);
  }

  Source source_ = Source::kMonotonic;
  std::uint64_t tsc_hz_ = 1'000'000'000;
  std::uint64_t ns_per_tick_q32_ = std::uint64_t{1} << kShift;   // 1e9 / hz, in 32.32 fixed point
  std::uint64_t ticks_per_ns_q32_ = std::uint64_t{1} << kShift;  // hz / 1e9, in 32.32 fixed point
  std::uint64_t origin_tsc_ = 0;                                 // TSC at calibration
  std::uint64_t origin_ns_ = 0;                                  // CLOCK_MONOTONIC at that TSC
};

// Whether this CPU reports an invariant TSC (constant rate, runs through idle states).
bool tsc_is_invariant();

}  // namespace nvmux
