#include "nvmux/common/cpu.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "nvmux/common/tsc_clock.hpp"

namespace nvmux {

int online_cores() {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

Status pin_current_thread(int core) {
  if (core < 0 || core >= CPU_SETSIZE || core >= online_cores()) {
    return Status::error(StatusCode::kInvalidArgument, "cannot pin to core {}: this machine has cores 0..{}", core,
                         online_cores() - 1);
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (rc != 0) return Status::from_errno(rc, fmt::format("pthread_setaffinity_np(core {})", core));
  return {};
}

Status unpin_current_thread() {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c = 0; c < online_cores() && c < CPU_SETSIZE; ++c) CPU_SET(c, &set);
  int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (rc != 0) return Status::from_errno(rc, "pthread_setaffinity_np(all cores)");
  return {};
}

std::vector<int> current_thread_affinity() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cores;
  if (pthread_getaffinity_np(pthread_self(), sizeof(set), &set) != 0) return cores;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cores.push_back(c);
  }
  return cores;
}

void set_current_thread_name(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

int current_tid() { return static_cast<int>(::syscall(SYS_gettid)); }

std::string current_thread_label() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof(name));
  return fmt::format("tid {} '{}'", current_tid(), name);
}

std::uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

namespace {

#if defined(__x86_64__) || defined(__i386__)
// One (TSC, CLOCK_MONOTONIC) pair: the tightest of a few rdtsc / clock_gettime / rdtsc brackets,
// the TSC taken as the middle of its bracket. A preemption inside a bracket only widens it.
struct ClockPair {
  std::uint64_t tsc;
  std::uint64_t ns;
};
constexpr int kCalibrationBrackets = 16;
constexpr long kCalibrationSpanNs = 20'000'000;  // between the two pairs: rate error ~ jitter / span

ClockPair tightest_pair() {
  ClockPair best{0, 0};
  std::uint64_t best_gap = UINT64_MAX;
  for (int i = 0; i < kCalibrationBrackets; ++i) {
    std::uint64_t before = read_tsc();
    std::uint64_t ns = monotonic_ns();
    std::uint64_t after = read_tsc();
    if (after >= before && after - before < best_gap) {
      best_gap = after - before;
      best = {before + (after - before) / 2, ns};
    }
  }
  return best;
}
#endif

// A TSC rate no machine nvmux runs on has: the calibration went wrong (or the TSC is broken).
bool plausible_tsc_hz(long double hz) { return hz >= 1e8L && hz <= 1e11L; }

}  // namespace

bool tsc_is_invariant() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  // Advanced power management leaf: EDX bit 8 is "invariant TSC" on Intel and AMD alike.
  if (__get_cpuid(0x80000007u, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (edx & (1u << 8)) != 0;
#else
  return false;
#endif
}

TscClock TscClock::calibrate(Source preferred) {
  TscClock clock;
#if defined(__x86_64__) || defined(__i386__)
  ClockPair first = tightest_pair();
  timespec pause{0, kCalibrationSpanNs};
  nanosleep(&pause, nullptr);
  ClockPair second = tightest_pair();
  if (second.ns > first.ns && second.tsc > first.tsc) {
    long double hz =
        static_cast<long double>(second.tsc - first.tsc) * 1e9L / static_cast<long double>(second.ns - first.ns);
    if (plausible_tsc_hz(hz)) {
      constexpr long double kOne = static_cast<long double>(std::uint64_t{1} << kShift);
      clock.tsc_hz_ = static_cast<std::uint64_t>(hz);
      clock.ns_per_tick_q32_ = static_cast<std::uint64_t>(1e9L * kOne / hz + 0.5L);
      clock.ticks_per_ns_q32_ = static_cast<std::uint64_t>(hz * kOne / 1e9L + 0.5L);
      if (preferred == Source::kTsc && tsc_is_invariant()) {
        clock.source_ = Source::kTsc;
        clock.origin_tsc_ = second.tsc;
        clock.origin_ns_ = second.ns;
      }
    }
  }
#else
  (void)preferred;  // read_tsc() is monotonic_ns() here: 1 tick = 1 ns, and the clock is the OS's
#endif
  return clock;
}

const TscClock& TscClock::instance() {
  static const TscClock clock = calibrate(Source::kTsc);
  return clock;
}

std::uint64_t tsc_hz() { return TscClock::instance().tsc_hz(); }

std::uint64_t tsc_to_ns(std::uint64_t ticks) { return TscClock::instance().ticks_to_ns(ticks); }

std::uint64_t ns_to_tsc(std::uint64_t ns) { return TscClock::instance().ns_to_ticks(ns); }

namespace {
// A non-negative decimal that fits an int, or -1.
int parse_core_number(std::string_view text) {
  if (text.empty() || text.size() > 9) return -1;
  int v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}
}  // namespace

Result<std::vector<int>> parse_core_list(std::string_view text, std::string_view flag) {
  const int cores = online_cores();
  auto bad = [&](std::string_view why) {
    return Status::error(StatusCode::kInvalidArgument, "{} '{}': {} (expected a list like 0 or 0,1 or 0-{})", flag,
                         text, why, cores - 1);
  };
  if (text.empty()) return bad("empty");
  std::vector<int> out;
  std::vector<bool> seen(static_cast<std::size_t>(cores), false);
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    std::string_view item =
        text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    std::size_t dash = item.find('-');
    int first = parse_core_number(dash == std::string_view::npos ? item : item.substr(0, dash));
    int last = dash == std::string_view::npos ? first : parse_core_number(item.substr(dash + 1));
    if (first < 0 || last < 0) return bad(fmt::format("'{}' is not a core number or a range A-B", item));
    if (last < first) return bad(fmt::format("range {} runs backwards", item));
    if (last >= cores) return bad(fmt::format("core {} does not exist (this machine has 0..{})", last, cores - 1));
    for (int c = first; c <= last; ++c) {
      if (seen[static_cast<std::size_t>(c)]) return bad(fmt::format("core {} is listed twice", c));
      seen[static_cast<std::size_t>(c)] = true;
      out.push_back(c);
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace nvmux
