#pragma once
// WakeWord: the flag-fence-futex sleep/wake protocol, written once (header-only, private; the
// client library includes it without linking the runtime).
//
// A WakeWord is a view over one u32 word the caller places: a member (reactor, lane) or a field of
// a memfd shared by two processes (the service's QueueWake). The word is 0 (idle) or 1 (armed: the
// sleeper sleeps or is about to). One protocol, two futex scopes:
//   WakeWord<FutexScope::kPrivate>  both sides in this process (FUTEX_*_PRIVATE)
//   WakeWord<FutexScope::kShared>   the word lives in MAP_SHARED memory; the other side wakes it
//                                   from its own mapping (FUTEX_WAIT/FUTEX_WAKE without the flag)
//
// Who may call:
//   sleeper side (sleep_unless, arm, disarm)  exactly one thread per word at a time
//   waker side (wake, wake_fenced, claim_fenced)  any number of threads, in any process
//
// The protocol (Dekker over a store-load fence on both sides; no lost wake-up):
//   sleeper: arm (word = 1); full fence; re-check the condition; if false, FUTEX_WAIT(word == 1).
//   waker:   publish the work; full fence; if word != 0 and our exchange(0) returns non-zero,
//            FUTEX_WAKE. Either the waker sees the flag, or the sleeper's re-check sees the work.
// An awake sleeper costs a waker one fence and one relaxed load: no RMW, no syscall. Of several
// wakers of one sleep, only the one whose exchange wins makes the syscall.
//
// What it blocks on: sleep_unless blocks in FUTEX_WAIT for at most timeout_us. Returns are not
// proof of a wake-up (signals, spurious returns, timeouts): callers loop and re-check; the
// timeout is a safety net, never the mechanism.
//
// Hostile words: in the shared scope the other process may write anything into the word at any
// time. The value is then used only as the futex compare and as a hint (armed(), the kWoken /
// kTimedOut result, whether to make one wake syscall); never as an index, a count or a reason
// to skip the caller's own re-check. Garbage costs at most a spurious syscall or return.
//
// Other sleepers (an eventfd instead of a futex: the service's owner sleeps in its reactor and is
// woken through an eventfd) use the same word and fences through arm / disarm / claim_fenced and
// notify by their own means.

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "nvmux/common/fence.hpp"

namespace nvmux::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t), "futex word must be a plain u32");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "a futex word cannot hide a lock");

enum class FutexScope {
  kPrivate,  // the word is reached through this process's mappings only
  kShared,   // the word lives in memory mapped by several processes
};

template <FutexScope Scope>
inline constexpr int kFutexWaitOp = Scope == FutexScope::kPrivate ? FUTEX_WAIT_PRIVATE : FUTEX_WAIT;
template <FutexScope Scope>
inline constexpr int kFutexWakeOp = Scope == FutexScope::kPrivate ? FUTEX_WAKE_PRIVATE : FUTEX_WAKE;

// Sleeps while *word == expected, at most timeout_us (UINT64_MAX: no limit). Returns on a wake,
// a timeout, a signal, or at once when the word differs: the caller re-checks.
template <FutexScope Scope>
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::uint64_t timeout_us) {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout_us != UINT64_MAX) {
    ts.tv_sec = static_cast<time_t>(timeout_us / 1'000'000);
    ts.tv_nsec = static_cast<long>((timeout_us % 1'000'000) * 1000);
    tsp = &ts;
  }
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), kFutexWaitOp<Scope>, expected, tsp, nullptr, 0);
}

// Wakes up to `count` threads sleeping on `word`.
template <FutexScope Scope>
inline void futex_wake(std::atomic<std::uint32_t>& word, int count) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), kFutexWakeOp<Scope>, count, nullptr, nullptr, 0);
}

// How a sleep_unless call ended.
enum class SleepResult {
  kReady,     // the condition held after arming: no syscall, no sleep
  kWoken,     // slept; a waker cleared the flag (a hint in the shared scope)
  kTimedOut,  // slept; the timeout, a signal or a spurious return ended it (the flag was still armed)
};

template <FutexScope Scope>
class WakeWord {
 public:
  static constexpr std::uint32_t kIdle = 0;
  static constexpr std::uint32_t kArmed = 1;

  explicit WakeWord(std::atomic<std::uint32_t>& word) : word_(word) {}

  // Sleeper: arms the flag, fences, and calls ready(). If it returns true, disarms and returns
  // kReady. Otherwise calls on_block() (e.g. to count the sleep) and futex-waits while the word is
  // armed, at most timeout_us (UINT64_MAX: no limit), then disarms. ready() must re-read, after
  // the fence, everything a waker publishes before its own fence.
  template <class Ready, class OnBlock>
  SleepResult sleep_unless(Ready&& ready, std::uint64_t timeout_us, OnBlock&& on_block) {
    arm();
    // The flag is visible before ready() re-reads the condition; pairs with the waker's fence
    // between publishing its work and reading the flag.
    full_fence();
    if (ready()) {
      disarm();
      return SleepResult::kReady;
    }
    on_block();
    futex_wait<Scope>(word_, kArmed, timeout_us);
    // Acquire: a waker's full fence (a release fence) came before its clearing exchange, so its
    // published work is visible here. kIdle means a waker cleared the flag and made the syscall.
    return word_.exchange(kIdle, std::memory_order_acquire) == kIdle ? SleepResult::kWoken : SleepResult::kTimedOut;
  }
  template <class Ready>
  SleepResult sleep_unless(Ready&& ready, std::uint64_t timeout_us) {
    return sleep_unless(static_cast<Ready&&>(ready), timeout_us, [] {});
  }

  // Sleeper pieces, for sleepers that block elsewhere (an eventfd in a reactor's poll): arm every
  // word, full_fence() once, re-check the condition, then disarm if it holds.
  void arm() { word_.store(kArmed, std::memory_order_relaxed); }    // ordered by the caller's full fence
  void disarm() { word_.store(kIdle, std::memory_order_relaxed); }  // ends the sleep; nothing to publish

  // Waker, after publishing its work and a full fence: true when this caller cleared an armed flag
  // and so owes the sleeper exactly one notification. Awake sleeper: one relaxed load, no RMW.
  bool claim_fenced() {
    // Relaxed: the caller's fence orders its published work before these reads; the exchange only
    // elects one waker among several (and the value is a hint in the shared scope).
    return word_.load(std::memory_order_relaxed) != kIdle && word_.exchange(kIdle, std::memory_order_relaxed) != kIdle;
  }
  // Waker, after its own full fence: claim_fenced() and, when claimed, the one FUTEX_WAKE. Returns
  // whether it made the syscall.
  bool wake_fenced() {
    if (!claim_fenced()) return false;
    futex_wake<Scope>(word_, 1);  // one sleeper per word
    return true;
  }
  // Waker: orders everything the caller published before reading the flag, then wake_fenced().
  bool wake() {
    full_fence();
    return wake_fenced();
  }

  // Any thread: whether the sleeper sleeps now (or is about to). A hint for stats and tests.
  bool armed() const { return word_.load(std::memory_order_relaxed) != kIdle; }

 private:
  std::atomic<std::uint32_t>& word_;
};

using PrivateWakeWord = WakeWord<FutexScope::kPrivate>;
using SharedWakeWord = WakeWord<FutexScope::kShared>;

}  // namespace nvmux::detail
