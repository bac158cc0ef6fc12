#include "nvmux/runtime/thread.hpp"

#include <algorithm>

#include "futex.hpp"
#include "lane_access.hpp"
#include "nvmux/common/counter.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/fence.hpp"
#include "nvmux/runtime/runtime.hpp"
#include "reactor.hpp"

namespace nvmux {

namespace {
thread_local Thread* tl_current_thread = nullptr;
}  // namespace

std::string_view to_string(ThreadState state) {
  switch (state) {
    case ThreadState::kRunning: return "running";
    case ThreadState::kExiting: return "exiting";
    case ThreadState::kExited: return "exited";
  }
  return "unknown";
}

Thread::Thread(Runtime* runtime, std::string name, std::uint64_t serial, std::optional<int> bound_core,
               bool is_dispatcher)
    : runtime_(runtime), name_(std::move(name)), serial_(serial), bound_core_(bound_core),
      is_dispatcher_(is_dispatcher) {}

Thread::~Thread() = default;

Thread* Thread::current() { return tl_current_thread; }

Status Thread::check_owner(std::string_view operation) const {
  Thread* caller = tl_current_thread;
  if (caller == this) return {};
  int reactor = reactor_index();
  return Status::error(StatusCode::kWrongThread,
                       "{} on lightweight thread '{}' (owned by reactor {}) called from {} running {}{}{}: it may "
                       "only be called by code running on '{}' (send it a message)",
                       operation, name_, reactor, current_thread_label(),
                       caller == nullptr ? "no lightweight thread" : "lightweight thread '",
                       caller == nullptr ? "" : caller->name_, caller == nullptr ? "" : "'", name_);
}

Poller* Thread::find_poller(Poller* poller) const {
  for (const auto& p : pollers_) {
    if (p.get() == poller && !p->unregistered_) return p.get();
  }
  return nullptr;
}

Result<Poller*> Thread::register_poller(std::string name, PollerFn fn, std::uint64_t period_us) {
  NVMUX_RETURN_IF_ERROR(check_owner(fmt::format("register_poller('{}')", name)));
  if (!fn) {
    return Status::error(StatusCode::kInvalidArgument, "register_poller('{}') on thread '{}': empty function", name,
                         name_);
  }
  if (period_us > kMaxPollerPeriodUs) {
    return Status::error(StatusCode::kInvalidArgument,
                         "register_poller('{}') on thread '{}': period {} us is above kMaxPollerPeriodUs {}", name,
                         name_, period_us, kMaxPollerPeriodUs);
  }
  if (state_.load(std::memory_order_relaxed) != ThreadState::kRunning) {
    return Status::error(StatusCode::kAborted, "register_poller('{}'): thread '{}' is exiting", name, name_);
  }
  if (poller_count() >= kMaxPollersPerThread) {
    return Status::error(StatusCode::kOutOfRange, "register_poller('{}'): thread '{}' already has {} pollers", name,
                         name_, kMaxPollersPerThread);
  }
  pollers_.push_back(
      std::unique_ptr<Poller>(new Poller(std::move(name), std::move(fn), period_us, now_us_ + period_us)));
  poller_count_.store(poller_count() + 1, std::memory_order_relaxed);  // single writer
  return pollers_.back().get();
}

Status Thread::pause_poller(Poller* poller) {
  NVMUX_RETURN_IF_ERROR(check_owner("pause_poller"));
  Poller* p = find_poller(poller);
  if (p == nullptr) {
    return Status::error(StatusCode::kNotFound, "pause_poller: {} is not a live poller of thread '{}'",
                         static_cast<const void*>(poller), name_);
  }
  p->paused_ = true;
  return {};
}

Status Thread::resume_poller(Poller* poller) {
  NVMUX_RETURN_IF_ERROR(check_owner("resume_poller"));
  Poller* p = find_poller(poller);
  if (p == nullptr) {
    return Status::error(StatusCode::kNotFound, "resume_poller: {} is not a live poller of thread '{}'",
                         static_cast<const void*>(poller), name_);
  }
  if (p->paused_) {
    p->paused_ = false;
    p->next_due_us_ = now_us_ + p->period_us_;
  }
  return {};
}

Status Thread::unregister_poller(Poller* poller) {
  NVMUX_RETURN_IF_ERROR(check_owner("unregister_poller"));
  Poller* p = find_poller(poller);
  if (p == nullptr) {
    return Status::error(StatusCode::kNotFound, "unregister_poller: {} is not a live poller of thread '{}'",
                         static_cast<const void*>(poller), name_);
  }
  // Removed after the poller loop: the poller may be running right now.
  p->unregistered_ = true;
  pollers_dirty_ = true;
  poller_count_.store(poller_count() - 1, std::memory_order_relaxed);  // single writer
  return {};
}

Status Thread::exit() {
  NVMUX_RETURN_IF_ERROR(check_owner("exit"));
  if (state_.load(std::memory_order_relaxed) != ThreadState::kRunning) {
    return Status::error(StatusCode::kAborted, "exit: thread '{}' is already {}", name_, to_string(state()));
  }
  accepting_.store(false, std::memory_order_relaxed);  // senders check it; a racing send is reported at stop
  for (auto& p : pollers_) p->unregistered_ = true;
  pollers_dirty_ = true;
  poller_count_.store(0, std::memory_order_relaxed);
  state_.store(ThreadState::kExiting, std::memory_order_release);  // pairs with state()'s acquire
  return {};
}

bool Thread::poll(std::uint64_t now_us) {
  std::uint64_t tsc = read_tsc();
  return poll(now_us, tsc);
}

bool Thread::poll(std::uint64_t now_us, std::uint64_t& tsc) {
  if (state_.load(std::memory_order_relaxed) == ThreadState::kExited) return false;
  Thread* previous = tl_current_thread;
  tl_current_thread = this;
  now_us_ = now_us;
  const std::uint64_t start_tsc = tsc;

  last_poll_messages_ = drain_lanes();
  bool busy = last_poll_messages_ != 0;
  if (state_.load(std::memory_order_relaxed) == ThreadState::kRunning) busy |= run_pollers(now_us);
  if (pollers_dirty_) {
    std::erase_if(pollers_, [](const std::unique_ptr<Poller>& p) { return p->unregistered_; });
    pollers_dirty_ = false;
  }
  if (state_.load(std::memory_order_relaxed) == ThreadState::kExiting && !has_pending_work()) finish_exit();

  tsc = read_tsc();
  single_writer_add(busy ? busy_tsc_ : idle_tsc_, tsc - start_tsc);
  single_writer_add(polls_, 1);
  tl_current_thread = previous;
  return busy;
}

bool Thread::run_pollers(std::uint64_t now_us) {
  bool busy = false;
  // By index: a poller may register another one (appended, runs next time it is due).
  for (std::size_t i = 0; i < pollers_.size(); ++i) {
    Poller& p = *pollers_[i];
    if (p.unregistered_ || p.paused_) continue;
    if (p.period_us_ != 0) {
      if (now_us < p.next_due_us_) continue;
      // Next due one period after this run; a late run does not cause a burst of catch-up runs.
      p.next_due_us_ = now_us + p.period_us_;
    }
    ++p.runs_;
    if (p.fn_() == PollerResult::kBusy) busy = true;
    if (state_.load(std::memory_order_relaxed) != ThreadState::kRunning) break;  // it called exit()
  }
  return busy;
}

std::uint64_t Thread::next_timer_due_us() const {
  std::uint64_t due = UINT64_MAX;
  if (state_.load(std::memory_order_relaxed) != ThreadState::kRunning) return due;
  for (const auto& p : pollers_) {
    if (p->period_us_ != 0 && !p->paused_ && !p->unregistered_) due = std::min(due, p->next_due_us_);
  }
  return due;
}

void Thread::adopt_pending_lanes() {
  if (!has_pending_lanes_.load(std::memory_order_acquire)) return;  // pairs with the sender's release
  std::lock_guard lock(pending_mutex_);
  for (auto& lane : pending_lanes_) lanes_.push_back(std::move(lane));
  pending_lanes_.clear();
  has_pending_lanes_.store(false, std::memory_order_relaxed);  // under the lock; senders set it under it too
}

bool Thread::has_pending_work() {
  if (has_pending_lanes_.load(std::memory_order_acquire)) return true;  // pairs with the sender's release
  for (auto& lane : lanes_) {
    if (lane->ring.consumer().refresh_available() != 0) return true;
  }
  return false;
}

namespace {

// Wakes the lane's sender if it sleeps on the full lane (the WakeWord protocol, futex.hpp). The
// caller has stored its new head and then fenced: pairs with the producer's fence between arming
// and re-reading head. Either it sees the space or we see the flag.
void wake_blocked_producer_fenced(detail::Lane& lane) { detail::PrivateWakeWord(lane.producer_waiting).wake_fenced(); }

// Whether a sender asleep on this lane is worth waking now: once at least half the lane is free
// (an empty lane always is). Woken after every drain batch instead, a sender would push a batch's
// worth, find the lane full again and go back to sleep: a futex round trip for a few slots.
//
// No wake-up is lost by waiting: a sender sleeps only after seeing the lane full, and then pushes
// nothing more, so the lane drains (it moves at every poll while it holds messages) until it
// reaches the threshold, in a poll that moved it and so looks at the flag after its fence.
// Consumer side: the free count comes from our own head and cached tail (a stale tail only
// over-counts the free slots, which wakes earlier, never later).
bool worth_waking_sender(detail::Lane& lane) {
  const std::uint64_t capacity = lane.ring.capacity();
  const std::uint64_t free_slots = capacity - lane.ring.consumer().available_approx();
  return free_slots >= capacity / 2;
}

}  // namespace

std::size_t Thread::drain_lanes() {
  adopt_pending_lanes();
  std::size_t count = lanes_.size();
  if (count == 0) return 0;
  std::size_t total = 0;
  bool any_worth_waking = false;
  // Round-robin start, and at most drain_batch per lane: one busy sender cannot starve the others.
  std::size_t index = next_lane_ < count ? next_lane_ : 0;
  next_lane_ = index + 1;
  for (std::size_t k = 0; k < count; ++k) {
    detail::Lane& lane = *lanes_[index];
    std::size_t moved = lane.target != this ? forward_lane(lane) : drain_lane(lane);
    // Only a lane that freed slots (a sender on a lane that did not move, e.g. a relay whose
    // target lane is full, would only wake to find it still full) and is at least half free.
    lane.wake_sender_this_poll = moved != 0 && worth_waking_sender(lane);
    any_worth_waking |= lane.wake_sender_this_poll;
    total += moved;
    if (++index == count) index = 0;  // no division on the hot path
  }
  if (any_worth_waking) {
    // One fence for the whole poll, after every head store, then the sleep flags. A poll that
    // looks at no flag needs no fence: the poll that later finds the lane half free fences before
    // it looks, and that fence follows every earlier head store too.
    full_fence();
    for (auto& lane : lanes_) {
      if (lane->wake_sender_this_poll) wake_blocked_producer_fenced(*lane);
    }
  }
  // Retire lanes whose sender is gone, once drained.
  for (std::size_t i = lanes_.size(); i-- > 0;) {
    detail::Lane& lane = *lanes_[i];
    // Acquire: the sender set the flag after its last push, so the refresh below sees every push.
    if (lane.sender_gone.load(std::memory_order_acquire) && lane.ring.consumer().refresh_available() == 0) {
      retire_lane(i);
    }
  }
  return total;
}

// How many messages to take from `lane` this poll (at most drain_batch); records its high water.
std::size_t Thread::batch_to_take(detail::Lane& lane) {
  auto& consumer = lane.ring.consumer();
  const std::size_t batch = runtime_->options().drain_batch;
  std::uint64_t available = consumer.available_approx();
  if (available < batch) available = consumer.refresh_available();
  if (available > lane.high_water.load(std::memory_order_relaxed)) {
    lane.high_water.store(available, std::memory_order_relaxed);  // single writer
  }
  return available < batch ? static_cast<std::size_t>(available) : batch;
}

std::size_t Thread::drain_lane(detail::Lane& lane) {
  auto& consumer = lane.ring.consumer();
  const std::size_t want = batch_to_take(lane);
  if (want == 0) return 0;
  std::size_t ran = consumer.consume(
      [&lane](detail::Message& m) {
        NVMUX_ASSERT(m.ops != nullptr, "lane {} from {}: slot holds no message (ring handed out an empty slot)",
                     lane.id, lane.sender_name);
        if (m.enqueue_tsc != 0) {
          std::uint64_t now = read_tsc();
          lane.latency_ns.record(now > m.enqueue_tsc ? tsc_to_ns(now - m.enqueue_tsc) : 0);
        }
        m.run();
      },
      want);
  lane.batch_sizes.record(ran);
  single_writer_add(lane.executed, ran);
  single_writer_add(messages_, ran);
  return ran;
}

std::size_t Thread::forward_lane(detail::Lane& lane) {
  auto& consumer = lane.ring.consumer();
  std::size_t want = batch_to_take(lane);
  if (want == 0) return 0;
  detail::Lane* out = nullptr;
  Status s = detail::LaneAccess::lane_from(sender_, *lane.target, out);
  if (!s.ok()) {
    // The target exited (or the runtime stopped): these can never run.
    std::size_t dropped = consumer.consume([](detail::Message& m) { m.drop(); }, want);
    single_writer_add(lane.dropped, dropped);
    runtime_->note_dropped(dropped);
    return dropped;
  }
  auto& producer = out->ring.producer();
  std::uint64_t free = producer.free_approx();
  if (free < want) free = producer.refresh_free();
  if (free < want) want = static_cast<std::size_t>(free);
  if (want == 0) {
    // The target's lane is full: leave the messages where they are (back-pressure reaches the sender).
    ++out->full_private;
    out->full_events.store(out->full_private, std::memory_order_relaxed);  // single writer
    return 0;
  }
  std::size_t moved = consumer.consume(
      [&lane, &producer](detail::Message& m) {
        bool pushed = producer.try_emplace(detail::RelocateTag{}, m);
        NVMUX_ASSERT(pushed, "dispatcher: relay lane to '{}' had a free slot counted but refused the push",
                     lane.target->name());
      },
      want);
  out->sent_private += moved;
  out->sent.store(out->sent_private, std::memory_order_relaxed);  // single writer
  if (out->interrupt_mode) detail::wake_consumer(*out);
  lane.batch_sizes.record(moved);
  single_writer_add(lane.executed, moved);
  single_writer_add(forwarded_, moved);
  return moved;
}

void Thread::retire_lane(std::size_t index) {
  std::shared_ptr<detail::Lane> lane = std::move(lanes_[index]);
  lanes_.erase(lanes_.begin() + static_cast<std::ptrdiff_t>(index));
  lane->retired = true;
  {
    std::lock_guard lock(pending_mutex_);
    --lane_count_;
  }
  runtime_->note_lane_retired(*lane);
}

void Thread::finish_exit() {
  pollers_.clear();
  poller_count_.store(0, std::memory_order_relaxed);
  sender_.retire_all();
  state_.store(ThreadState::kExited, std::memory_order_release);  // pairs with state()'s acquire
  // A sender blocked on one of our full lanes must not wait for us any more.
  full_fence();
  for (auto& lane : lanes_) wake_blocked_producer_fenced(*lane);
}

}  // namespace nvmux
