#include "nvmux/common/cpu.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

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
std::uint64_t calibrate_tsc_hz() {
#if defined(__x86_64__) || defined(__i386__)
  // Two samples 20 ms apart; the TSC on any machine nvmux targets is invariant.
  std::uint64_t ns0 = monotonic_ns();
  std::uint64_t t0 = read_tsc();
  timespec pause{0, 20'000'000};
  nanosleep(&pause, nullptr);
  std::uint64_t ns1 = monotonic_ns();
  std::uint64_t t1 = read_tsc();
  std::uint64_t dns = ns1 - ns0;
  if (dns == 0 || t1 <= t0) return 1'000'000'000ull;
  return static_cast<std::uint64_t>(static_cast<long double>(t1 - t0) * 1e9L / static_cast<long double>(dns));
#else
  return 1'000'000'000ull;  // read_tsc() is monotonic_ns() here
#endif
}
}  // namespace

std::uint64_t tsc_hz() {
  static const std::uint64_t hz = calibrate_tsc_hz();
  return hz;
}

std::uint64_t tsc_to_ns(std::uint64_t ticks) {
  return static_cast<std::uint64_t>(static_cast<unsigned __int128>(ticks) * 1'000'000'000ull / tsc_hz());
}

std::uint64_t ns_to_tsc(std::uint64_t ns) {
  return static_cast<std::uint64_t>(static_cast<unsigned __int128>(ns) * tsc_hz() / 1'000'000'000ull);
}

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
