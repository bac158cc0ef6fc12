#pragma once
// send_msg / try_send_msg: run a callable on a lightweight thread, from any OS thread.
//
// Threading: callable from any OS thread — a reactor, a lightweight thread, or a plain pthread the
// runtime never saw. Each (sender, target) pair gets its own SPSC lane on the sender's first
// message (that first call takes a lock); afterwards a send is one slot write and one index store:
// no allocation, no lock, no shared read-modify-write. A foreign pthread's lanes are retired when
// it exits; a lightweight thread's lanes move with it and are retired when it exits.
//
// Order: messages from one sender to one target run in the order sent (a lightweight sender keeps
// its lanes across moves, so this holds across moves too). No order across senders.
//
// The callable is stored inline in the slot: at most kMaxMsgCaptureBytes (48) bytes, alignment at
// most 16, nothrow-move-constructible. A bigger callable does not compile. It runs exactly once on
// the target, or is destroyed without running when it cannot run (see Runtime::stop).
//
// Errors:
//   kWouldBlock   try_send_msg: the lane is full. send_msg: the lane is full and waiting is not
//                 possible or not safe — the runtime is not started (no consumer yet), the sender
//                 is the target or shares its reactor, or (a sender on a reactor) it stayed full
//                 for RuntimeOptions::reactor_send_wait_us.
//   kAborted      the target has exited (or is exiting).
//   kUnavailable  the runtime is stopping or stopped (foreign senders), or stopped (all senders).
//   kOutOfRange   the target already has kMaxLanesPerThread senders.
// Back-pressure: send_msg on a foreign pthread never fails for a full lane: it spins briefly, then
// yields, then sleeps on a futex until the consumer frees a slot.

#include <type_traits>
#include <utility>

#include "nvmux/common/cpu.hpp"
#include "nvmux/common/status.hpp"
#include "nvmux/runtime/lane.hpp"
#include "nvmux/runtime/message.hpp"

namespace nvmux {

class Thread;

namespace detail {

// Finds (or creates, on first use) the calling sender's lane to `target`.
Status acquire_lane(Thread& target, Lane*& lane);
// The lane was full: counts a full event, then waits as described above (blocking) or not.
// Returns ok once at least one slot is free.
Status wait_for_space(Lane& lane, bool blocking);
// Interrupt mode: after a push, wakes the consumer's reactor if it sleeps (fence + flag check;
// a syscall only when it sleeps).
void wake_consumer(Lane& lane);

template <bool kBlocking, class F>
Status send_impl(Thread& target, F&& fn) {
  using Fn = std::decay_t<F>;
  check_message_callable<Fn>();
  Lane* lane = nullptr;
  if (Status s = acquire_lane(target, lane); !s.ok()) return s;
  auto& producer = lane->ring.producer();
  if (producer.free_approx() == 0 && producer.refresh_free() == 0) {
    if (Status s = wait_for_space(*lane, kBlocking); !s.ok()) return s;
  }
  std::uint64_t tsc = 0;
  if (--lane->sample_countdown == 0) {
    lane->sample_countdown = kLatencySampleEveryMsgs;
    tsc = read_tsc();
    if (tsc == 0) tsc = 1;  // 0 means "not sampled"
  }
  bool pushed = producer.try_emplace(std::in_place_type<Fn>, tsc, std::forward<F>(fn));
  NVMUX_ASSERT(pushed, "lane {} from {}: no free slot right after the ring reported one", lane->id, lane->sender_name);
  ++lane->sent_private;
  lane->sent.store(lane->sent_private, std::memory_order_relaxed);  // single writer: a counter for stats
  if (lane->interrupt_mode) wake_consumer(*lane);
  return {};
}

}  // namespace detail

// Runs `fn` on `target`; waits (back-pressure) while the lane is full. See the contract above.
template <class F>
Status send_msg(Thread& target, F&& fn) {
  return detail::send_impl<true>(target, std::forward<F>(fn));
}

// Like send_msg but never waits: kWouldBlock when the lane is full.
template <class F>
Status try_send_msg(Thread& target, F&& fn) {
  return detail::send_impl<false>(target, std::forward<F>(fn));
}

}  // namespace nvmux
