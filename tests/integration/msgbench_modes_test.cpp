// Every message-passing mode delivers every message on a short run: each message is stamped with
// its producer and a per-(producer, consumer) sequence number, and the consumers count and check
// them. The DPDK modes have their own binary (msgbench_dpdk_test.cpp).

#include <gtest/gtest.h>

#include "msgbench.hpp"
#include "support/test_scale.hpp"

namespace mb = nvmux::msgbench;

namespace {

mb::PointOptions short_point() {
  mb::PointOptions o;
  o.duration_s = 0.3;
  o.warmup_s = 0.05;
  return o;
}

std::vector<std::string> non_dpdk_built_modes() {
  std::vector<std::string> out;
  for (const auto& m : mb::mode_catalog()) {
    if (m.built && !m.uses_dpdk) out.push_back(m.name);
  }
  return out;
}

void expect_complete(const mb::PointResult& r) {
  SCOPED_TRACE(r.mode + " P=" + std::to_string(r.producers) + " C=" + std::to_string(r.consumers) + " " +
               r.stall_reason);
  EXPECT_GT(r.sent, 0u);
  EXPECT_EQ(r.executed, r.sent) << "every sent message must run exactly once";
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.out_of_order, 0u) << "per (producer, consumer) order must hold";
  EXPECT_EQ(r.unbalanced_pairs, 0u) << "each consumer must receive what each producer sent it";
  // Not asserted: a non-zero window. A starved consumer (the mutex inbox lets producers barge in
  // ahead of a woken consumer) may run nothing in a short window on a loaded machine.
  EXPECT_LE(r.p50_ns, r.p99_ns);
  EXPECT_LE(r.p99_ns, r.p999_ns);
}

class ModeDelivery : public ::testing::TestWithParam<std::string> {};

// ThreadSanitizer does not model std::atomic_thread_fence, which moodycamel::ConcurrentQueue uses
// to order its slots: under TSan its runs would only produce false reports.
bool tsan_cannot_follow(const std::string& mode) {
#if defined(NVMUX_TSAN)
  return mode == "moodycamel";
#else
  (void)mode;
  return false;
#endif
}

TEST_P(ModeDelivery, ThreeProducersTwoConsumersEveryMessageOnceInOrder) {
  if (tsan_cannot_follow(GetParam())) GTEST_SKIP() << "moodycamel synchronises with fences TSan does not model";
  auto r = mb::run_point(GetParam(), 3, 2, short_point());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  expect_complete(*r);
  EXPECT_EQ(r->mode, GetParam());
  EXPECT_EQ(r->producers, 3);
  EXPECT_EQ(r->consumers, 2);
}

TEST_P(ModeDelivery, BusyWorkSlowsTheConsumerAndStillDeliversEverything) {
  if (tsan_cannot_follow(GetParam())) GTEST_SKIP() << "moodycamel synchronises with fences TSan does not model";
  mb::PointOptions o = short_point();
  o.work_ns = 2000;  // at most 500k msgs/s per consumer
  auto r = mb::run_point(GetParam(), 2, 1, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  expect_complete(*r);
  EXPECT_LT(r->msgs_per_sec, 600'000.0) << "the handler's busy work must bound the throughput";
}

INSTANTIATE_TEST_SUITE_P(Modes, ModeDelivery, ::testing::ValuesIn(non_dpdk_built_modes()), [](const auto& info) {
  std::string n = info.param;
  for (char& ch : n) ch = (ch == '-') ? '_' : ch;
  return n;
});

TEST(MsgbenchModes, UnknownModeIsRejectedByName) {
  auto s = mb::check_modes({"mutex", "no-such-mode"});
  EXPECT_EQ(s, nvmux::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no-such-mode"), std::string::npos) << s.message();
  auto r = mb::run_point("no-such-mode", 1, 1, short_point());
  EXPECT_FALSE(r.ok());
}

TEST(MsgbenchModes, ModesNotBuiltSayWhy) {
  for (const auto& m : mb::mode_catalog()) {
    if (m.built) continue;
    auto s = mb::check_modes({m.name});
    EXPECT_EQ(s, nvmux::StatusCode::kUnsupported) << m.name;
    EXPECT_NE(s.message().find("not built"), std::string::npos) << s.message();
    EXPECT_FALSE(m.not_built_why.empty()) << m.name;
  }
}

TEST(MsgbenchModes, BadCountsAreRejected) {
  EXPECT_EQ(mb::run_point("mutex", 0, 1, short_point()).status(), nvmux::StatusCode::kInvalidArgument);
  EXPECT_EQ(mb::run_point("mutex", 1, 0, short_point()).status(), nvmux::StatusCode::kInvalidArgument);
  mb::PointOptions o = short_point();
  o.duration_s = 0;
  EXPECT_EQ(mb::run_point("mutex", 1, 1, o).status(), nvmux::StatusCode::kInvalidArgument);
}

TEST(MsgbenchModes, SweepJsonHasEveryFieldForEveryPoint) {
  mb::SweepOptions o;
  o.modes = {"mutex"};
  o.producers = {1, 2};
  o.consumers = {1};
  o.point = short_point();
  o.point.duration_s = 0.15;
  int progress_calls = 0;
  auto report = mb::run_sweep(o, [&](const mb::Progress&) { ++progress_calls; });
  ASSERT_TRUE(report.ok()) << report.status().to_string();
  EXPECT_EQ(progress_calls, 2 * 2) << "one call when each point starts and one when it ends";
  nlohmann::json j = mb::to_json(*report);
  ASSERT_TRUE(j.contains("machine"));
  EXPECT_TRUE(j["machine"].contains("cpu"));
  EXPECT_TRUE(j["machine"].contains("online_cores"));
  ASSERT_TRUE(j.contains("params"));
  for (const char* k : {"modes", "producers", "consumers", "duration_s", "work_ns"})
    EXPECT_TRUE(j["params"].contains(k)) << k;
  ASSERT_EQ(j["results"].size(), 2u);
  for (const auto& r : j["results"]) {
    EXPECT_TRUE(r["mode"].is_string());
    EXPECT_TRUE(r["producers"].is_number_integer());
    EXPECT_TRUE(r["consumers"].is_number_integer());
    EXPECT_TRUE(r["msgs_per_sec"].is_number());
    EXPECT_GE(r["msgs_per_sec"].get<double>(), 0);  // 0 is possible on a starved machine; the field is what counts
    for (const char* k : {"p50", "p99", "p999"}) EXPECT_TRUE(r["latency_ns"][k].is_number_integer()) << k;
    EXPECT_TRUE(r["cpu_ms_per_million"].is_number());
    EXPECT_TRUE(r["stalled"].is_boolean());
  }
}

TEST(MsgbenchModes, RepetitionsRunEveryModeOnceEachWithTheFirstModeRotating) {
  // Two modes TSan can follow (moodycamel synchronises with fences it does not model).
  const std::string other = mb::check_modes({"lanes"}).ok() ? "lanes" : "mutex";
  mb::SweepOptions o;
  o.modes = {"mutex", other};
  o.producers = {1};
  o.consumers = {1};
  o.reps = 3;
  o.point = short_point();
  o.point.duration_s = 0.05;
  std::vector<std::pair<int, std::string>> started;  // (rep, mode) in the order they ran
  auto report = mb::run_sweep(o, [&](const mb::Progress& p) {
    if (p.finished == nullptr) started.emplace_back(p.rep, *p.mode);
    EXPECT_EQ(p.total, 6u);
  });
  ASSERT_TRUE(report.ok()) << report.status().to_string();
  const std::vector<std::pair<int, std::string>> expected{{0, "mutex"}, {0, other},   {1, other},
                                                          {1, "mutex"}, {2, "mutex"}, {2, other}};
  EXPECT_EQ(started, expected);
  ASSERT_EQ(report->results.size(), 6u);
  for (std::size_t i = 0; i < report->results.size(); ++i) {
    EXPECT_EQ(report->results[i].rep, expected[i].first);
    EXPECT_EQ(report->results[i].mode, expected[i].second);
  }
  nlohmann::json j = mb::to_json(*report);
  EXPECT_EQ(j["params"]["reps"], 3);
  ASSERT_EQ(j["summary"].size(), other == "mutex" ? 1u : 2u);
  for (const auto& s : j["summary"]) EXPECT_EQ(s["reps"], other == "mutex" ? 6 : 3);
}

TEST(MsgbenchModes, RepetitionsOutsideTheirRangeAreRejected) {
  mb::SweepOptions o;
  o.modes = {"mutex"};
  for (int reps : {0, -1, mb::kMaxReps + 1}) {
    o.reps = reps;
    auto report = mb::run_sweep(o, nullptr);
    ASSERT_FALSE(report.ok()) << reps;
    EXPECT_EQ(report.status().code(), nvmux::StatusCode::kInvalidArgument);
    EXPECT_NE(report.status().message().find("--reps"), std::string::npos) << report.status().message();
  }
}

}  // namespace
