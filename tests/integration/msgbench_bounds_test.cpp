// Every point is bounded: a design that livelocks, collapses or never drains is cut off at its
// deadline, reports what it completed and is marked stalled — and the call returns in bounded time
// with every thread joined. Driven with deliberately broken modes through run_point_with.

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "mode.hpp"
#include "msgbench.hpp"
#include "support/test_scale.hpp"

namespace mb = nvmux::msgbench;

namespace {

// A bounded inbox whose consumer can be told to stop consuming: `run_for_msgs` messages are
// executed, then the consumer only spins (a livelock as far as the producers can tell).
class StuckMode final : public mb::Mode {
 public:
  explicit StuckMode(std::uint64_t run_for_msgs) : run_for_msgs_(run_for_msgs) {}
  nvmux::Status start(const mb::ModeConfig& config) override {
    sinks_ = config.sinks;
    consumers_.start(static_cast<int>(sinks_.size()), &StuckMode::poll, this);
    return {};
  }
  std::unique_ptr<mb::ProducerHandle> attach_producer(int) override { return std::make_unique<Producer>(*this); }
  nvmux::Status stop() override {
    consumers_.stop();
    return {};
  }

 private:
  static constexpr std::size_t kInboxMsgs = 64;
  struct Producer final : mb::ProducerHandle {
    explicit Producer(StuckMode& mode) : mode(mode) {}
    bool send(int consumer, const mb::Stamp& stamp, const std::atomic<bool>& stop) override {
      mb::Backoff backoff;
      for (;;) {
        {
          std::lock_guard lock(mode.mutex_);
          if (mode.inbox_.size() < kInboxMsgs) {
            mode.inbox_.push_back({&mb::execute_on_sink, mode.sinks_[static_cast<std::size_t>(consumer)], stamp});
            return true;
          }
        }
        if (stop.load(std::memory_order_relaxed)) return false;
        backoff.pause();
      }
    }
    StuckMode& mode;
  };
  static std::size_t poll(void* self, int consumer) {
    auto* m = static_cast<StuckMode*>(self);
    if (consumer != 0) return 0;  // one consumer thread serves the shared inbox
    std::lock_guard lock(m->mutex_);
    if (m->done_ >= m->run_for_msgs_ || m->inbox_.empty()) return 0;
    m->inbox_.front().run();
    m->inbox_.erase(m->inbox_.begin());
    ++m->done_;
    return 1;
  }

  std::uint64_t run_for_msgs_;
  std::vector<mb::ConsumerSink*> sinks_;
  std::mutex mutex_;
  std::vector<mb::FnMessage> inbox_;  // guarded by mutex_
  std::uint64_t done_ = 0;            // guarded by mutex_
  mb::PolledConsumers consumers_;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(MsgbenchBounds, ALivelockedDesignIsCutOffMarkedStalledAndReportsWhatItCompleted) {
  mb::PointOptions o;
  o.duration_s = 10;  // would be long; the stall cut-off must end it after stall_after_s
  o.warmup_s = 0.05;
  o.stall_after_s = 0.3;
  o.drain_timeout_s = 0.3;
  auto t0 = std::chrono::steady_clock::now();
  auto r = mb::run_point_with(std::make_unique<StuckMode>(100), "stuck", 2, 1, o);
  double took = seconds_since(t0);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->stalled);
  EXPECT_NE(r->stall_reason.find("no message executed"), std::string::npos) << r->stall_reason;
  EXPECT_LT(r->seconds, 1.0) << "the window must be cut off, not run for its 10 s";
  EXPECT_LT(took, 5.0);
  EXPECT_EQ(r->executed, 100u) << "it reports what it completed";
  EXPECT_EQ(r->sent, 100u + 64u) << "what it completed plus a full inbox";
  EXPECT_EQ(r->lost, 64u) << "messages never executed are counted as lost";
}

TEST(MsgbenchBounds, ACollapsingDesignIsMarkedStalledAtTheEndOfItsWindow) {
  mb::PointOptions o;
  o.duration_s = 0.5;
  o.warmup_s = 0.01;
  o.stall_after_s = 5;  // never reached: only the collapse floor can mark it
  o.drain_timeout_s = 0.2;
  auto r = mb::run_point_with(std::make_unique<StuckMode>(10), "stuck", 1, 1, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->stalled);
  EXPECT_NE(r->stall_reason.find("collapsed"), std::string::npos) << r->stall_reason;
  EXPECT_GE(r->seconds, 0.5);
}

TEST(MsgbenchBounds, AHealthyDesignIsNotMarkedStalled) {
  mb::PointOptions o;
  o.duration_s = 0.3;
  o.warmup_s = 0.05;
  // This mutex inbox managed 6.6k msgs/s under TSan with another test on the second core.
  o.collapse_floor_msgs_per_sec *= nvmux::test::stress_factor();
  auto r = mb::run_point_with(std::make_unique<StuckMode>(UINT64_MAX), "never-stuck", 1, 1, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_FALSE(r->stalled) << r->stall_reason;
  EXPECT_EQ(r->executed, r->sent);
  EXPECT_EQ(r->lost, 0u);
}

}  // namespace
