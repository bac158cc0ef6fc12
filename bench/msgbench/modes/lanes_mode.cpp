// Modes `lanes` and `lanes-dispatcher`: nvmux's own messaging. Each consumer is a lightweight
// nvmux Thread bound to reactor core c % online_cores(); producers are plain pthreads calling
// nvmux::send_msg, which writes the closure straight into the producer's own SPSC lane to that
// thread (no pool, no shared ring, no CAS). `lanes` drains lanes with the target thread's inbox
// poller (MessageScheme::kInboxPoller); `lanes-dispatcher` has a dedicated messaging thread on its
// own reactor drain them and hand work to each target over one lane (MessageScheme::kDispatcher).
//
// send_msg blocks on back-pressure (spin, yield, then futex) until the consumer frees a slot, so
// the producer handle ignores the stop flag: the consumers keep running until every producer has
// been joined, which bounds the wait.

#include <algorithm>

#include "mode.hpp"
#include "nvmux/runtime/runtime.hpp"

namespace nvmux::msgbench {
namespace {

class LanesMode final : public Mode {
 public:
  explicit LanesMode(bool dispatcher) : dispatcher_(dispatcher) {}
  ~LanesMode() override { (void)stop(); }

  Status start(const ModeConfig& config) override {
    sinks_ = config.sinks;
    int cores = online_cores();
    int reactors = std::min(config.consumers, cores);
    RuntimeOptions options;
    options.cores.clear();
    for (int c = 0; c < reactors; ++c) options.cores.push_back(c);
    options.scheduler = SchedulerKind::kStatic;
    options.scheme = dispatcher_ ? MessageScheme::kDispatcher : MessageScheme::kInboxPoller;
    // The messaging thread gets a core of its own when one is left, else it shares the last one.
    options.dispatcher_core = dispatcher_ ? std::min(reactors, cores - 1) : -1;
    options.interrupt_mode = false;
    if (config.lane_capacity != 0) options.lane_capacity = config.lane_capacity;
    auto runtime = Runtime::create(options);
    if (!runtime.ok()) return runtime.status();
    runtime_ = std::move(runtime).value();
    for (std::size_t c = 0; c < sinks_.size(); ++c) {
      auto thread = runtime_->create_thread("msgb-cons-" + std::to_string(c), static_cast<int>(c) % reactors);
      if (!thread.ok()) return thread.status();
      threads_.push_back(thread.value());
    }
    return runtime_->start();
  }

  std::unique_ptr<ProducerHandle> attach_producer(int) override { return std::make_unique<Producer>(*this); }

  Status stop() override {
    if (!runtime_) return {};
    Status s = runtime_->stop();
    threads_.clear();
    runtime_.reset();
    return s;
  }

  // How often back-pressure reached the producers: sends that found their lane full, and futex
  // sleeps on a full lane (the rest of the waits were spins and yields).
  std::vector<std::pair<std::string, std::uint64_t>> counters() const override {
    return {{"lane_full_events", full_events_.load(std::memory_order_relaxed)},
            {"sender_sleeps", sender_sleeps_.load(std::memory_order_relaxed)}};
  }

 private:
  class Producer final : public ProducerHandle {
   public:
    explicit Producer(LanesMode& mode) : mode_(mode), used_(mode.threads_.size(), false) {}
    // On the producer's thread, while its lanes are still its own (they retire when it exits):
    // adds their back-pressure counters to the mode's.
    ~Producer() override {
      for (std::size_t c = 0; c < used_.size(); ++c) {
        detail::Lane* lane = nullptr;
        if (!used_[c] || !detail::acquire_lane(*mode_.threads_[c], lane).ok()) continue;
        // Relaxed RMW: independent tallies, read after every producer has been joined.
        mode_.full_events_.fetch_add(lane->full_events.load(std::memory_order_relaxed), std::memory_order_relaxed);
        mode_.sender_sleeps_.fetch_add(lane->sender_sleeps.load(std::memory_order_relaxed), std::memory_order_relaxed);
      }
    }
    bool send(int consumer, const Stamp& stamp, const std::atomic<bool>&) override {
      auto c = static_cast<std::size_t>(consumer);
      ConsumerSink* sink = mode_.sinks_[c];
      Status s = send_msg(*mode_.threads_[c], [sink, stamp] { sink->execute(stamp); });
      NVMUX_ASSERT(s.ok(), "send_msg to consumer {} failed while the runtime runs: {}", consumer, s.to_string());
      if (!used_[c]) used_[c] = true;  // a read and a predicted branch per send; a write once per lane
      return true;
    }

   private:
    LanesMode& mode_;
    std::vector<bool> used_;  // consumers this producer has a lane to
  };

  bool dispatcher_;
  std::atomic<std::uint64_t> full_events_{0};
  std::atomic<std::uint64_t> sender_sleeps_{0};
  std::vector<ConsumerSink*> sinks_;
  std::unique_ptr<Runtime> runtime_;
  std::vector<Thread*> threads_;
};

}  // namespace

std::unique_ptr<Mode> make_lanes_mode(bool dispatcher) { return std::make_unique<LanesMode>(dispatcher); }

}  // namespace nvmux::msgbench
