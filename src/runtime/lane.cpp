// Lanes: creation on a sender's first message, the full-lane wait (spin, yield, futex), the
// interrupt-mode wake-up, and retirement when the sender goes away.

#include <sched.h>

#include <thread>

#include "futex.hpp"
#include "lane_access.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/fence.hpp"
#include "nvmux/runtime/runtime.hpp"
#include "reactor.hpp"

namespace nvmux::detail {

namespace {

// Back-pressure phases of a foreign sender waiting for a full lane.
constexpr int kFullLaneSpinRounds = 256;  // cpu_relax between looks at head
constexpr int kFullLaneYieldRounds = 32;  // sched_yield between looks

thread_local SenderContext tl_foreign_sender{nullptr};

}  // namespace

Lane::~Lane() {
  // Both sides are gone (last reference): destroy leftovers without running them.
  ring.consume([](Message& m) { m.drop(); }, static_cast<std::size_t>(ring.capacity()));
}

void SenderContext::retire_all() {
  for (auto& [serial, lane] : lanes) {
    // Release: every push we made is visible to the consumer that sees the flag.
    lane->sender_gone.store(true, std::memory_order_release);
  }
  lanes.clear();
  forget_recent();
}

Status LaneAccess::lane_from(SenderContext& context, Thread& target, Lane*& lane) {
  // Read-mostly flags: plain loads, no shared write on the data path.
  if (!target.accepting_.load(std::memory_order_relaxed)) {  // a racing send is reported at stop
    return Status::error(StatusCode::kAborted, "send to lightweight thread '{}': it has exited", target.name_);
  }
  auto state = target.runtime_->state_.load(std::memory_order_acquire);  // pairs with stop()'s store
  if (state == Runtime::State::kStopped || (state == Runtime::State::kStopping && context.owner == nullptr)) {
    return Status::error(StatusCode::kUnavailable, "send to lightweight thread '{}': the runtime is {}", target.name_,
                         state == Runtime::State::kStopped ? "stopped" : "stopping");
  }
  if (Lane* recent = context.find_recent(target.serial_); recent != nullptr) {
    lane = recent;
    return {};
  }
  if (auto it = context.lanes.find(target.serial_); it != context.lanes.end()) {
    lane = it->second.get();
    context.remember(target.serial_, lane);
    return {};
  }
  return create_lane(context, target, lane);
}

Status LaneAccess::create_lane(SenderContext& context, Thread& target, Lane*& lane) {
  Runtime& runtime = *target.runtime_;
  // Forget lanes of runtimes destroyed since (a long-lived pthread that outlives runtimes).
  std::erase_if(context.lanes, [](const auto& entry) {
    return entry.second->closed.load(std::memory_order_acquire);  // pairs with ~Runtime's release
  });
  context.forget_recent();  // it may point at lanes just erased

  Thread* consumer = &target;
  if (context.owner == nullptr && runtime.options_.scheme == MessageScheme::kDispatcher &&
      runtime.dispatcher_ != nullptr && &target != runtime.dispatcher_) {
    consumer = runtime.dispatcher_;
  }
  std::string sender = context.owner != nullptr ? context.owner->name_ : current_thread_label();

  std::shared_ptr<Lane> created;
  {
    std::lock_guard lock(consumer->pending_mutex_);
    if (consumer->lane_count_ >= kMaxLanesPerThread) {
      return Status::error(StatusCode::kOutOfRange,
                           "send to lightweight thread '{}': its consumer '{}' already drains kMaxLanesPerThread "
                           "({}) lanes",
                           target.name_, consumer->name_, kMaxLanesPerThread);
    }
    {
      std::lock_guard registry(runtime.lanes_mutex_);
      created = std::make_shared<Lane>(&runtime, consumer, &target, std::move(sender), runtime.next_lane_id_++,
                                       runtime.options_.lane_capacity, runtime.options_.interrupt_mode);
      runtime.lanes_.push_back(created);
    }
    ++consumer->lane_count_;
    consumer->pending_lanes_.push_back(created);
    // Release: the lane is fully built before the consumer adopts it. Also set before our first
    // push, so a reactor's pre-sleep re-check that misses the push sees this flag.
    consumer->has_pending_lanes_.store(true, std::memory_order_release);
  }
  lane = created.get();
  context.remember(target.serial_, lane);
  context.lanes.emplace(target.serial_, std::move(created));
  return {};
}

Status acquire_lane(Thread& target, Lane*& lane) {
  Thread* current = Thread::current();
  SenderContext& context = current != nullptr ? LaneAccess::sender_of(*current) : tl_foreign_sender;
  return LaneAccess::lane_from(context, target, lane);
}

void wake_consumer(Lane& lane) {
  // Publish the slot (our tail store) before reading the sleep flag; pairs with the reactor's
  // fence between setting the flag and re-checking its lanes.
  full_fence();
  Reactor* reactor = LaneAccess::reactor_of(*lane.consumer);  // read after the fence: see reactor.hpp
  if (reactor != nullptr) reactor->wake_fenced();
}

Status wait_for_space(Lane& lane, bool blocking) {
  ++lane.full_private;
  lane.full_events.store(lane.full_private, std::memory_order_relaxed);  // single writer: a counter for stats
  auto full = [&lane](std::string_view why) {
    return Status::error(StatusCode::kWouldBlock, "lane {} from {} to lightweight thread '{}' is full ({} slots){}",
                         lane.id, lane.sender_name, lane.target->name(), lane.ring.capacity(), why);
  };
  if (!blocking) return full("");
  auto& producer = lane.ring.producer();
  Runtime& runtime = *lane.runtime;
  if (!runtime.started()) return full(": the runtime is not started, nothing drains it yet");

  Thread* current = Thread::current();
  if (current != nullptr) {
    // A sender on a reactor must not block: the consumer may need this very reactor to run.
    if (lane.consumer == current || LaneAccess::reactor_of(*lane.consumer) == LaneAccess::reactor_of(*current)) {
      return full(": the sender runs on the consumer's reactor and cannot wait for it");
    }
    std::uint64_t deadline_ns = monotonic_ns() + runtime.options().reactor_send_wait_us * 1000;
    for (std::uint64_t round = 0;; ++round) {
      if (producer.refresh_free() != 0) return {};
      cpu_relax();
      if (round % 64 == 63 && monotonic_ns() >= deadline_ns) {
        return full(
            fmt::format(": still full after reactor_send_wait_us ({} us)", runtime.options().reactor_send_wait_us));
      }
    }
  }

  // A foreign pthread: spin briefly, then yield, then sleep until the consumer frees a slot.
  // Spinning only helps when the consumer runs on another core at the same time: on its core we
  // would only delay it, so go straight to yielding.
  Reactor* consumer_reactor = LaneAccess::reactor_of(*lane.consumer);
  const bool on_consumer_core = runtime.options().pin_reactors && consumer_reactor != nullptr &&
                                consumer_reactor->core() >= 0 && sched_getcpu() == consumer_reactor->core();
  for (int i = 0; !on_consumer_core && i < kFullLaneSpinRounds; ++i) {
    if (producer.refresh_free() != 0) return {};
    cpu_relax();
  }
  for (int i = 0; i < kFullLaneYieldRounds; ++i) {
    std::this_thread::yield();
    if (producer.refresh_free() != 0) return {};
  }
  // Sleep on producer_waiting (the WakeWord protocol, futex.hpp): the re-check below runs after
  // the flag is visible, so either we see the space or the consumer (or stop(), or the consumer's
  // exit) sees the flag after its own fence and wakes us.
  enum class Outcome { kStillFull, kStopped, kSpace, kConsumerExited };
  Outcome outcome = Outcome::kStillFull;
  auto recheck = [&] {
    // Stopped first: stop() frees slots when it drops what is queued, and nothing would run a
    // message pushed into them.
    if (LaneAccess::runtime_stopped(runtime)) {
      outcome = Outcome::kStopped;
    } else if (producer.refresh_free() != 0) {
      outcome = Outcome::kSpace;
    } else if (lane.consumer->state() == ThreadState::kExited) {
      outcome = Outcome::kConsumerExited;
    }
    return outcome != Outcome::kStillFull;
  };
  PrivateWakeWord waiting(lane.producer_waiting);
  // The timeout is a safety net (RuntimeOptions::blocked_sender_recheck_us): the wake-up itself
  // comes from the consumer once it has freed half the lane, from its exit, or from stop().
  auto count_sleep = [&lane] {
    ++lane.sleeps_private;
    lane.sender_sleeps.store(lane.sleeps_private, std::memory_order_relaxed);  // single writer: for stats
  };
  while (waiting.sleep_unless(recheck, runtime.options().blocked_sender_recheck_us, count_sleep) !=
         SleepResult::kReady) {
  }
  // sleep_unless returns kReady only when recheck() named an outcome.
  if (outcome == Outcome::kStopped) {
    return Status::error(StatusCode::kUnavailable,
                         "send to lightweight thread '{}': the runtime stopped while the lane was full",
                         lane.target->name());
  }
  if (outcome == Outcome::kConsumerExited) {
    return Status::error(StatusCode::kAborted, "send to lightweight thread '{}': its consumer '{}' has exited",
                         lane.target->name(), lane.consumer->name());
  }
  return {};
}

}  // namespace nvmux::detail
