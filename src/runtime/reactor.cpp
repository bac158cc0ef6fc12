#include "reactor.hpp"

#include <sched.h>

#include <algorithm>
#include <future>

#include "futex.hpp"
#include "nvmux/common/counter.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"
#include "nvmux/common/tsc_clock.hpp"

namespace nvmux::detail {

namespace {
thread_local int tl_reactor_index = -1;
// A busy poll that drained fewer messages than this is a trickle: pause kTricklePauses cpu_relax
// (a few hundred ns) before the next one, so that messages gather instead of each costing a
// transfer of its lane's tail line.
constexpr std::size_t kTrickleMessages = 4;
constexpr int kTricklePauses = 8;
}  // namespace

int Reactor::current_index() { return tl_reactor_index; }

Reactor::Reactor(Runtime& runtime, int index, int core, bool is_dispatcher)
    : runtime_(runtime), index_(index), core_(core), is_dispatcher_(is_dispatcher) {}

void Reactor::adopt(Thread* thread) {
  {
    std::lock_guard lock(incoming_mutex_);
    incoming_.push_back(thread);
    has_incoming_.store(true, std::memory_order_release);  // the lock publishes the list; the flag is a hint
  }
  wake();
}

// Whatever the caller published is ordered before reading the sleep flag (the WakeWord protocol:
// pairs with the reactor's fence between arming and re-checking for work).
void Reactor::wake() { PrivateWakeWord(sleep_word_).wake(); }

// Awake (the common case): one relaxed load, no syscall; asleep: one FUTEX_WAKE per sleep.
void Reactor::wake_fenced() { PrivateWakeWord(sleep_word_).wake_fenced(); }

Status Reactor::launch() {
  std::promise<Status> pinned;
  std::future<Status> result = pinned.get_future();
  thread_ = std::thread([this, &pinned] {
    Status s;
    if (core_ >= 0 && runtime_.options().pin_reactors) s = pin_current_thread(core_);
    set_current_thread_name(is_dispatcher_ ? "nvmux-dispatch" : fmt::format("nvmux-r{}", index_));
    bool ok = s.ok();
    pinned.set_value(std::move(s));
    if (ok) run();
  });
  Status s = result.get();
  if (!s.ok()) {
    thread_.join();
    return Status::error(StatusCode::kInternal, "reactor {} could not pin itself to core {}: {}", index_, core_,
                         s.to_string());
  }
  return {};
}

void Reactor::request_exit() {
  exit_requested_.store(true, std::memory_order_release);  // pairs with the loop's acquire
  wake();
}

void Reactor::join() {
  if (thread_.joinable()) thread_.join();
}

void Reactor::adopt_incoming() {
  if (!has_incoming_.load(std::memory_order_acquire)) return;
  std::vector<Thread*> arrived;
  {
    std::lock_guard lock(incoming_mutex_);
    arrived.swap(incoming_);
    has_incoming_.store(false, std::memory_order_relaxed);  // under the lock
  }
  for (Thread* thread : arrived) {
    if (thread->state() == ThreadState::kExited) continue;
    // Set before we poll it or sleep: a sender that reads the old reactor after its fence is
    // covered by our pre-sleep re-check (see the sleep protocol).
    thread->reactor_.store(this, std::memory_order_release);
    thread->reactor_index_.store(index_, std::memory_order_relaxed);  // a hint for stats
    threads_.push_back(thread);
  }
}

void Reactor::handle_moves_and_exits() {
  for (std::size_t i = threads_.size(); i-- > 0;) {
    Thread* thread = threads_[i];
    if (thread->state() == ThreadState::kExited) {
      threads_.erase(threads_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    if (thread->move_request_.load(std::memory_order_relaxed) == -1) continue;
    int destination = thread->move_request_.exchange(-1, std::memory_order_acq_rel);  // rare: a move
    if (destination < 0 || destination == index_) continue;
    threads_.erase(threads_.begin() + static_cast<std::ptrdiff_t>(i));
    single_writer_add(thread->moves_, 1);
    // The hand-over lock orders our last poll of the thread before the destination's first.
    runtime_.reactors_[static_cast<std::size_t>(destination)]->adopt(thread);
  }
}

bool Reactor::has_work() {
  if (has_incoming_.load(std::memory_order_acquire) || exit_requested_.load(std::memory_order_acquire)) return true;
  for (Thread* thread : threads_) {
    if (thread->has_pending_work()) return true;
    if (thread->move_request_.load(std::memory_order_relaxed) != -1) return true;
    if (thread->state() == ThreadState::kExiting) return true;
  }
  return false;
}

void Reactor::sleep_until_work(std::uint64_t now_us) {
  std::uint64_t due = UINT64_MAX;
  for (Thread* thread : threads_) due = std::min(due, thread->next_timer_due_us());
  if (runtime_.options().scheduler == SchedulerKind::kDynamic && index_ == 0) due = std::min(due, next_sched_us_);
  // The longest sleep (max_sleep_us) is a safety net, never the wake-up mechanism.
  const std::uint64_t max_sleep_us = runtime_.options().max_sleep_us;
  std::uint64_t timeout_us = due == UINT64_MAX ? max_sleep_us : (due > now_us ? due - now_us : 0);
  if (timeout_us == 0) return;
  timeout_us = std::min(timeout_us, max_sleep_us);

  // The re-check runs after the flag is visible: either a sender sees it and wakes us, or
  // has_work() sees its message (the WakeWord protocol, futex.hpp).
  SleepResult slept =
      PrivateWakeWord(sleep_word_)
          .sleep_unless([this] { return has_work(); }, timeout_us, [this] { single_writer_add(sleeps, 1); });
  if (slept == SleepResult::kWoken) single_writer_add(wakeups, 1);  // not a timer or a spurious return
}

void Reactor::run() {
  tl_reactor_index = index_;
  const RuntimeOptions& options = runtime_.options();
  const bool dynamic = options.scheduler == SchedulerKind::kDynamic && index_ == 0 && !is_dispatcher_;
  std::uint64_t now_us = runtime_.now_us();
  last_busy_us_ = now_us;
  next_sched_us_ = now_us + options.scheduler_period_us;
  std::uint64_t idle_polls = 0;
  const TscClock& clock = TscClock::instance();
  while (true) {
    adopt_incoming();
    // One TSC read serves the clock (multiply-shift, no clock_gettime) and the accounting; each
    // thread's poll then reads it once more, at its end, and hands that on to the next.
    const std::uint64_t start_tsc = read_tsc();
    now_us = clock.now_ns_at(start_tsc) / 1000;
    std::uint64_t tsc = start_tsc;
    bool busy = false;
    std::size_t drained = 0;
    for (Thread* thread : threads_) {
      busy |= thread->poll(now_us, tsc);
      drained += thread->last_poll_messages_;
    }
    const std::uint64_t spent = tsc - start_tsc;  // the iteration's work ends with its last poll
    handle_moves_and_exits();
    if (dynamic && now_us >= next_sched_us_) {
      runtime_.run_scheduler();
      next_sched_us_ = now_us + options.scheduler_period_us;
    }
    single_writer_add(busy ? busy_tsc : idle_tsc, spent);
    single_writer_add(iterations, 1);
    if (exit_requested_.load(std::memory_order_acquire)) break;  // pairs with request_exit's release
    if (busy) {
      last_busy_us_ = now_us;
      idle_polls = 0;
      // A trickle (a message or two per poll: the senders are slower than we are) means every
      // poll re-reads a tail its sender is about to write again; polling at once would take the
      // line away for each message and slow the sender down to the line's round trip (a lone
      // sender on the AMD EPYC: ~4 M msgs/s). A short pause lets a few messages gather per poll.
      if (drained != 0 && drained < kTrickleMessages) {
        for (int i = 0; i < kTricklePauses; ++i) cpu_relax();
      }
    } else if (options.interrupt_mode && now_us - last_busy_us_ >= options.idle_before_sleep_us) {
      sleep_until_work(now_us);
    } else if (options.idle_yield_after_polls != 0 && ++idle_polls >= options.idle_yield_after_polls) {
      sched_yield();  // nothing to do: let whatever shares the core run (a no-op when nothing does)
      single_writer_add(yields, 1);
    } else {
      // An idle poll re-read every lane's tail; polling again at once would pull those lines back
      // from their senders' cores just as they write them, slowing each send (on an AMD EPYC a
      // lone sender fell from ~16 to ~4 M msgs/s that way). A pause lets a few messages gather.
      cpu_relax();
    }
  }
}

}  // namespace nvmux::detail
