// send_msg / try_send_msg and lanes, driven by hand (manual mode): fairness across lanes, full
// lanes, the dispatcher scheme, lane retirement when a sender exits.
#include "nvmux/runtime/send.hpp"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nvmux/runtime/runtime.hpp"

namespace nvmux {
namespace {

TEST(SendDeterministic, DrainIsBatchedAndFairAcrossLanes) {
  RuntimeOptions o;
  o.drain_batch = 4;
  auto rt = Runtime::create(o).value();
  Thread* busy_sender = rt->create_thread("busy").value();
  Thread* quiet_sender = rt->create_thread("quiet").value();
  Thread* target = rt->create_thread("target").value();
  std::vector<char> order;
  ASSERT_TRUE(send_msg(*busy_sender, [&] {
                for (int i = 0; i < 100; ++i) ASSERT_TRUE(send_msg(*target, [&order] { order.push_back('B'); }).ok());
              }).ok());
  ASSERT_TRUE(send_msg(*quiet_sender, [&] {
                for (int i = 0; i < 6; ++i) ASSERT_TRUE(send_msg(*target, [&order] { order.push_back('q'); }).ok());
              }).ok());
  ASSERT_TRUE(rt->poll_thread(*busy_sender, 0).value());
  ASSERT_TRUE(rt->poll_thread(*quiet_sender, 0).value());

  ASSERT_TRUE(rt->poll_thread(*target, 0).value());
  ASSERT_EQ(order.size(), 8u) << "one poll drains at most drain_batch (4) per lane";
  EXPECT_EQ(std::count(order.begin(), order.end(), 'q'), 4);
  ASSERT_TRUE(rt->poll_thread(*target, 0).value());
  EXPECT_EQ(order.size(), 14u);
  EXPECT_EQ(std::count(order.begin(), order.end(), 'q'), 6) << "the quiet sender is done after two polls";
  while (rt->poll_thread(*target, 0).value()) {
  }
  EXPECT_EQ(order.size(), 106u);

  auto stats = rt->stats();
  int lanes_to_target = 0;
  for (const auto& lane : stats.lanes) {
    if (lane.target != "target") continue;
    ++lanes_to_target;
    EXPECT_EQ(lane.batch_size.max, 4u);
    EXPECT_EQ(lane.depth, 0u);
    EXPECT_EQ(lane.high_water, lane.sender == "busy" ? 100u : 6u);
  }
  EXPECT_EQ(lanes_to_target, 2) << "one lane from each sender, both seen in the stats";
}

TEST(SendDeterministic, SenderSpreadingOverManyTargetsKeepsOneLaneEach) {
  // More targets than the sender's recent-lane cache holds, visited round-robin and then in a
  // scrambled order: every message must land in the one lane of its (sender, target) pair, in order.
  constexpr int kTargets = 13;
  constexpr int kRounds = 20;
  auto rt = Runtime::create(RuntimeOptions{}).value();
  std::vector<Thread*> targets;
  std::vector<std::vector<int>> got(kTargets);
  for (int t = 0; t < kTargets; ++t) {
    // Appended rather than `"t" + std::to_string(t)`: GCC 12 at -O3 inlines that operator+ into a
    // memcpy it then (falsely) reports as overlapping (-Werror=restrict, GCC PR 105651).
    std::string name = std::to_string(t);
    name.insert(name.begin(), 't');
    targets.push_back(rt->create_thread(name).value());
  }
  int seq = 0;
  for (int round = 0; round < kRounds; ++round) {
    for (int k = 0; k < kTargets; ++k) {
      int t = round % 2 == 0 ? k : (k * 5 + round) % kTargets;  // 5 is coprime with 13: a permutation
      auto& sink = got[static_cast<std::size_t>(t)];
      ASSERT_TRUE(send_msg(*targets[static_cast<std::size_t>(t)], [&sink, s = seq] { sink.push_back(s); }).ok());
      ++seq;
    }
  }
  EXPECT_EQ(rt->stats().lanes_created, static_cast<std::uint64_t>(kTargets)) << "one lane per target, no duplicates";
  for (int t = 0; t < kTargets; ++t) {
    while (rt->poll_thread(*targets[static_cast<std::size_t>(t)], 0).value()) {
    }
    const auto& sink = got[static_cast<std::size_t>(t)];
    ASSERT_EQ(sink.size(), static_cast<std::size_t>(kRounds)) << "target " << t;
    for (std::size_t i = 1; i < sink.size(); ++i) EXPECT_LT(sink[i - 1], sink[i]) << "target " << t << " out of order";
  }
}

TEST(SendDeterministic, FullLaneIsWouldBlockBeforeStartAndFreesAfterADrain) {
  RuntimeOptions o;
  o.lane_capacity = 4;
  auto rt = Runtime::create(o).value();
  Thread* t = rt->create_thread("t").value();
  int ran = 0;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(try_send_msg(*t, [&ran] { ++ran; }).ok());
  Status full = try_send_msg(*t, [&ran] { ++ran; });
  EXPECT_EQ(full.code(), StatusCode::kWouldBlock);
  EXPECT_NE(full.message().find("'t' is full (4 slots)"), std::string::npos) << full.message();
  Status blocking = send_msg(*t, [&ran] { ++ran; });
  EXPECT_EQ(blocking.code(), StatusCode::kWouldBlock) << "nothing drains before start, so it cannot wait";
  EXPECT_NE(blocking.message().find("not started"), std::string::npos) << blocking.message();
  EXPECT_TRUE(rt->poll_thread(*t, 0).value());
  EXPECT_EQ(ran, 4);
  EXPECT_TRUE(try_send_msg(*t, [&ran] { ++ran; }).ok());
  rt->poll_thread(*t, 0).value();
  EXPECT_EQ(ran, 5);
  auto stats = rt->stats();
  ASSERT_EQ(stats.lanes.size(), 1u);
  EXPECT_EQ(stats.lanes[0].full_events, 2u);
  EXPECT_EQ(stats.lanes[0].sent, 5u);
  EXPECT_EQ(stats.lanes[0].messages, 5u);
}

// A sender asleep on its full lane is woken once the consumer has freed half of it, not after every
// drain batch. The armed flag stands in for the sleeping sender: the consumer claims it (clears it
// and makes the one FUTEX_WAKE) exactly when it wakes the sender.
TEST(SendDeterministic, ASleepingSenderIsWokenOnceHalfItsLaneIsFree) {
  struct Case {
    std::size_t capacity;
    std::size_t drain_batch;
    int wake_at_poll;  // the first poll after which at least capacity / 2 slots are free
  };
  for (const Case& c : {Case{64, 8, 4}, Case{8, 3, 2}, Case{2, 1, 1}, Case{16, 32, 1}}) {
    SCOPED_TRACE(fmt::format("capacity {} drain_batch {}", c.capacity, c.drain_batch));
    RuntimeOptions o;
    o.lane_capacity = c.capacity;
    o.drain_batch = c.drain_batch;
    auto rt = Runtime::create(o).value();
    Thread* t = rt->create_thread("t").value();
    std::size_t ran = 0;
    for (std::size_t i = 0; i < c.capacity; ++i) ASSERT_TRUE(try_send_msg(*t, [&ran] { ++ran; }).ok());
    ASSERT_EQ(try_send_msg(*t, [&ran] { ++ran; }).code(), StatusCode::kWouldBlock);
    detail::Lane* lane = nullptr;
    ASSERT_TRUE(detail::acquire_lane(*t, lane).ok());
    lane->producer_waiting.store(1);  // the sender armed its flag, saw the lane full, and sleeps
    for (int poll = 1; poll < c.wake_at_poll; ++poll) {
      ASSERT_TRUE(rt->poll_thread(*t, 0).value());
      EXPECT_EQ(lane->producer_waiting.load(), 1u)
          << "poll " << poll << ": " << ran << " of " << c.capacity << " slots free, the sender sleeps on";
    }
    ASSERT_TRUE(rt->poll_thread(*t, 0).value());
    EXPECT_EQ(lane->producer_waiting.load(), 0u) << ran << " of " << c.capacity << " free: the sender is woken";
    EXPECT_GE(ran, c.capacity / 2);
    EXPECT_LT(ran, c.capacity / 2 + c.drain_batch) << "and not a batch later than needed";
    while (rt->poll_thread(*t, 0).value()) {
    }
    EXPECT_EQ(ran, c.capacity);
  }
}

TEST(SendDeterministic, SelfSendIntoAFullLaneIsWouldBlockNotADeadlock) {
  RuntimeOptions o;
  o.lane_capacity = 2;
  auto rt = Runtime::create(o).value();
  Thread* t = rt->create_thread("t").value();
  std::vector<Status> results;
  ASSERT_TRUE(send_msg(*t, [&] {
                for (int i = 0; i < 3; ++i) results.push_back(send_msg(*t, [] {}));
              }).ok());
  rt->poll_thread(*t, 0).value();
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].ok());
  EXPECT_TRUE(results[1].ok());
  EXPECT_EQ(results[2].code(), StatusCode::kWouldBlock);
}

TEST(SendDeterministic, DispatcherRelaysForeignMessagesInOrder) {
  RuntimeOptions o;
  o.scheme = MessageScheme::kDispatcher;
  auto rt = Runtime::create(o).value();
  Thread* t = rt->create_thread("t").value();
  Thread* d = rt->dispatcher_thread();
  std::vector<int> ran;
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(send_msg(*t, [&ran, i] { ran.push_back(i); }).ok());
  EXPECT_FALSE(rt->poll_thread(*t, 0).value()) << "foreign messages go to the dispatcher first";
  while (rt->poll_thread(*d, 0).value()) {
  }
  EXPECT_TRUE(ran.empty());
  while (rt->poll_thread(*t, 0).value()) {
  }
  ASSERT_EQ(ran.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(ran[static_cast<std::size_t>(i)], i);
  auto stats = rt->stats();
  std::uint64_t forwarded = 0;
  for (auto& ts : stats.threads) {
    if (ts.name == "nvmux-dispatcher") forwarded = ts.forwarded;
    if (ts.name == "t") {
      EXPECT_EQ(ts.messages, 50u);
    }
  }
  EXPECT_EQ(forwarded, 50u);
  EXPECT_EQ(stats.lanes.size(), 2u) << "foreign -> dispatcher, dispatcher -> t";
}

TEST(SendDeterministic, DispatcherStopsRelayingWhenTheTargetLaneIsFull) {
  RuntimeOptions o;
  o.scheme = MessageScheme::kDispatcher;
  o.lane_capacity = 8;
  auto rt = Runtime::create(o).value();
  Thread* t = rt->create_thread("t").value();
  Thread* d = rt->dispatcher_thread();
  int ran = 0;
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(send_msg(*t, [&ran] { ++ran; }).ok());
  rt->poll_thread(*d, 0).value();  // 8 relayed: t's lane is full now
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(send_msg(*t, [&ran] { ++ran; }).ok());
  EXPECT_FALSE(rt->poll_thread(*d, 0).value()) << "nothing relayed into a full lane, nothing lost";
  while (rt->poll_thread(*t, 0).value() | rt->poll_thread(*d, 0).value()) {
  }
  EXPECT_EQ(ran, 16);
}

TEST(SendDeterministic, LaneOfAnExitedPthreadIsRetiredOnceDrained) {
  auto rt = Runtime::create({}).value();
  Thread* t = rt->create_thread("t").value();
  std::vector<int> ran;
  std::thread sender([&] {
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(send_msg(*t, [&ran, i] { ran.push_back(i); }).ok());
  });
  sender.join();
  auto stats = rt->stats();
  ASSERT_EQ(stats.lanes.size(), 1u);
  EXPECT_TRUE(stats.lanes[0].sender_gone);
  EXPECT_EQ(stats.lanes_retired, 0u) << "not retired while it still holds messages";
  rt->poll_thread(*t, 0).value();
  EXPECT_EQ(ran, (std::vector<int>{0, 1, 2, 3, 4}));
  stats = rt->stats();
  EXPECT_EQ(stats.lanes.size(), 0u);
  EXPECT_EQ(stats.lanes_retired, 1u);
  EXPECT_EQ(stats.retired_lane_messages, 5u);
}

TEST(SendDeterministic, LargestCaptureRunsIntact) {
  auto rt = Runtime::create({}).value();
  Thread* t = rt->create_thread("t").value();
  std::array<std::uint8_t, 40> payload{};
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i * 7);
  std::uint64_t sum = 0;
  std::uint64_t* out = &sum;
  ASSERT_TRUE(send_msg(*t, [payload, out] {
                for (auto b : payload) *out += b;
              }).ok());
  rt->poll_thread(*t, 0).value();
  std::uint64_t expect = 0;
  for (auto b : payload) expect += b;
  EXPECT_EQ(sum, expect);
}

TEST(SendDeterministic, LatencyIsSampledEveryNthMessage) {
  auto rt = Runtime::create({}).value();
  Thread* t = rt->create_thread("t").value();
  for (std::uint64_t i = 0; i < 10 * kLatencySampleEveryMsgs; ++i) ASSERT_TRUE(send_msg(*t, [] {}).ok());
  while (rt->poll_thread(*t, 0).value()) {
  }
  auto stats = rt->stats();
  ASSERT_EQ(stats.lanes.size(), 1u);
  EXPECT_EQ(stats.lanes[0].latency_ns.count, 10u);
  EXPECT_GT(stats.lanes[0].latency_ns.max, 0u);
}

}  // namespace
}  // namespace nvmux
