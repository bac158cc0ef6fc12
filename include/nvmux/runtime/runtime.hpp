#pragma once
// nvmux runtime: reactors, lightweight threads, pollers and message lanes. This umbrella header
// pulls in the whole public API (Thread, send_msg, RuntimeStats). See docs/runtime.md.
//
// Runtime threading contract:
//   thread-safe       create_thread, move_thread, stats, start, stop (start/stop: from a thread that
//                     is not one of the runtime's reactors; stop is idempotent)
//   manual mode only  poll_thread: drives threads by hand from one OS thread, for deterministic tests;
//                     only while the runtime is not started.
//
// Lifecycle: create -> (create_thread, send_msg: messages queue up) -> start -> ... -> stop ->
// destroy. A stopped runtime does not start again. The destructor stops a running runtime.
//
// Stop drains, then reports: stop() refuses new messages from foreign pthreads (kUnavailable),
// keeps the reactors running until every lane is empty and no message ran during a full pass of
// every reactor (messages sent by running messages and pollers still run), up to
// stop_drain_timeout_us; then it stops the reactors, destroys whatever is still queued without
// running it, and returns kAborted naming how many messages it dropped (ok when none).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvmux/common/status.hpp"
#include "nvmux/runtime/lane.hpp"
#include "nvmux/runtime/message.hpp"
#include "nvmux/runtime/send.hpp"
#include "nvmux/runtime/stats.hpp"
#include "nvmux/runtime/thread.hpp"

namespace nvmux {

enum class SchedulerKind { kStatic, kDynamic };
// How messages from foreign pthreads reach their target:
//   kInboxPoller  the target thread's own inbox drains the sender's lane (one hop)
//   kDispatcher   a dedicated messaging thread on its own reactor drains every foreign lane and
//                 relays each message to its target over one lane per target (two hops)
// Lightweight threads always send straight to the target.
enum class MessageScheme { kInboxPoller, kDispatcher };

std::string_view to_string(SchedulerKind kind);
std::string_view to_string(MessageScheme scheme);

// Limits.
inline constexpr std::size_t kMaxReactors = 256;
inline constexpr std::size_t kMaxThreads = 4096;
inline constexpr std::size_t kMaxLaneCapacity = 1u << 20;  // slots
inline constexpr std::size_t kMaxDrainBatch = 4096;        // messages per lane per poll

struct RuntimeOptions {
  std::vector<int> cores{0};  // one reactor per core, pinned (unless pin_reactors is false)
  SchedulerKind scheduler = SchedulerKind::kStatic;
  MessageScheme scheme = MessageScheme::kInboxPoller;
  // kDispatcher: the messaging thread always runs on an extra reactor of its own; pinned to this
  // core when >= 0 (it may share the core with a worker reactor), unpinned when -1.
  int dispatcher_core = -1;
  bool interrupt_mode = false;
  std::uint64_t idle_before_sleep_us = 1000;  // interrupt mode: idle this long, then sleep
  // Interrupt mode: longest single sleep when no timer is due. A safety net only — wake-ups come
  // from senders; tests set it very high so that a lost wake-up shows up as a hang.
  std::uint64_t max_sleep_us = 100'000;
  // Polling mode: after this many polls in a row that found no work, an idle reactor calls
  // sched_yield() before each further poll, so threads sharing its core (a sender, the
  // dispatcher, another process) run instead of the spin. 0: never yield (a core of its own).
  std::uint64_t idle_yield_after_polls = 64;
  std::size_t lane_capacity = 1024;  // slots, power of two in [2, kMaxLaneCapacity]
  std::size_t drain_batch = 32;      // per lane per poll, in [1, kMaxDrainBatch]
  bool pin_reactors = true;          // false: reactors run unpinned (shared CI machines)
  // kDynamic: how often the scheduler looks at busy ratios, and the ratio that makes a thread busy.
  std::uint64_t scheduler_period_us = 10'000;
  double busy_threshold = 0.2;
  // A sender on a reactor waits at most this long for a full lane (blocking could deadlock two
  // reactors that send to each other), then gets kWouldBlock.
  std::uint64_t reactor_send_wait_us = 1000;
  // A foreign sender asleep on a full lane looks again this often whether or not it was woken. A
  // safety net only — wake-ups come from the consumer; tests set it very high so that a lost
  // wake-up shows up as a hang.
  std::uint64_t blocked_sender_recheck_us = 10'000;
  std::uint64_t stop_drain_timeout_us = 5'000'000;
};

namespace detail {
class Reactor;
}

class Runtime {
 public:
  // Validates `options`; bad ones give kInvalidArgument naming the field and the value.
  static Result<std::unique_ptr<Runtime>> create(RuntimeOptions options);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Thread-safe, before or after start. Unbound threads are placed round-robin over the worker
  // reactors; a bound one runs on the reactor of `bound_core` and is never moved.
  // Errors: kInvalidArgument (empty name, bound_core not in options.cores), kAlreadyExists (name
  // taken), kOutOfRange (kMaxThreads), kUnavailable (stopping or stopped).
  Result<Thread*> create_thread(std::string name, std::optional<int> bound_core = std::nullopt);

  // Starts one OS thread per reactor. Errors: kUnavailable (already started or stopped),
  // kInternal (pinning failed; no reactor is left running).
  Status start();
  // Drains, then reports (see the top of this file). Idempotent; ok on a never-started runtime
  // (which drops anything queued and reports it the same way).
  Status stop();

  // Thread-safe: asks the reactor running `thread` to hand it to reactor `reactor_index` between
  // two polls (lanes and all). Errors: kInvalidArgument (bound thread, dispatcher, bad index).
  Status move_thread(Thread& thread, int reactor_index);

  // Manual mode (never started): runs one iteration of `thread` on the calling OS thread with the
  // clock at `now_us` (timed pollers compare against it). Returns whether it did work.
  // Errors: kUnavailable (the runtime is started or stopped), kInvalidArgument (another runtime's
  // thread).
  Result<bool> poll_thread(Thread& thread, std::uint64_t now_us);

  // Thread-safe snapshot.
  RuntimeStats stats() const;

  const RuntimeOptions& options() const { return options_; }
  // The messaging thread of scheme kDispatcher (nullptr otherwise).
  Thread* dispatcher_thread() const { return dispatcher_; }
  // Worker reactors (one per options.cores entry); the dispatcher reactor, if any, has index
  // reactor_count().
  int reactor_count() const { return static_cast<int>(options_.cores.size()); }
  bool started() const;

 private:
  friend class Thread;
  friend class detail::Reactor;
  friend struct detail::LaneAccess;
  enum class State : int { kCreated, kRunning, kStopping, kStopped };

  explicit Runtime(RuntimeOptions options);
  Result<Thread*> add_thread(std::string name, std::optional<int> bound_core, bool is_dispatcher);
  std::uint64_t now_us() const;
  void run_scheduler();
  void request_move(Thread& thread, int reactor_index);
  void note_lane_retired(detail::Lane& lane);
  void note_dropped(std::uint64_t n);
  std::uint64_t drop_all_queued();
  void wake_blocked_senders();
  bool quiescent_pass();

  RuntimeOptions options_;
  std::atomic<State> state_{State::kCreated};
  std::mutex lifecycle_mutex_;                              // start/stop
  std::vector<std::unique_ptr<detail::Reactor>> reactors_;  // workers, then the dispatcher's
  Thread* dispatcher_ = nullptr;

  mutable std::mutex threads_mutex_;
  std::vector<std::unique_ptr<Thread>> threads_;
  std::size_t next_placement_ = 0;

  mutable std::mutex lanes_mutex_;
  std::vector<std::shared_ptr<detail::Lane>> lanes_;  // live lanes
  std::uint64_t next_lane_id_ = 1;
  std::uint64_t lanes_retired_ = 0;
  std::uint64_t retired_lane_messages_ = 0;
  std::atomic<std::uint64_t> dropped_messages_{0};  // RMW: rare (exit races, stop), several writers

  std::uint64_t sched_last_tsc_ = 0;  // scheduler-private
};

}  // namespace nvmux
