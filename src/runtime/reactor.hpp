#pragma once
// Reactor (private): one OS thread, pinned to one core, that polls the lightweight threads placed
// on it, accounts busy/idle TSC per iteration, and in interrupt mode sleeps on a futex when all its
// threads have been idle for idle_before_sleep_us; in polling mode it yields its core after
// idle_yield_after_polls empty polls in a row.
//
// Threading contract:
//   reactor thread only  threads_, the loop, the sleep
//   any thread           adopt (locked hand-over list), wake, request_exit, the stats counters
//
// Sleep protocol (no lost wake-ups): sleep_word is a PrivateWakeWord (futex.hpp). The reactor
// arms it, fences, re-checks every lane, incoming hand-over and exit flag, and only then
// futex-waits. A sender publishes its slot, fences, and reads sleep_word: either it sees the flag
// (and the one sender whose exchange wins makes the single FUTEX_WAKE syscall), or the reactor's
// re-check sees its message. An awake reactor costs a sender one fence and one load, no syscall.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "nvmux/common/cache_line.hpp"
#include "nvmux/runtime/runtime.hpp"

namespace nvmux::detail {

class Reactor {
 public:
  Reactor(Runtime& runtime, int index, int core, bool is_dispatcher);
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Index of the reactor running on the calling OS thread, -1 on any other thread.
  static int current_index();

  int index() const { return index_; }
  int core() const { return core_; }
  bool is_dispatcher() const { return is_dispatcher_; }

  // Any thread: hands `thread` to this reactor; it starts polling it at its next iteration.
  void adopt(Thread* thread);
  // Any thread: ends a sleep (at most one syscall per sleep). wake() fences first; wake_fenced()
  // is for callers that already fenced after publishing their work.
  void wake();
  void wake_fenced();

  // Lifecycle, from the runtime's start/stop.
  Status launch();  // starts the OS thread; waits until it pinned itself (or failed to)
  void request_exit();
  void join();
  bool running() const { return thread_.joinable(); }
  // Any thread: whether it sleeps now (or is about to). A hint for stats and tests.
  bool asleep() const { return sleep_word_.load(std::memory_order_relaxed) != 0; }

  // Counters: single writer (the reactor), readable anywhere.
  std::atomic<std::uint64_t> busy_tsc{0};
  std::atomic<std::uint64_t> idle_tsc{0};
  std::atomic<std::uint64_t> iterations{0};
  std::atomic<std::uint64_t> sleeps{0};
  std::atomic<std::uint64_t> wakeups{0};
  std::atomic<std::uint64_t> yields{0};

 private:
  void run();
  void adopt_incoming();
  void handle_moves_and_exits();
  bool has_work();
  void sleep_until_work(std::uint64_t now_us);

  Runtime& runtime_;
  const int index_;
  const int core_;  // -1: unpinned
  const bool is_dispatcher_;

  std::thread thread_;
  std::atomic<bool> exit_requested_{false};

  // PrivateWakeWord: armed while the reactor sleeps or is about to. Alone on its line: senders read it.
  alignas(kCacheLineBytes) std::atomic<std::uint32_t> sleep_word_{0};

  alignas(kCacheLineBytes) std::mutex incoming_mutex_;
  std::vector<Thread*> incoming_;
  std::atomic<bool> has_incoming_{false};

  std::vector<Thread*> threads_;  // reactor thread only
  std::uint64_t last_busy_us_ = 0;
  std::uint64_t next_sched_us_ = 0;
};

}  // namespace nvmux::detail
