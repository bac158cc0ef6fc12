#pragma once
// The mode interface of nvmux-msgbench: one message-passing design under test per mode, each in
// its own small file under modes/. The harness (harness.cpp) owns the threads and the clock; a
// mode only moves Stamps from producers to consumers.
//
// Threading contract of a point (the harness calls in this order):
//   1. start()            on the harness thread: build the queues, start the consumers. From then
//                         on consumer c, and only consumer c, calls sinks[c]->execute() for every
//                         message addressed to it, on one OS thread at a time.
//   2. attach_producer()  on each producer's own thread, once, before its first send; the handle
//                         is used and destroyed on that thread only.
//   3. stop()             on the harness thread, after every producer thread has been joined:
//                         stop and join the consumers, release every queue and message. Messages
//                         still queued are dropped; the harness counts them as lost.

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "nvmux/common/cpu.hpp"
#include "nvmux/common/histogram.hpp"
#include "nvmux/common/status.hpp"

namespace nvmux::msgbench {

// What every message carries: its send time and who sent it, so the consumer can measure
// enqueue-to-execute latency and check that every message arrives exactly once and in order.
struct Stamp {
  std::uint64_t send_tsc;  // read_tsc() on the producer just before the send call
  std::uint32_t producer;  // producer index, 0..P-1
  std::uint32_t seq;       // per (producer, consumer) sequence number, from 0
};
static_assert(sizeof(Stamp) == 16, "a Stamp is two words; modes copy it into their messages");

class ConsumerSink;

// A message as the queue-based designs (mutex, moodycamel) carry it by value: a function, its
// context and the payload — what a small closure compiles to, without an allocation.
struct FnMessage {
  void (*fn)(ConsumerSink* sink, const Stamp& stamp);
  ConsumerSink* sink;
  Stamp stamp;
  void run() const { fn(sink, stamp); }
};
static_assert(sizeof(FnMessage) == 32);

// Per-consumer accounting. Owner: the one thread that runs consumer c's messages (execute() is
// single-writer); the harness reads the counters from its own thread while the point runs.
class alignas(128) ConsumerSink {
 public:
  // `producers`: how many producers may send here; `work_ticks`: busy work per message (TSC ticks).
  ConsumerSink(int producers, std::uint64_t work_ticks);

  // Runs one message: records its latency (when recording), checks its sequence number, counts it
  // and then spins for the configured busy work. Consumer thread only.
  void execute(const Stamp& stamp) {
    std::uint64_t now = read_tsc();
    if (recording_.load(std::memory_order_relaxed)) {  // a plain flag; no data hangs off it
      latency_ticks_.record(now > stamp.send_tsc ? now - stamp.send_tsc : 0);
    }
    NVMUX_ASSERT(stamp.producer < next_seq_.size(), "message from producer {} but only {} producers exist",
                 stamp.producer, next_seq_.size());
    std::uint32_t& expect = next_seq_[stamp.producer];
    if (stamp.seq != expect)
      out_of_order_.store(out_of_order_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    expect = stamp.seq + 1;
    // Single writer: a relaxed load+store is enough; the harness only samples it for progress.
    executed_.store(executed_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (work_ticks_ != 0) {
      std::uint64_t until = now + work_ticks_;
      while (read_tsc() < until) cpu_relax();
    }
  }

  // Harness side (any thread).
  std::uint64_t executed() const { return executed_.load(std::memory_order_relaxed); }
  std::uint64_t out_of_order() const { return out_of_order_.load(std::memory_order_relaxed); }
  void set_recording(bool on) { recording_.store(on, std::memory_order_relaxed); }  // sampled flag only
  const Histogram& latency_ticks() const { return latency_ticks_; }
  // Messages received from `producer` (next expected sequence number). Read after the consumer
  // thread has been joined (the join orders it).
  std::uint32_t received_from(int producer) const { return next_seq_[static_cast<std::size_t>(producer)]; }

 private:
  std::atomic<std::uint64_t> executed_{0};
  std::atomic<std::uint64_t> out_of_order_{0};
  std::atomic<bool> recording_{false};
  std::uint64_t work_ticks_;
  std::vector<std::uint32_t> next_seq_;
  Histogram latency_ticks_;
};

// FnMessage::fn for every benchmark message: execute it on its consumer's sink.
void execute_on_sink(ConsumerSink* sink, const Stamp& stamp);

// The sending end a producer thread owns (tokens, caches); used on that thread only.
class ProducerHandle {
 public:
  virtual ~ProducerHandle() = default;
  // Sends one message to consumer `consumer`. When the design pushes back (queue full, pool empty)
  // it retries with spin-then-yield back-off until `stop` is set. Returns true once the message
  // is enqueued, false when `stop` was seen first (nothing enqueued). A design whose own send call
  // blocks (nvmux send_msg) may return only after the consumer made room.
  virtual bool send(int consumer, const Stamp& stamp, const std::atomic<bool>& stop) = 0;
};

struct ModeConfig {
  int producers = 1;
  int consumers = 1;
  std::size_t lane_capacity = 0;     // lanes modes: slots per lane; 0 = the runtime's default
  std::vector<ConsumerSink*> sinks;  // one per consumer, alive until stop() returns
};

class Mode {
 public:
  virtual ~Mode() = default;
  // Errors: kUnavailable (the design's environment could not start, e.g. DPDK EAL), kInternal.
  virtual Status start(const ModeConfig& config) = 0;
  virtual std::unique_ptr<ProducerHandle> attach_producer(int producer) = 0;
  virtual Status stop() = 0;
  // Mode-specific counters for the report ("pool_empty_retries": 123, ...); after stop().
  virtual std::vector<std::pair<std::string, std::uint64_t>> counters() const { return {}; }
};

// Spin-then-yield back-off the producers use while a design pushes back. Same for every mode so
// no design is favoured by its retry policy.
class Backoff {
 public:
  void pause();
  void reset() { spins_ = 0; }

 private:
  static constexpr unsigned kSpinsBeforeYield = 64;
  unsigned spins_ = 0;
};

// Consumer threads for the designs that have no runtime of their own (spdk, mutex, moodycamel):
// thread c is pinned to core c % online_cores() and calls poll(c) until stop(), then once more
// until poll returns 0 (whatever is left is the mode's to free).
class PolledConsumers {
 public:
  using PollFn = std::size_t (*)(void* ctx, int consumer);
  PolledConsumers() = default;
  PolledConsumers(const PolledConsumers&) = delete;
  PolledConsumers& operator=(const PolledConsumers&) = delete;
  ~PolledConsumers() { stop(); }
  void start(int consumers, PollFn poll, void* ctx);
  void stop();

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

struct PointOptions;
struct PointResult;
// run_point (msgbench.hpp) with a Mode object instead of a catalogue name: how tests drive a
// design that misbehaves on purpose. Same errors and bounds as run_point.
Result<PointResult> run_point_with(std::unique_ptr<Mode> mode, const std::string& mode_name, int producers,
                                   int consumers, const PointOptions& options);

// Factories (each in modes/<name>.cpp). The DPDK and runtime modes exist only when built.
std::unique_ptr<Mode> make_mutex_mode();
std::unique_ptr<Mode> make_moodycamel_mode();
#if defined(NVMUX_MSGBENCH_HAVE_DPDK)
std::unique_ptr<Mode> make_spdk_mode(bool relaxed_tail_sync);
#endif
#if defined(NVMUX_MSGBENCH_HAVE_RUNTIME)
std::unique_ptr<Mode> make_lanes_mode(bool dispatcher);
#endif

}  // namespace nvmux::msgbench
