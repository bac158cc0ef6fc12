// Real threads against the runtime: many plain pthreads send stamped messages to lightweight
// threads while the dynamic scheduler (and a chaos mover) moves those threads between reactors.
// Every message must run exactly once and in order per (sender, target). Bounded in count (scaled
// down under sanitizers by test::stress_count) and in wall-clock time (each test fails, never
// hangs, past its deadline).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "nvmux/common/cpu.hpp"
#include "nvmux/runtime/runtime.hpp"
#include "support/test_scale.hpp"

namespace nvmux {
namespace {

constexpr auto kDeadline = std::chrono::seconds(150);  // generous: the 2-core VM is shared

using Clock = std::chrono::steady_clock;

bool wait_for(const std::function<bool()>& done, Clock::time_point deadline) {
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Per-target checker: touched only by code running on that lightweight thread (one reactor at a
// time; a move hands it over with a happens-before edge).
struct alignas(128) TargetCheck {
  std::vector<std::uint64_t> next_seq;
  std::uint64_t out_of_order = 0;
  std::uint64_t first_bad_sender = UINT64_MAX;
  std::atomic<std::uint64_t> ran{0};
};

struct Stamped {
  TargetCheck* check;
  std::uint32_t sender;
  std::uint64_t seq;
  std::uint64_t check_word;
  void operator()() const {
    TargetCheck& c = *check;
    if (c.next_seq[sender] != seq || check_word != (seq ^ 0x9e3779b97f4a7c15ull)) {
      if (c.out_of_order++ == 0) c.first_bad_sender = sender;
    }
    c.next_seq[sender] = seq + 1;
    c.ran.store(c.ran.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // single writer
  }
};
static_assert(sizeof(Stamped) <= kMaxMsgCaptureBytes);

struct Scenario {
  int senders;
  int targets;
  std::uint64_t per_sender;
  RuntimeOptions options;
  bool chaos_mover;
  // Senders must have slept on a full lane (futex) at least once: the scenario is about wake-ups.
  bool expect_sender_sleeps = false;
};

void run_scenario(const Scenario& sc) {
  auto start_time = Clock::now();
  auto deadline = start_time + kDeadline;
  auto rt = Runtime::create(sc.options).value();
  std::vector<Thread*> targets;
  std::vector<TargetCheck> checks(static_cast<std::size_t>(sc.targets));
  for (int t = 0; t < sc.targets; ++t) {
    targets.push_back(rt->create_thread("target" + std::to_string(t)).value());
    checks[static_cast<std::size_t>(t)].next_seq.assign(static_cast<std::size_t>(sc.senders), 0);
  }
  ASSERT_TRUE(rt->start().ok());

  std::atomic<bool> give_up{false};
  std::atomic<bool> may_exit{!sc.expect_sender_sleeps};  // a sender's exit retires its lanes and their stats
  std::atomic<int> send_errors{0};
  std::vector<std::thread> senders;
  for (int s = 0; s < sc.senders; ++s) {
    senders.emplace_back([&, s] {
      std::vector<std::uint64_t> seq(static_cast<std::size_t>(sc.targets), 0);
      for (std::uint64_t i = 0; i < sc.per_sender; ++i) {
        if ((i & 1023) == 0 && give_up.load(std::memory_order_relaxed)) return;
        std::size_t t = (i + static_cast<std::uint64_t>(s)) % static_cast<std::size_t>(sc.targets);
        std::uint64_t n = seq[t]++;
        Status st =
            send_msg(*targets[t], Stamped{&checks[t], static_cast<std::uint32_t>(s), n, n ^ 0x9e3779b97f4a7c15ull});
        if (!st.ok()) {
          send_errors.fetch_add(1);
          return;
        }
      }
      while (!may_exit.load() && !give_up.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  }
  std::atomic<bool> stop_mover{false};
  std::thread mover;
  if (sc.chaos_mover) {
    mover = std::thread([&] {
      std::uint64_t k = 0;
      while (!stop_mover.load()) {
        Thread* t = targets[k % targets.size()];
        EXPECT_TRUE(rt->move_thread(*t, static_cast<int>((k / targets.size()) % 2)).ok());
        ++k;
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
      }
    });
  }
  // Sender threads may be left behind only if the deadline passes: tell them to stop, then join.
  const std::uint64_t total = static_cast<std::uint64_t>(sc.senders) * sc.per_sender;
  auto ran = [&] {
    std::uint64_t sum = 0;
    for (auto& c : checks) sum += c.ran.load(std::memory_order_relaxed);
    return sum;
  };
  bool all_ran = wait_for([&] { return ran() == total; }, deadline);
  std::uint64_t sender_sleeps = 0;
  for (const auto& lane : rt->stats().lanes) sender_sleeps += lane.sender_sleeps;
  may_exit.store(true);
  if (!all_ran) {
    give_up.store(true);
    // A sender that lost its wake-up sleeps until the safety-net recheck; stop() wakes it.
    (void)rt->stop();
  }
  for (auto& t : senders) t.join();
  stop_mover.store(true);
  if (mover.joinable()) mover.join();
  ASSERT_TRUE(all_ran) << "only " << ran() << " of " << total << " messages ran before the deadline\n"
                       << rt->stats().to_json().dump(1);
  EXPECT_EQ(send_errors.load(), 0);
  if (sc.expect_sender_sleeps) {
    EXPECT_GT(sender_sleeps, 0u) << "no sender ever slept on a full lane: the scenario tested no wake-up";
  }

  // Lanes of exited senders are retired once drained: one per (sender, target). What stays is the
  // dispatcher's own lane to each target (scheme kDispatcher), whose sender is still alive.
  const std::uint64_t foreign_lanes = static_cast<std::uint64_t>(sc.senders) * static_cast<std::uint64_t>(sc.targets);
  bool retired = wait_for(
      [&] {
        auto s = rt->stats();
        for (auto& lane : s.lanes) {
          if (lane.sender != "nvmux-dispatcher") return false;
        }
        return s.lanes_retired == foreign_lanes;
      },
      deadline);
  auto stats = rt->stats();
  EXPECT_TRUE(retired) << "lanes live " << stats.lanes.size() << ", created " << stats.lanes_created << ", retired "
                       << stats.lanes_retired << ", expected retired " << foreign_lanes;
  Status stopped = rt->stop();
  EXPECT_TRUE(stopped.ok()) << stopped.to_string();

  for (std::size_t t = 0; t < checks.size(); ++t) {
    EXPECT_EQ(checks[t].out_of_order, 0u) << "target " << t << " first bad sender " << checks[t].first_bad_sender;
    for (int s = 0; s < sc.senders; ++s) {
      // Sender s sent to target t every message i with (i + s) % targets == t.
      std::uint64_t expect = 0;
      for (std::uint64_t i = 0; i < static_cast<std::uint64_t>(sc.targets); ++i) {
        if ((i + static_cast<std::uint64_t>(s)) % checks.size() == t && i < sc.per_sender) {
          expect += (sc.per_sender - 1 - i) / checks.size() + 1;
        }
      }
      EXPECT_EQ(checks[t].next_seq[static_cast<std::size_t>(s)], expect) << "target " << t << " sender " << s;
    }
  }
  std::uint64_t moves = 0;
  for (auto& ts : stats.threads) moves += ts.moves;
  if (sc.chaos_mover) {
    EXPECT_GT(moves, 0u);
  }
  auto seconds = std::chrono::duration<double>(Clock::now() - start_time).count();
  std::printf("%d senders x %llu messages -> %d targets: %.2f s, %.2f M msg/s, %llu moves, %llu sender sleeps\n",
              sc.senders, static_cast<unsigned long long>(sc.per_sender), sc.targets, seconds,
              static_cast<double>(total) / seconds / 1e6, static_cast<unsigned long long>(moves),
              static_cast<unsigned long long>(sender_sleeps));
}

RuntimeOptions base_options() {
  RuntimeOptions o;
  o.cores = {0, 1};
  return o;
}

// The scenario: 64 pthreads -> 4 lightweight threads on 2 reactors, the dynamic
// scheduler on, plus explicit moves mid-run: 1 million per sender, full size in release (about
// 10 s on a 2-core VM); a fiftieth under TSan, a tenth under ASan.
TEST(RuntimeStress, SixtyFourPthreadsToFourMovingThreadsExactlyOnceInOrder) {
  Scenario sc;
  sc.senders = 64;
  sc.targets = 4;
  sc.per_sender = test::stress_count(1'000'000, 500);
  sc.options = base_options();
  sc.options.scheduler = SchedulerKind::kDynamic;
  sc.options.scheduler_period_us = 2000;
  sc.chaos_mover = true;
  run_scenario(sc);
}

TEST(RuntimeStress, DispatcherSchemeExactlyOnceInOrder) {
  Scenario sc;
  sc.senders = 16;
  sc.targets = 4;
  sc.per_sender = test::stress_count(100'000, 500);
  sc.options = base_options();
  sc.options.scheme = MessageScheme::kDispatcher;
  sc.options.scheduler = SchedulerKind::kDynamic;
  sc.options.scheduler_period_us = 2000;
  sc.chaos_mover = true;
  run_scenario(sc);
}

// Interrupt mode with senders that start and stop: in each wave the reactors are first allowed to
// fall asleep, then fresh pthreads send a burst and exit. The safety-net timeout is a minute, so a
// lost wake-up leaves messages unrun and fails the wave's bounded wait instead of hiding.
TEST(RuntimeStress, InterruptModeSendersThatStartAndStopLoseNoWakeUp) {
  constexpr int kTargets = 4;
  constexpr int kSendersPerWave = 4;
  constexpr auto kWaveLimit = std::chrono::seconds(20);
  const std::uint64_t waves = test::stress_count(200, 20);
  const std::uint64_t per_sender = test::stress_count(2000, 100);
  RuntimeOptions o = base_options();
  o.interrupt_mode = true;
  o.idle_before_sleep_us = 300;
  o.max_sleep_us = 60'000'000;
  auto rt = Runtime::create(o).value();
  std::vector<Thread*> targets;
  std::vector<TargetCheck> checks(kTargets);
  const std::size_t total_senders = static_cast<std::size_t>(waves) * kSendersPerWave;
  for (int t = 0; t < kTargets; ++t) {
    targets.push_back(rt->create_thread("target" + std::to_string(t)).value());
    checks[static_cast<std::size_t>(t)].next_seq.assign(total_senders, 0);
  }
  ASSERT_TRUE(rt->start().ok());
  auto ran = [&] {
    std::uint64_t sum = 0;
    for (auto& c : checks) sum += c.ran.load(std::memory_order_relaxed);
    return sum;
  };
  std::uint64_t expected = 0;
  for (std::uint64_t wave = 0; wave < waves; ++wave) {
    ASSERT_TRUE(wait_for(
        [&] {
          auto s = rt->stats();
          return s.reactors[0].asleep && s.reactors[1].asleep;
        },
        Clock::now() + kWaveLimit))
        << "wave " << wave << ": the reactors never fell asleep";
    std::vector<std::thread> senders;
    for (int k = 0; k < kSendersPerWave; ++k) {
      auto sender = static_cast<std::uint32_t>(wave * kSendersPerWave + static_cast<std::uint64_t>(k));
      senders.emplace_back([&, sender] {
        std::vector<std::uint64_t> seq(kTargets, 0);
        for (std::uint64_t i = 0; i < per_sender; ++i) {
          std::size_t t = (i + sender) % kTargets;
          std::uint64_t n = seq[t]++;
          ASSERT_TRUE(send_msg(*targets[t], Stamped{&checks[t], sender, n, n ^ 0x9e3779b97f4a7c15ull}).ok());
        }
      });
    }
    for (auto& t : senders) t.join();
    expected += kSendersPerWave * per_sender;
    ASSERT_TRUE(wait_for([&] { return ran() == expected; }, Clock::now() + kWaveLimit))
        << "lost wake-up in wave " << wave << ": " << ran() << " of " << expected << " ran\n"
        << rt->stats().to_json().dump(1);
  }
  auto stats = rt->stats();
  std::uint64_t sleeps = 0;
  std::uint64_t wakeups = 0;
  for (auto& r : stats.reactors) {
    sleeps += r.sleeps;
    wakeups += r.wakeups;
  }
  EXPECT_GE(sleeps, waves);
  EXPECT_GE(wakeups, waves) << "every wave woke at least one sleeping reactor";
  Status stopped = rt->stop();
  EXPECT_TRUE(stopped.ok()) << stopped.to_string();
  for (auto& c : checks) EXPECT_EQ(c.out_of_order, 0u);
  std::printf("%llu waves of %d pthreads x %llu messages, %llu sleeps, %llu wake-ups\n",
              static_cast<unsigned long long>(waves), kSendersPerWave, static_cast<unsigned long long>(per_sender),
              static_cast<unsigned long long>(sleeps), static_cast<unsigned long long>(wakeups));
}

// Senders blocked on full lanes are woken only by the consumer (once half the lane is free), by
// its exit or by stop(). The safety-net recheck is set to ten minutes, so a lost wake-up leaves a
// sender asleep and fails the deadline (stop() then wakes it) instead of hiding behind the recheck.
TEST(RuntimeStress, BlockedSendersAreWokenWithoutTheSafetyNet) {
  Scenario sc;
  sc.senders = 8;
  sc.targets = 2;
  sc.per_sender = test::stress_count(200'000, 500);
  sc.options = base_options();
  sc.options.lane_capacity = 16;
  sc.options.drain_batch = 4;
  sc.options.blocked_sender_recheck_us = 600'000'000;
  sc.chaos_mover = true;
  sc.expect_sender_sleeps = true;
  run_scenario(sc);
}

TEST(RuntimeStress, SmallLanesBlockAndResumeWithoutLoss) {
  Scenario sc;
  sc.senders = 8;
  sc.targets = 2;
  sc.per_sender = test::stress_count(20'000, 500);  // every few messages block: slow by design
  sc.options = base_options();
  sc.options.lane_capacity = 8;
  sc.options.drain_batch = 4;
  sc.chaos_mover = true;
  run_scenario(sc);
}

}  // namespace
}  // namespace nvmux
