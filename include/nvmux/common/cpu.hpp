#pragma once
// CPU helpers: pinning, the time-stamp counter, and a spin-wait hint.
//
// Thread-safety: every function is thread-safe. tsc_hz() calibrates once (about 20 ms, the first
// caller pays) and is then a plain load.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nvmux/common/status.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace nvmux {

// Pins the calling OS thread to one core. Errors: kInvalidArgument (core outside the machine),
// the code of sched_setaffinity's errno (Status::from_errno; errno kept and in the message).
Status pin_current_thread(int core);
// Lets the calling thread run on every core again (undoes pin_current_thread).
Status unpin_current_thread();
// The cores the calling thread may run on.
std::vector<int> current_thread_affinity();
// Number of online cores.
int online_cores();
// Parses a core list as tools take it: "0", "0,2", "0-3", "0-1,4" (ascending ranges, no
// duplicates, each core in 0..online_cores()-1). `flag` names the option in errors.
// Errors: kInvalidArgument naming the flag, the text and what is wrong with it.
Result<std::vector<int>> parse_core_list(std::string_view text, std::string_view flag);
// Name shown by top/gdb for the calling thread (truncated to 15 characters by the kernel).
void set_current_thread_name(const std::string& name);
// A short printable id for the calling OS thread ("tid 1234 'name'"), for error messages.
std::string current_thread_label();
// Kernel thread id of the calling thread.
int current_tid();

// Raw time-stamp counter ticks. Monotonic on machines with an invariant TSC; falls back to
// CLOCK_MONOTONIC nanoseconds where there is no TSC.
inline std::uint64_t read_tsc() {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#else
  extern std::uint64_t monotonic_ns();
  return monotonic_ns();
#endif
}

// CLOCK_MONOTONIC in nanoseconds.
std::uint64_t monotonic_ns();
// TSC ticks per second, calibrated against CLOCK_MONOTONIC on first use (TscClock::instance(),
// nvmux/common/tsc_clock.hpp).
std::uint64_t tsc_hz();
// Converts a TSC tick count (a difference of read_tsc() values) to nanoseconds: a multiply and a
// shift, no division.
std::uint64_t tsc_to_ns(std::uint64_t ticks);
// Converts nanoseconds to TSC ticks (likewise).
std::uint64_t ns_to_tsc(std::uint64_t ns);

// Tells the CPU we are in a spin-wait loop (PAUSE on x86).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace nvmux
