// Mode `mutex`: the naive baseline — each consumer's inbox is a std::deque guarded by a
// std::mutex. Producers lock, push one message and unlock; the consumer locks, takes the whole
// deque (swap) and runs it unlocked.
//
// The inbox is bounded at kMutexInboxMsgs (the size of SPDK's per-thread ring) so a consumer that
// falls behind pushes back instead of growing the deque without limit; a producer that finds it
// full retries with the common back-off.

#include <deque>
#include <mutex>

#include "mode.hpp"

namespace nvmux::msgbench {
namespace {

constexpr std::size_t kMutexInboxMsgs = 65536;

struct alignas(128) MutexInbox {
  std::mutex mutex;
  std::deque<FnMessage> queue;  // guarded by mutex
};

class MutexMode final : public Mode {
 public:
  ~MutexMode() override { (void)stop(); }

  Status start(const ModeConfig& config) override {
    sinks_ = config.sinks;
    inboxes_ = std::vector<MutexInbox>(sinks_.size());
    consumers_.start(static_cast<int>(sinks_.size()), &MutexMode::poll_trampoline, this);
    return {};
  }

  std::unique_ptr<ProducerHandle> attach_producer(int) override { return std::make_unique<Producer>(*this); }

  Status stop() override {
    consumers_.stop();
    inboxes_.clear();
    return {};
  }

 private:
  class Producer final : public ProducerHandle {
   public:
    explicit Producer(MutexMode& mode) : mode_(mode) {}
    bool send(int consumer, const Stamp& stamp, const std::atomic<bool>& stop) override {
      auto c = static_cast<std::size_t>(consumer);
      FnMessage msg{&execute_on_sink, mode_.sinks_[c], stamp};
      MutexInbox& inbox = mode_.inboxes_[c];
      Backoff backoff;
      for (;;) {
        {
          std::lock_guard lock(inbox.mutex);
          if (inbox.queue.size() < kMutexInboxMsgs) {
            inbox.queue.push_back(msg);
            return true;
          }
        }
        if (stop.load(std::memory_order_relaxed)) return false;  // a flag; nothing hangs off it
        backoff.pause();
      }
    }

   private:
    MutexMode& mode_;
  };

  static std::size_t poll_trampoline(void* self, int consumer) {
    auto* mode = static_cast<MutexMode*>(self);
    MutexInbox& inbox = mode->inboxes_[static_cast<std::size_t>(consumer)];
    std::deque<FnMessage> batch;
    {
      std::lock_guard lock(inbox.mutex);
      batch.swap(inbox.queue);
    }
    for (const FnMessage& msg : batch) msg.run();
    return batch.size();
  }

  std::vector<ConsumerSink*> sinks_;
  std::vector<MutexInbox> inboxes_;
  PolledConsumers consumers_;
};

}  // namespace

std::unique_ptr<Mode> make_mutex_mode() { return std::make_unique<MutexMode>(); }

}  // namespace nvmux::msgbench
