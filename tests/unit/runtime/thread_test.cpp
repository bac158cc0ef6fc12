// Deterministic: several lightweight threads stepped by hand from one OS thread (no reactors), so
// message order, poller timing, ownership checks and thread exit are checked exactly.
#include "nvmux/runtime/thread.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nvmux/runtime/runtime.hpp"

namespace nvmux {
namespace {

struct Manual {
  std::unique_ptr<Runtime> rt;
  explicit Manual(RuntimeOptions o = {}) : rt(Runtime::create(std::move(o)).value()) {}
  Thread* make(const std::string& name) { return rt->create_thread(name).value(); }
  bool poll(Thread* t, std::uint64_t now_us = 0) { return rt->poll_thread(*t, now_us).value(); }
  void run_message(Thread* t, std::function<void()> fn, std::uint64_t now_us = 0) {
    auto* heap = new std::function<void()>(std::move(fn));
    ASSERT_TRUE(send_msg(*t, [heap] {
                  (*heap)();
                  delete heap;
                }).ok());
    poll(t, now_us);
  }
};

TEST(ThreadDeterministic, MessagesRunInOrderOnTheirTargetWithCurrentSet) {
  Manual m;
  Thread* a = m.make("a");
  Thread* b = m.make("b");
  Thread* c = m.make("c");
  std::vector<std::pair<std::string, int>> log;
  for (int i = 0; i < 100; ++i) {
    for (Thread* t : {a, b, c}) {
      ASSERT_TRUE(send_msg(*t, [&log, i] { log.emplace_back(Thread::current()->name(), i); }).ok());
    }
  }
  EXPECT_TRUE(log.empty()) << "nothing runs until its thread is polled";
  EXPECT_EQ(Thread::current(), nullptr);
  // Poll in a scrambled order; each thread's messages still come out in send order.
  while (m.poll(c) | m.poll(a) | m.poll(b)) {
  }
  EXPECT_EQ(Thread::current(), nullptr) << "current is restored after a poll";
  ASSERT_EQ(log.size(), 300u);
  std::map<std::string, int> next;
  for (auto& [name, i] : log) {
    EXPECT_EQ(i, next[name]) << name;
    next[name] = i + 1;
  }
  EXPECT_EQ(next["a"], 100);
  EXPECT_EQ(next["b"], 100);
  EXPECT_EQ(next["c"], 100);
}

TEST(ThreadDeterministic, LightweightSendersGetTheirOwnLanes) {
  Manual m;
  Thread* a = m.make("a");
  Thread* b = m.make("b");
  std::vector<std::string> seen;
  m.run_message(a, [&] {
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(send_msg(*b, [&seen] { seen.push_back("from a"); }).ok());
    }
  });
  ASSERT_TRUE(send_msg(*b, [&seen] { seen.push_back("from main"); }).ok());
  m.poll(b);
  EXPECT_EQ(seen.size(), 4u);
  auto stats = m.rt->stats();
  int from_a = 0;
  for (auto& lane : stats.lanes) {
    if (lane.target == "b" && lane.sender == "a") {
      ++from_a;
      EXPECT_EQ(lane.messages, 3u);
    }
  }
  EXPECT_EQ(from_a, 1);
}

TEST(ThreadDeterministic, ActiveAndTimedPollersRunOnTime) {
  Manual m;
  Thread* t = m.make("t");
  int active = 0;
  int timed = 0;
  Poller* timer = nullptr;
  m.run_message(
      t,
      [&] {
        ASSERT_TRUE(t->register_poller("active", [&] {
                       ++active;
                       return PollerResult::kIdle;
                     }).ok());
        auto p = t->register_poller(
            "timed",
            [&] {
              ++timed;
              return PollerResult::kBusy;
            },
            100);
        ASSERT_TRUE(p.ok()) << p.status().to_string();
        timer = *p;
      },
      1000);
  EXPECT_EQ(t->poller_count(), 2u);
  EXPECT_EQ(active, 1) << "registered during the poll: runs in that same poll";
  EXPECT_EQ(timed, 0);
  EXPECT_FALSE(m.poll(t, 1050));
  EXPECT_EQ(timed, 0);
  EXPECT_TRUE(m.poll(t, 1100)) << "a busy timed poller makes the poll busy";
  EXPECT_EQ(timed, 1);
  EXPECT_FALSE(m.poll(t, 1199));
  EXPECT_TRUE(m.poll(t, 1200));
  EXPECT_EQ(timed, 2);
  EXPECT_EQ(active, 5);
  // Late by 350 us: it runs once, not three times, and is next due one period later.
  EXPECT_TRUE(m.poll(t, 1650));
  EXPECT_EQ(timed, 3);
  EXPECT_FALSE(m.poll(t, 1700));
  m.run_message(
      t, [&] { ASSERT_TRUE(t->pause_poller(timer).ok()); }, 1750);
  EXPECT_FALSE(m.poll(t, 1800));
  EXPECT_FALSE(m.poll(t, 5000));
  EXPECT_EQ(timed, 3) << "paused";
  m.run_message(
      t, [&] { ASSERT_TRUE(t->resume_poller(timer).ok()); }, 5010);
  EXPECT_FALSE(m.poll(t, 5100));
  EXPECT_TRUE(m.poll(t, 5110));
  EXPECT_EQ(timed, 4);
  EXPECT_EQ(timer->runs(), 4u);
}

TEST(ThreadDeterministic, PollerUnregistersItselfAfterThreeRuns) {
  Manual m;
  Thread* t = m.make("t");
  int runs = 0;
  Poller* self = nullptr;  // outlives the registering message: the poller reads it later
  m.run_message(t, [&] {
    self = t->register_poller("three", [&runs, &self, t] {
              if (++runs == 3) {
                EXPECT_TRUE(t->unregister_poller(self).ok());
              }
              return PollerResult::kBusy;
            }).value();
  });
  for (int i = 0; i < 10; ++i) m.poll(t);
  EXPECT_EQ(runs, 3);
  EXPECT_EQ(t->poller_count(), 0u);
}

TEST(ThreadDeterministic, OwnerOnlyCallsFromElsewhereNameObjectOwnerAndCaller) {
  Manual m;
  Thread* a = m.make("alpha");
  Thread* b = m.make("beta");
  auto r = a->register_poller("p", [] { return PollerResult::kIdle; });
  ASSERT_EQ(r.status().code(), StatusCode::kWrongThread);
  EXPECT_NE(r.status().message().find("'alpha'"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("reactor 0"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("no lightweight thread"), std::string::npos) << r.status().message();
  EXPECT_EQ(a->exit().code(), StatusCode::kWrongThread);

  Status from_beta;
  m.run_message(b, [&] { from_beta = a->exit(); });
  EXPECT_EQ(from_beta.code(), StatusCode::kWrongThread);
  EXPECT_NE(from_beta.message().find("'alpha'"), std::string::npos) << from_beta.message();
  EXPECT_NE(from_beta.message().find("'beta'"), std::string::npos) << from_beta.message();
  EXPECT_EQ(a->state(), ThreadState::kRunning);
  EXPECT_EQ(a->pause_poller(nullptr).code(), StatusCode::kWrongThread);
}

TEST(ThreadDeterministic, ExitDrainsQueuedMessagesThenRefusesNewOnes) {
  Manual m;
  Thread* t = m.make("t");
  Thread* peer = m.make("peer");
  std::vector<int> ran;
  int poller_runs = 0;
  m.run_message(t, [&] {
    ASSERT_TRUE(t->register_poller("p", [&] {
                   ++poller_runs;
                   return PollerResult::kIdle;
                 }).ok());
    ASSERT_TRUE(send_msg(*peer, [] {}).ok());  // t now owns a lane to peer
  });
  EXPECT_EQ(poller_runs, 1);
  ASSERT_TRUE(send_msg(*t, [&] {
                ran.push_back(0);
                EXPECT_TRUE(t->exit().ok());
                EXPECT_EQ(t->exit().code(), StatusCode::kAborted) << "exit twice";
                EXPECT_EQ(t->state(), ThreadState::kExiting);
              }).ok());
  for (int i = 1; i < 5; ++i) ASSERT_TRUE(send_msg(*t, [&ran, i] { ran.push_back(i); }).ok());
  m.poll(t);
  EXPECT_EQ(ran, (std::vector<int>{0, 1, 2, 3, 4})) << "messages queued before exit still run";
  EXPECT_EQ(poller_runs, 1) << "pollers stop at exit";
  EXPECT_EQ(t->state(), ThreadState::kExited);
  EXPECT_EQ(t->poller_count(), 0u);
  Status late = send_msg(*t, [] {});
  EXPECT_EQ(late.code(), StatusCode::kAborted);
  EXPECT_NE(late.message().find("'t'"), std::string::npos);
  EXPECT_FALSE(m.poll(t)) << "an exited thread does nothing";

  // t's own lane to peer is retired once peer drained it.
  auto before = m.rt->stats().lanes_retired;
  m.poll(peer);
  EXPECT_EQ(m.rt->stats().lanes_retired, before + 1);
}

TEST(ThreadDeterministic, MessageSentToSelfRunsOnALaterPoll) {
  Manual m;
  Thread* t = m.make("t");
  int hops = 0;
  std::function<void()> hop = [&] {
    if (++hops < 5) {
      ASSERT_TRUE(send_msg(*t, [&hop] { hop(); }).ok());
    }
  };
  ASSERT_TRUE(send_msg(*t, [&hop] { hop(); }).ok());
  int polls = 0;
  while (m.poll(t)) ++polls;
  EXPECT_EQ(hops, 5);
  EXPECT_GE(polls, 2) << "a self-send lands in another lane or after this batch";
}

}  // namespace
}  // namespace nvmux
