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

 private:
  class Producer final : public ProducerHandle {
   public:
    explicit Producer(LanesMode& mode) : mode_(mode) {}
    bool send(int consumer, const Stamp& stamp, const std::atomic<bool>&) override {
      auto c = static_cast<std::size_t>(consumer);
      ConsumerSink* sink = mode_.sinks_[c];
      Status s = send_msg(*mode_.threads_[c], [sink, stamp] { sink->execute(stamp); });
      NVMUX_ASSERT(s.ok(), "send_msg to consumer {} failed while the runtime runs: {}", consumer, s.to_string());
      return true;
    }

   private:
    LanesMode& mode_;
  };

  bool dispatcher_;
  std::vector<ConsumerSink*> sinks_;
  std::unique_ptr<Runtime> runtime_;
  std::vector<Thread*> threads_;
};

}  // namespace

std::unique_ptr<Mode> make_lanes_mode(bool dispatcher) { return std::make_unique<LanesMode>(dispatcher); }

}  // namespace nvmux::msgbench
