// Real reactors on real OS threads: start/stop, back-pressure, interrupt-mode sleep and wake-up,
// timed pollers, the dynamic scheduler. Every wait is bounded by a generous deadline and checks
// counts, never timings, so load on a shared machine slows these tests but does not fail them.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "nvmux/common/cpu.hpp"
#include "nvmux/runtime/runtime.hpp"

namespace nvmux {
namespace {

constexpr auto kDeadline = std::chrono::seconds(30);

// Polls `done` until it holds or the deadline passes.
bool wait_for(const std::function<bool()>& done, std::chrono::steady_clock::duration limit = kDeadline) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

RuntimeOptions two_reactors() {
  RuntimeOptions o;
  o.cores = {0, 1};
  return o;
}

TEST(Reactor, MessagesSentBeforeAndAfterStartRunOnTheirThread) {
  auto rt = Runtime::create(two_reactors()).value();
  Thread* early = rt->create_thread("early").value();
  std::atomic<int> early_ran{0};
  std::atomic<int> wrong_thread{0};
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(send_msg(*early, [&, early] {
                  if (Thread::current() != early) wrong_thread.fetch_add(1);
                  early_ran.fetch_add(1);
                }).ok());
  }
  ASSERT_TRUE(rt->start().ok());
  Thread* late = rt->create_thread("late").value();
  std::atomic<int> late_ran{0};
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(send_msg(*late, [&, late] {
                  if (Thread::current() != late) wrong_thread.fetch_add(1);
                  late_ran.fetch_add(1);
                }).ok());
  }
  EXPECT_TRUE(wait_for([&] { return early_ran.load() == 100 && late_ran.load() == 100; }));
  EXPECT_EQ(wrong_thread.load(), 0);
  EXPECT_EQ(rt->start().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(rt->stop().ok());
  EXPECT_EQ(send_msg(*early, [] {}).code(), StatusCode::kUnavailable);
}

TEST(Reactor, StopDrainsEveryQueuedMessage) {
  auto rt = Runtime::create(two_reactors()).value();
  std::vector<Thread*> threads{rt->create_thread("a").value(), rt->create_thread("b").value()};
  ASSERT_TRUE(rt->start().ok());
  std::atomic<int> ran{0};
  for (int i = 0; i < 2000; ++i) ASSERT_TRUE(send_msg(*threads[i % 2], [&ran] { ran.fetch_add(1); }).ok());
  // Messages sent by running messages during the drain still run.
  ASSERT_TRUE(send_msg(*threads[0], [&ran, b = threads[1]] {
                ran.fetch_add(1);
                EXPECT_TRUE(send_msg(*b, [&ran] { ran.fetch_add(1); }).ok());
              }).ok());
  Status s = rt->stop();
  EXPECT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(ran.load(), 2002);
}

TEST(Reactor, StopFromAReactorIsRefused) {
  auto rt = Runtime::create({}).value();
  Thread* t = rt->create_thread("t").value();
  ASSERT_TRUE(rt->start().ok());
  std::atomic<bool> done{false};
  Status inside;
  ASSERT_TRUE(send_msg(*t, [&] {
                inside = rt->stop();
                done.store(true);
              }).ok());
  ASSERT_TRUE(wait_for([&] { return done.load(); }));
  EXPECT_EQ(inside.code(), StatusCode::kWrongThread);
  EXPECT_TRUE(rt->stop().ok());
}

TEST(Reactor, FullLaneBlocksTheSenderAndResumesWithoutLoss) {
  RuntimeOptions o = two_reactors();
  o.lane_capacity = 8;
  auto rt = Runtime::create(o).value();
  Thread* t = rt->create_thread("t").value();
  ASSERT_TRUE(rt->start().ok());
  std::atomic<bool> gate_open{false};
  std::atomic<bool> gate_entered{false};
  // Hold t inside one message so nothing drains its lanes (bounded: gives up after the deadline).
  ASSERT_TRUE(send_msg(*t, [&] {
                gate_entered.store(true);
                auto deadline = std::chrono::steady_clock::now() + kDeadline;
                while (!gate_open.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
              }).ok());
  ASSERT_TRUE(wait_for([&] { return gate_entered.load(); }));

  constexpr int kMessages = 200;
  std::atomic<int> sent{0};
  std::vector<int> ran;  // only t writes it
  std::thread sender([&] {
    for (int i = 0; i < kMessages; ++i) {
      Status s = send_msg(*t, [&ran, i] { ran.push_back(i); });
      ASSERT_TRUE(s.ok()) << s.to_string();
      sent.fetch_add(1);
    }
  });
  ASSERT_TRUE(wait_for([&] { return sent.load() == 8; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(sent.load(), 8) << "the sender waits while the lane is full";
  bool full_seen = false;
  for (auto& lane : rt->stats().lanes) {
    if (lane.depth == 8 && lane.full_events >= 1) full_seen = true;
  }
  EXPECT_TRUE(full_seen);
  gate_open.store(true);
  sender.join();
  ASSERT_TRUE(rt->stop().ok());
  ASSERT_EQ(ran.size(), static_cast<std::size_t>(kMessages));
  for (int i = 0; i < kMessages; ++i) EXPECT_EQ(ran[static_cast<std::size_t>(i)], i);
}

TEST(Reactor, SenderOnAReactorGetsWouldBlockInsteadOfWaitingForever) {
  RuntimeOptions o = two_reactors();
  o.lane_capacity = 4;
  o.reactor_send_wait_us = 2000;
  auto rt = Runtime::create(o).value();
  Thread* stuck = rt->create_thread("stuck", 0).value();
  Thread* sender = rt->create_thread("sender", 1).value();
  ASSERT_TRUE(rt->start().ok());
  std::atomic<bool> gate_open{false};
  std::atomic<bool> gate_entered{false};
  ASSERT_TRUE(send_msg(*stuck, [&] {
                gate_entered.store(true);
                auto deadline = std::chrono::steady_clock::now() + kDeadline;
                while (!gate_open.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
              }).ok());
  ASSERT_TRUE(wait_for([&] { return gate_entered.load(); }));
  std::atomic<int> ran{0};
  std::vector<StatusCode> codes;  // written on `sender`, read after `done`
  std::atomic<bool> done{false};
  ASSERT_TRUE(send_msg(*sender, [&] {
                for (int i = 0; i < 5; ++i) codes.push_back(send_msg(*stuck, [&ran] { ran.fetch_add(1); }).code());
                done.store(true);
              }).ok());
  ASSERT_TRUE(wait_for([&] { return done.load(); }));
  ASSERT_EQ(codes.size(), 5u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(codes[static_cast<std::size_t>(i)], StatusCode::kOk);
  EXPECT_EQ(codes[4], StatusCode::kWouldBlock) << "a reactor must not block on a lane another reactor drains";
  gate_open.store(true);
  ASSERT_TRUE(wait_for([&] { return ran.load() == 4; }));
  EXPECT_TRUE(rt->stop().ok());
}

TEST(Reactor, ExitedThreadLeavesItsReactorAndRefusesMessages) {
  auto rt = Runtime::create(two_reactors()).value();
  Thread* t = rt->create_thread("leaver").value();
  Thread* other = rt->create_thread("stayer").value();
  ASSERT_TRUE(rt->start().ok());
  std::atomic<int> ran{0};
  ASSERT_TRUE(send_msg(*t, [&ran, t] {
                ran.fetch_add(1);
                EXPECT_TRUE(t->exit().ok());
              }).ok());
  ASSERT_TRUE(wait_for([&] { return t->state() == ThreadState::kExited; }));
  EXPECT_EQ(send_msg(*t, [] {}).code(), StatusCode::kAborted);
  ASSERT_TRUE(wait_for([&] {
    for (auto& r : rt->stats().reactors) {
      for (auto& name : r.threads) {
        if (name == "leaver") return false;
      }
    }
    return true;
  }));
  ASSERT_TRUE(send_msg(*other, [&ran] { ran.fetch_add(1); }).ok());
  ASSERT_TRUE(wait_for([&] { return ran.load() == 2; }));
  EXPECT_TRUE(rt->stop().ok());
}

TEST(Reactor, IdleReactorYieldsItsCoreUnlessToldNotTo) {
  for (std::uint64_t after : {std::uint64_t{64}, std::uint64_t{0}}) {
    RuntimeOptions o;
    o.idle_yield_after_polls = after;
    auto rt = Runtime::create(o).value();
    Thread* t = rt->create_thread("t").value();
    ASSERT_TRUE(rt->start().ok());
    std::atomic<int> ran{0};
    ASSERT_TRUE(send_msg(*t, [&ran] { ran.fetch_add(1); }).ok());
    ASSERT_TRUE(wait_for([&] { return ran.load() == 1 && rt->stats().reactors[0].iterations > 10'000; }));
    auto s = rt->stats();
    if (after == 0) {
      EXPECT_EQ(s.reactors[0].yields, 0u) << "idle_yield_after_polls = 0 never yields";
    } else {
      EXPECT_GT(s.reactors[0].yields, 0u) << "an idle reactor yields after " << after << " empty polls";
      EXPECT_LE(s.reactors[0].yields, s.reactors[0].iterations);
    }
    EXPECT_TRUE(rt->stop().ok());
  }
}

TEST(Reactor, SenderPinnedToTheConsumersCoreDeliversEverythingInOrder) {
  // The sender and the reactor share core 0 and the lane holds 8: every refill needs the reactor to
  // run, drain and wake the sender, and then yield the core back to it.
  RuntimeOptions o;
  o.lane_capacity = 8;
  auto rt = Runtime::create(o).value();
  Thread* t = rt->create_thread("t").value();
  ASSERT_TRUE(rt->start().ok());
  constexpr int kMessages = 5000;
  std::vector<int> ran;  // only t writes it
  ran.reserve(kMessages);
  std::thread sender([&] {
    ASSERT_TRUE(pin_current_thread(0).ok());
    for (int i = 0; i < kMessages; ++i) {
      Status s = send_msg(*t, [&ran, i] { ran.push_back(i); });
      ASSERT_TRUE(s.ok()) << s.to_string();
    }
  });
  sender.join();
  // Without the yield each refill waits for the scheduler to preempt the polling reactor (about
  // 2.5 s for this test on the 2-core CI machine instead of milliseconds); the count shows it ran.
  EXPECT_GT(rt->stats().reactors[0].yields, 0u);
  ASSERT_TRUE(rt->stop().ok());
  ASSERT_EQ(ran.size(), static_cast<std::size_t>(kMessages));
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(ran[static_cast<std::size_t>(i)], i);
}

TEST(Reactor, InterruptModeSleepsAndEverySendWakesIt) {
  RuntimeOptions o = two_reactors();
  o.interrupt_mode = true;
  o.idle_before_sleep_us = 200;
  o.max_sleep_us = 60'000'000;  // only a wake-up ends a sleep within the test's bounded waits
  auto rt = Runtime::create(o).value();
  Thread* a = rt->create_thread("a").value();
  Thread* b = rt->create_thread("b").value();
  ASSERT_TRUE(rt->start().ok());
  std::atomic<int> ran{0};
  for (int round = 0; round < 20; ++round) {
    // Let both reactors fall asleep, then wake them with one message each.
    ASSERT_TRUE(wait_for([&] {
      auto s = rt->stats();
      return s.reactors[0].asleep && s.reactors[1].asleep;
    })) << "round "
        << round;
    ASSERT_TRUE(send_msg(*a, [&ran] { ran.fetch_add(1); }).ok());
    ASSERT_TRUE(send_msg(*b, [&ran] { ran.fetch_add(1); }).ok());
    ASSERT_TRUE(wait_for([&] { return ran.load() == 2 * (round + 1); }, std::chrono::seconds(10)))
        << "lost wake-up in round " << round;
  }
  auto s = rt->stats();
  EXPECT_GT(s.reactors[0].wakeups + s.reactors[1].wakeups, 0u);
  EXPECT_TRUE(rt->stop().ok());
}

TEST(Reactor, TimedPollerWakesASleepingReactor) {
  RuntimeOptions o;
  o.interrupt_mode = true;
  o.idle_before_sleep_us = 100;
  auto rt = Runtime::create(o).value();
  Thread* t = rt->create_thread("t").value();
  std::atomic<int> runs{0};
  ASSERT_TRUE(send_msg(*t, [&] {
                ASSERT_TRUE(t->register_poller(
                                 "tick",
                                 [&runs] {
                                   runs.fetch_add(1);
                                   return PollerResult::kIdle;
                                 },
                                 2000)
                                .ok());
              }).ok());
  ASSERT_TRUE(rt->start().ok());
  EXPECT_TRUE(wait_for([&] { return runs.load() >= 5; }));
  EXPECT_GT(rt->stats().reactors[0].sleeps, 0u) << "the reactor slept between ticks";
  EXPECT_TRUE(rt->stop().ok());
}

TEST(Reactor, DynamicSchedulerSpreadsBusyThreadsAndGathersIdleOnes) {
  RuntimeOptions o = two_reactors();
  o.scheduler = SchedulerKind::kDynamic;
  o.scheduler_period_us = 2000;
  auto rt = Runtime::create(o).value();
  // Round-robin placement puts both busy threads on reactor 0 and both idle ones on reactor 1.
  Thread* busy1 = rt->create_thread("busy1").value();
  Thread* idle1 = rt->create_thread("idle1").value();
  Thread* busy2 = rt->create_thread("busy2").value();
  Thread* idle2 = rt->create_thread("idle2").value();
  for (Thread* t : {busy1, busy2}) {
    ASSERT_TRUE(
        send_msg(*t, [t] { ASSERT_TRUE(t->register_poller("spin", [] { return PollerResult::kBusy; }).ok()); }).ok());
  }
  ASSERT_EQ(busy1->reactor_index(), busy2->reactor_index());
  ASSERT_TRUE(rt->start().ok());
  EXPECT_TRUE(wait_for([&] {
    return busy1->reactor_index() != busy2->reactor_index() && idle1->reactor_index() == idle2->reactor_index();
  })) << rt->stats().to_json().dump(1);
  std::uint64_t moves = 0;
  for (auto& ts : rt->stats().threads) moves += ts.moves;
  EXPECT_GT(moves, 0u);
  EXPECT_TRUE(rt->stop().ok());
}

TEST(Reactor, BoundThreadStaysOnItsCore) {
  RuntimeOptions o = two_reactors();
  o.scheduler = SchedulerKind::kDynamic;
  o.scheduler_period_us = 1000;
  auto rt = Runtime::create(o).value();
  Thread* bound = rt->create_thread("bound", 1).value();
  ASSERT_TRUE(rt->start().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(bound->reactor_index(), 1);
  EXPECT_EQ(rt->move_thread(*bound, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(rt->stop().ok());
}

}  // namespace
}  // namespace nvmux
