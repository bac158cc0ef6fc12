#pragma once
// Thin futex wrappers (private). Waiters re-check their condition after every return: wake-ups
// may be spurious and timeouts are a safety net, never the mechanism.

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

namespace nvmux::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t), "futex word must be a plain u32");

// Sleeps while *word == expected, at most timeout_us (UINT64_MAX: no limit).
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::uint64_t timeout_us) {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout_us != UINT64_MAX) {
    ts.tv_sec = static_cast<time_t>(timeout_us / 1'000'000);
    ts.tv_nsec = static_cast<long>((timeout_us % 1'000'000) * 1000);
    tsp = &ts;
  }
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, tsp, nullptr, 0);
}

inline void futex_wake(std::atomic<std::uint32_t>& word, int count) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0);
}

}  // namespace nvmux::detail
