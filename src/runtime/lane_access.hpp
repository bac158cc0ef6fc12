#pragma once
// LaneAccess (private): finds and creates lanes for a sender context. Producer side: called by the
// sender only (its context is not shared).

#include "nvmux/runtime/runtime.hpp"

namespace nvmux::detail {

struct LaneAccess {
  // The lane from `context`'s sender to `target`, created (and registered with the consumer) on
  // first use. Errors as for send_msg: kAborted, kUnavailable, kOutOfRange.
  static Status lane_from(SenderContext& context, Thread& target, Lane*& lane);
  static SenderContext& sender_of(Thread& thread) { return thread.sender_; }
  // Acquire: pairs with the adopting reactor's store (see the sleep protocol in reactor.hpp).
  static Reactor* reactor_of(const Thread& thread) { return thread.reactor_.load(std::memory_order_acquire); }
  static bool runtime_stopped(const Runtime& runtime) {
    return runtime.state_.load(std::memory_order_acquire) == Runtime::State::kStopped;  // pairs with stop()
  }

 private:
  static Status create_lane(SenderContext& context, Thread& target, Lane*& lane);
};

}  // namespace nvmux::detail
