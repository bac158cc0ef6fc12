#pragma once
// Thread: a lightweight thread (like spdk_thread) — a name, an inbox of lanes and a set of
// pollers, run by one reactor at a time. Created by Runtime::create_thread and owned by the
// Runtime (the pointer stays valid until the Runtime is destroyed, even after exit()).
//
// Threading contract:
//   any thread        name(), serial(), bound_core(), state(), reactor_index(), runtime(),
//                     and send_msg / try_send_msg to it (send.hpp)
//   owner-only        register_poller, pause_poller, resume_poller, unregister_poller, exit():
//                     callable only from code running on this thread (a message or a poller it
//                     runs, i.e. Thread::current() == this). From anywhere else they return
//                     kWrongThread with a message naming the thread, its owner and the caller.
//   Thread::current() the lightweight thread whose code is running on the calling OS thread, or
//                     nullptr on a plain pthread (and on a reactor between polls).
//
// Exit: exit() stops the thread's pollers at once and refuses new messages (send -> kAborted); the
// thread keeps draining its lanes until they are empty, then becomes kExited, retires the lanes it
// sent on, and leaves its reactor. A message that races past the check into an exited thread's
// lane is never run: Runtime::stop() reports it.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "nvmux/common/cache_line.hpp"
#include "nvmux/common/status.hpp"
#include "nvmux/runtime/lane.hpp"

namespace nvmux {

class Runtime;
namespace detail {
class Reactor;
struct LaneAccess;
}  // namespace detail

enum class PollerResult { kIdle, kBusy };
using PollerFn = std::function<PollerResult()>;

enum class ThreadState { kRunning, kExiting, kExited };
std::string_view to_string(ThreadState state);

// Limits.
inline constexpr std::size_t kMaxPollersPerThread = 256;
inline constexpr std::size_t kMaxLanesPerThread = 4096;                // senders per consumer thread
inline constexpr std::uint64_t kMaxPollerPeriodUs = 3'600'000'000ull;  // one hour

// A poller: an active one runs on every poll of its thread, a timed one when its period (µs) has
// passed since it last ran. Owner-only, like the calls that manage it; the pointer returned by
// register_poller is valid until unregister_poller or the thread's exit.
class Poller {
 public:
  const std::string& name() const { return name_; }
  std::uint64_t period_us() const { return period_us_; }
  bool paused() const { return paused_; }
  std::uint64_t runs() const { return runs_; }

 private:
  friend class Thread;
  Poller(std::string name, PollerFn fn, std::uint64_t period_us, std::uint64_t next_due_us)
      : name_(std::move(name)), fn_(std::move(fn)), period_us_(period_us), next_due_us_(next_due_us) {}
  std::string name_;
  PollerFn fn_;
  std::uint64_t period_us_;
  std::uint64_t next_due_us_;
  std::uint64_t runs_ = 0;
  bool paused_ = false;
  bool unregistered_ = false;
};

class alignas(kCacheLineBytes) Thread {
 public:
  Thread(const Thread&) = delete;
  Thread& operator=(const Thread&) = delete;
  ~Thread();

  // The lightweight thread running on the calling OS thread, or nullptr.
  static Thread* current();

  const std::string& name() const { return name_; }
  // Process-unique, never reused.
  std::uint64_t serial() const { return serial_; }
  std::optional<int> bound_core() const { return bound_core_; }
  ThreadState state() const { return state_.load(std::memory_order_acquire); }  // pairs with the owner's store
  // Index of the reactor that runs it now (moves under the dynamic scheduler).
  int reactor_index() const { return reactor_index_.load(std::memory_order_relaxed); }  // a hint, may be stale
  Runtime& runtime() const { return *runtime_; }
  bool is_dispatcher() const { return is_dispatcher_; }

  // Owner-only. period_us == 0: active poller (every poll); otherwise timed, first run one period
  // from now. Errors: kWrongThread, kInvalidArgument (empty fn, period above kMaxPollerPeriodUs),
  // kOutOfRange (kMaxPollersPerThread reached), kAborted (thread exiting).
  Result<Poller*> register_poller(std::string name, PollerFn fn, std::uint64_t period_us = 0);
  // Owner-only. Errors: kWrongThread, kNotFound (not a live poller of this thread).
  Status pause_poller(Poller* poller);
  Status resume_poller(Poller* poller);  // a resumed timed poller next runs one period from now
  // Owner-only; may be called from inside the poller itself. The Poller* is invalid afterwards.
  Status unregister_poller(Poller* poller);
  // Owner-only: begins the exit described above. Errors: kWrongThread, kAborted (already exiting).
  Status exit();

  // Number of live (registered) pollers; any thread.
  std::size_t poller_count() const { return poller_count_.load(std::memory_order_relaxed); }

 private:
  friend class Runtime;
  friend class detail::Reactor;
  friend struct detail::SenderContext;
  friend struct detail::LaneAccess;

  Thread(Runtime* runtime, std::string name, std::uint64_t serial, std::optional<int> bound_core, bool is_dispatcher);

  // Runs one iteration on the calling OS thread: drains lanes (batched, round-robin), runs due
  // pollers, advances exit. Returns true when it did any work. Caller: the owning reactor, or
  // Runtime::poll_thread in manual mode. The second form takes the TSC read when the poll starts
  // and leaves in it the TSC read when it ended (the reactor chains them: one read per poll).
  bool poll(std::uint64_t now_us);
  bool poll(std::uint64_t now_us, std::uint64_t& tsc);
  // Whether a message or a new lane is waiting (consumer side, for the reactor's sleep check).
  bool has_pending_work();
  // Earliest due time of an unpaused timed poller, or UINT64_MAX.
  std::uint64_t next_timer_due_us() const;

  std::size_t drain_lanes();
  std::size_t batch_to_take(detail::Lane& lane);
  std::size_t drain_lane(detail::Lane& lane);
  std::size_t forward_lane(detail::Lane& lane);
  bool run_pollers(std::uint64_t now_us);
  void adopt_pending_lanes();
  void retire_lane(std::size_t index);
  void finish_exit();
  Status check_owner(std::string_view operation) const;
  Poller* find_poller(Poller* poller) const;

  Runtime* const runtime_;
  const std::string name_;
  const std::uint64_t serial_;
  const std::optional<int> bound_core_;
  const bool is_dispatcher_;

  // Owner-reactor placement, written by the reactor that adopts the thread.
  std::atomic<detail::Reactor*> reactor_{nullptr};
  std::atomic<int> reactor_index_{-1};
  std::atomic<int> move_request_{-1};  // reactor index a mover asked for, -1 none
  std::atomic<ThreadState> state_{ThreadState::kRunning};
  std::atomic<bool> accepting_{true};  // false once exit() began

  // Everything above is read by every sender on every send_msg (accepting_, serial_, runtime_):
  // it shares no line with what this thread writes as it sends or polls.
  // Lanes this thread sends on (producer side), moving with it.
  alignas(kCacheLineBytes) detail::SenderContext sender_{this};

  // Consumer side, owner only.
  alignas(kCacheLineBytes) std::vector<std::shared_ptr<detail::Lane>> lanes_;
  std::size_t next_lane_ = 0;  // round-robin start
  std::vector<std::unique_ptr<Poller>> pollers_;
  bool pollers_dirty_ = false;
  std::uint64_t now_us_ = 0;
  std::size_t last_poll_messages_ = 0;  // drained (run or forwarded) by the last poll, for the reactor's pacing

  // New lanes, added by senders (rare; locked), adopted by the owner at its next poll.
  std::mutex pending_mutex_;
  std::vector<std::shared_ptr<detail::Lane>> pending_lanes_;
  std::atomic<bool> has_pending_lanes_{false};
  std::size_t lane_count_ = 0;  // guarded by pending_mutex_: adopted + pending, for kMaxLanesPerThread

  // Counters: single writer (the owner), readable anywhere.
  std::atomic<std::uint64_t> busy_tsc_{0};
  std::atomic<std::uint64_t> idle_tsc_{0};
  std::atomic<std::uint64_t> messages_{0};
  std::atomic<std::uint64_t> forwarded_{0};
  std::atomic<std::uint64_t> polls_{0};
  std::atomic<std::size_t> poller_count_{0};
  std::atomic<std::uint64_t> moves_{0};  // written by the reactor that gives it up

  // Scheduler-private snapshot (the scheduler runs on one reactor).
  std::uint64_t sched_busy_tsc_ = 0;
  std::uint64_t sched_idle_tsc_ = 0;
};

}  // namespace nvmux
