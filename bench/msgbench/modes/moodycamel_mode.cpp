// Mode `moodycamel`: one moodycamel::ConcurrentQueue per consumer, every producer holding a
// ProducerToken for each queue. A token gives its producer a sub-queue of its own inside the
// queue — the closest existing design to nvmux lanes — and the consumer dequeues in bulk with a
// ConsumerToken, rotating over the sub-queues.
//
// Bounded like the other designs: each queue is pre-sized for kMoodycamelInboxMsgs plus one block
// per producer, and producers use try_enqueue, which never allocates and fails when the
// pre-allocated blocks are in use; the producer then retries with the common back-off.

#include <concurrentqueue.h>

#include <memory>

#include "mode.hpp"

namespace nvmux::msgbench {
namespace {

constexpr std::size_t kMoodycamelInboxMsgs = 65536;
constexpr std::size_t kMoodycamelDequeueMsgs = 32;

using Queue = moodycamel::ConcurrentQueue<FnMessage>;

class MoodycamelMode final : public Mode {
 public:
  ~MoodycamelMode() override { (void)stop(); }

  Status start(const ModeConfig& config) override {
    sinks_ = config.sinks;
    for (std::size_t c = 0; c < sinks_.size(); ++c) {
      queues_.push_back(std::make_unique<Queue>(kMoodycamelInboxMsgs, static_cast<std::size_t>(config.producers),
                                                /*maxImplicitProducers=*/0));
      // A token is used by one thread at a time, not bound to the thread that built it.
      consumer_tokens_.push_back(std::make_unique<moodycamel::ConsumerToken>(*queues_.back()));
    }
    consumers_.start(static_cast<int>(sinks_.size()), &MoodycamelMode::poll_trampoline, this);
    return {};
  }

  std::unique_ptr<ProducerHandle> attach_producer(int) override { return std::make_unique<Producer>(*this); }

  Status stop() override {
    consumers_.stop();
    consumer_tokens_.clear();
    queues_.clear();
    return {};
  }

 private:
  class Producer final : public ProducerHandle {
   public:
    explicit Producer(MoodycamelMode& mode) : mode_(mode) {
      for (auto& q : mode_.queues_) tokens_.emplace_back(*q);
    }
    bool send(int consumer, const Stamp& stamp, const std::atomic<bool>& stop) override {
      auto c = static_cast<std::size_t>(consumer);
      FnMessage msg{&execute_on_sink, mode_.sinks_[c], stamp};
      Backoff backoff;
      while (!mode_.queues_[c]->try_enqueue(tokens_[c], msg)) {
        if (stop.load(std::memory_order_relaxed)) return false;  // a flag; nothing hangs off it
        backoff.pause();
      }
      return true;
    }

   private:
    MoodycamelMode& mode_;
    std::vector<moodycamel::ProducerToken> tokens_;
  };

  static std::size_t poll_trampoline(void* self, int consumer) {
    auto* mode = static_cast<MoodycamelMode*>(self);
    auto c = static_cast<std::size_t>(consumer);
    FnMessage batch[kMoodycamelDequeueMsgs];
    std::size_t n = mode->queues_[c]->try_dequeue_bulk(*mode->consumer_tokens_[c], batch, kMoodycamelDequeueMsgs);
    for (std::size_t i = 0; i < n; ++i) batch[i].run();
    return n;
  }

  std::vector<ConsumerSink*> sinks_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::vector<std::unique_ptr<moodycamel::ConsumerToken>> consumer_tokens_;
  PolledConsumers consumers_;
};

}  // namespace

std::unique_ptr<Mode> make_moodycamel_mode() { return std::make_unique<MoodycamelMode>(); }

}  // namespace nvmux::msgbench
