#pragma once
// Lane: the single-producer/single-consumer message ring between one sender and one consumer
// thread, plus its counters. A sender is either a plain OS thread (a "foreign" sender, identified by
// a thread_local context) or a lightweight Thread (identified by the Thread, so its lanes move with
// it between reactors). The consumer is the target Thread (scheme kInboxPoller, and every sender
// that is itself a lightweight thread) or the dispatcher thread (scheme kDispatcher, foreign
// senders), which relocates each message into its own lane to the target.
//
// Threading contract (SPSC):
//   producer side  ring.producer(), sent_, sample_countdown_: the sender only
//                  (one OS thread at a time; a lightweight sender hands it over when it moves)
//   consumer side  ring.consumer(), executed, high_water, histograms: the consumer thread only
//                  (its current reactor, handed over with the thread)
//   any thread     the published counters (relaxed atomics, one writer each), size_approx(), flags
//
// Lifetime: shared by the sender context and the runtime (std::shared_ptr; the reference counts
// change only when a lane is created, retired or closed, never per message). Retired when the
// sender goes away (OS thread exit, lightweight thread exit) and the consumer has drained it.
// This is an internal type; users call send_msg and read RuntimeStats.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "nvmux/common/cache_line.hpp"
#include "nvmux/common/histogram.hpp"
#include "nvmux/ring/spsc_ring.hpp"
#include "nvmux/runtime/message.hpp"

namespace nvmux {

class Runtime;
class Thread;

// Every Nth message a sender sends on a lane carries its enqueue TSC, for the latency histogram.
inline constexpr std::uint64_t kLatencySampleEveryMsgs = 32;

namespace detail {

struct Lane {
  Lane(Runtime* runtime_in, Thread* consumer_in, Thread* target_in, std::string sender_in, std::uint64_t id_in,
       std::uint64_t capacity, bool interrupt_mode_in)
      : runtime(runtime_in), consumer(consumer_in), target(target_in), sender_name(std::move(sender_in)), id(id_in),
        interrupt_mode(interrupt_mode_in), ring(capacity) {}
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;
  ~Lane();  // destroys (without running) anything left: only reached when both sides are gone

  // Read-only after construction.
  Runtime* const runtime;
  Thread* const consumer;  // drains this lane: the target, or the dispatcher thread
  Thread* const target;    // where the messages finally run
  const std::string sender_name;
  const std::uint64_t id;
  const bool interrupt_mode;  // wake a sleeping consumer reactor after each push

  SpscRing<Message> ring;

  // Producer-private, on its own line.
  alignas(kCacheLineBytes) std::uint64_t sample_countdown = kLatencySampleEveryMsgs;
  std::uint64_t sent_private = 0;
  std::uint64_t full_private = 0;
  std::uint64_t sleeps_private = 0;
  // Published copies of the producer counters (single writer: relaxed load+store, no RMW).
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> full_events{0};
  std::atomic<std::uint64_t> sender_sleeps{0};  // futex waits of a sender blocked on the full lane

  // Producer <-> consumer flags, on their own line.
  alignas(kCacheLineBytes) std::atomic<std::uint32_t> producer_waiting{0};  // futex word: 1 = sender blocked
  std::atomic<bool> sender_gone{false};                                     // set by the sender after its last push
  std::atomic<bool> closed{false};                                          // set by the runtime when it is destroyed

  // Consumer-private counters (single writer, readable anywhere).
  alignas(kCacheLineBytes) std::atomic<std::uint64_t> executed{0};  // run (or forwarded) messages
  std::atomic<std::uint64_t> high_water{0};
  std::atomic<std::uint64_t> dropped{0};  // destroyed without running (target exited, stop)
  bool retired = false;                   // consumer-private
  bool wake_sender_this_poll = false;     // consumer-private: this poll freed enough to wake a blocked sender
  Histogram batch_sizes;
  Histogram latency_ns;
};

// The lanes one sender owns, keyed by the target thread's process-unique serial. One per foreign
// OS thread (thread_local) and one per lightweight Thread. Producer-side only: used by its sender.
struct SenderContext {
  explicit SenderContext(Thread* owner_in) : owner(owner_in) {}
  SenderContext(const SenderContext&) = delete;
  SenderContext& operator=(const SenderContext&) = delete;
  ~SenderContext() { retire_all(); }

  // Marks every lane sender_gone (after our last push) and forgets them.
  void retire_all();

  // The lanes used most recently, looked at before the map: a sender that spreads its messages
  // over a few targets (round-robin over N I/O threads) finds its lane without hashing.
  Lane* find_recent(std::uint64_t serial) const {
    for (const Recent& r : recent) {
      if (r.serial == serial) return r.lane;
    }
    return nullptr;
  }
  void remember(std::uint64_t serial, Lane* lane) {
    recent[recent_next] = {serial, lane};
    recent_next = (recent_next + 1) % kRecentLanes;
  }
  void forget_recent() {
    recent = {};
    recent_next = 0;
  }

  Thread* const owner;  // null for a foreign OS thread
  std::unordered_map<std::uint64_t, std::shared_ptr<Lane>> lanes;

 private:
  static constexpr std::size_t kRecentLanes = 8;
  struct Recent {
    std::uint64_t serial = 0;  // 0: empty (thread serials start at 1)
    Lane* lane = nullptr;
  };
  std::array<Recent, kRecentLanes> recent{};
  std::size_t recent_next = 0;  // the entry the next remember() replaces
};

}  // namespace detail
}  // namespace nvmux
