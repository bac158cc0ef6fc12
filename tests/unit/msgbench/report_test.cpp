// The renderings of a sweep (table, JSON, SVG) and the target checks, on a hand-made report.

#include <gtest/gtest.h>

#include <sstream>

#include "msgbench.hpp"

namespace mb = nvmux::msgbench;

namespace {

mb::PointResult point(std::string mode, int p, int c, double mps, std::uint64_t p99, bool stalled = false) {
  mb::PointResult r;
  r.mode = std::move(mode);
  r.producers = p;
  r.consumers = c;
  r.seconds = 1;
  r.msgs_per_sec = mps;
  r.window_msgs = static_cast<std::uint64_t>(mps);
  r.p50_ns = p99 / 2;
  r.p99_ns = p99;
  r.p999_ns = p99 * 2;
  r.cpu_ms_per_million = 100;
  r.stalled = stalled;
  if (stalled) r.stall_reason = "collapsed";
  return r;
}

mb::SweepReport sample_report() {
  mb::SweepReport rep;
  rep.machine = {{"cpu", "Test CPU"}, {"online_cores", 2}};
  rep.options.modes = {"spdk", "moodycamel", "lanes"};
  rep.options.producers = {1, 2, 8, 64};
  rep.options.consumers = {1};
  rep.options.point.duration_s = 1;
  for (int p : {1, 2, 8, 64}) {
    bool spdk_collapses = p >= 8;
    rep.results.push_back(point("spdk", p, 1, spdk_collapses ? 100 : 4e6 / p, 20'000, spdk_collapses));
    rep.results.push_back(point("moodycamel", p, 1, 20e6, 50'000));
    rep.results.push_back(point("lanes", p, 1, p == 64 ? 30e6 : 50e6, 10'000));
  }
  return rep;
}

const mb::TargetCheck* find_check(const std::vector<mb::TargetCheck>& checks, const std::string& prefix) {
  for (const auto& c : checks) {
    if (c.what.rfind(prefix, 0) == 0) return &c;
  }
  return nullptr;
}

TEST(MsgbenchTargets, RatiosAreComputedFromTheRightPoints) {
  auto checks = mb::check_targets(sample_report());
  const auto* vs_spdk = find_check(checks, "lanes / spdk throughput, 2 producers, 1 consumer");
  ASSERT_NE(vs_spdk, nullptr);
  EXPECT_TRUE(vs_spdk->evaluated);
  EXPECT_DOUBLE_EQ(vs_spdk->ratio, 50e6 / 2e6);
  EXPECT_TRUE(vs_spdk->met);  // 25 >= 20

  const auto* oversub = find_check(checks, "lanes 64 producers / lanes 1 producer, 1 consumer");
  ASSERT_NE(oversub, nullptr);
  EXPECT_DOUBLE_EQ(oversub->ratio, 30e6 / 50e6);
  EXPECT_TRUE(oversub->met);

  const auto* vs_mc = find_check(checks, "lanes / moodycamel throughput, 8 producers, 1 consumer");
  ASSERT_NE(vs_mc, nullptr);
  EXPECT_DOUBLE_EQ(vs_mc->ratio, 2.5);
  EXPECT_TRUE(vs_mc->met);

  const auto* p99 = find_check(checks, "lanes p99 / spdk p99");
  ASSERT_NE(p99, nullptr);
  EXPECT_TRUE(p99->evaluated);
  EXPECT_DOUBLE_EQ(p99->ratio, 0.5);  // only P=1 and P=2 count: spdk stalled at 8 and 64
  EXPECT_TRUE(p99->met);
  EXPECT_NE(p99->detail.find("2 points"), std::string::npos) << p99->detail;
}

TEST(MsgbenchTargets, MissedTargetsAndMissingPointsAreReportedAsSuch) {
  auto rep = sample_report();
  for (auto& r : rep.results) {
    if (r.mode == "lanes" && r.producers == 8) r.msgs_per_sec = 30e6;  // 1.5x moodycamel
    if (r.mode == "lanes" && r.producers == 2) r.p99_ns = 40'000;      // worse than spdk
  }
  rep.results.erase(std::remove_if(rep.results.begin(), rep.results.end(),
                                   [](const mb::PointResult& r) { return r.mode == "lanes" && r.producers == 64; }),
                    rep.results.end());
  auto checks = mb::check_targets(rep);
  EXPECT_FALSE(find_check(checks, "lanes / moodycamel")->met);
  EXPECT_FALSE(find_check(checks, "lanes 64 producers")->evaluated);
  const auto* p99 = find_check(checks, "lanes p99 / spdk p99");
  EXPECT_FALSE(p99->met);
  EXPECT_DOUBLE_EQ(p99->ratio, 2.0);
}

TEST(MsgbenchReport, JsonHasEveryFieldTheIssueNames) {
  nlohmann::json j = mb::to_json(sample_report());
  EXPECT_EQ(j["machine"]["cpu"], "Test CPU");
  EXPECT_EQ(j["params"]["modes"].size(), 3u);
  EXPECT_EQ(j["params"]["producers"], nlohmann::json({1, 2, 8, 64}));
  ASSERT_EQ(j["results"].size(), 12u);
  const auto& first = j["results"][0];
  EXPECT_EQ(first["mode"], "spdk");
  EXPECT_EQ(first["producers"], 1);
  EXPECT_EQ(first["consumers"], 1);
  EXPECT_DOUBLE_EQ(first["msgs_per_sec"].get<double>(), 4e6);
  EXPECT_EQ(first["latency_ns"]["p50"], 10'000);
  EXPECT_EQ(first["latency_ns"]["p99"], 20'000);
  EXPECT_EQ(first["latency_ns"]["p999"], 40'000);
  EXPECT_DOUBLE_EQ(first["cpu_ms_per_million"].get<double>(), 100);
  EXPECT_EQ(first["stalled"], false);
  EXPECT_EQ(j["results"][6]["stalled"], true);  // spdk at 8 producers
  EXPECT_FALSE(j["targets"].empty());
}

TEST(MsgbenchReport, TableHasARowPerPointAndMarksStalls) {
  std::string t = mb::format_table(sample_report());
  EXPECT_NE(t.find("1 consumer"), std::string::npos);
  EXPECT_NE(t.find("Test CPU"), std::string::npos);
  EXPECT_NE(t.find("STALLED: collapsed"), std::string::npos);
  EXPECT_NE(t.find("Targets"), std::string::npos);
  std::size_t rows = 0;
  std::istringstream lines(t);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    int producers = 0;
    std::string mode;
    if (words >> producers >> mode && (mode == "spdk" || mode == "moodycamel" || mode == "lanes")) ++rows;
  }
  EXPECT_EQ(rows, 12u);
}

TEST(MsgbenchReport, SvgHasOneLinePerModeAndAMarkerPerPoint) {
  std::string svg = mb::render_svg(sample_report());
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  auto count = [&](const std::string& needle) {
    std::size_t n = 0;
    for (std::size_t at = 0; (at = svg.find(needle, at)) != std::string::npos; at += needle.size()) ++n;
    return n;
  };
  EXPECT_EQ(count("<polyline"), 3u);
  EXPECT_EQ(count("<circle"), 12u);
  EXPECT_EQ(count("class=\"mode-lanes\""), 1u);
  EXPECT_NE(svg.find("(stalled)"), std::string::npos);
  EXPECT_NE(svg.find("producers (log scale)"), std::string::npos);
}

}  // namespace
