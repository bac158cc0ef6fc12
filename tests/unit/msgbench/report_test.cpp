// The renderings of a sweep (table, JSON, SVG) and the target checks, on a hand-made report.

#include <gtest/gtest.h>

#include <set>
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
    rep.results.push_back(point("moodycamel", p, 1, 20e6, 500'000));
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
  EXPECT_FALSE(vs_mc->at_most);
  EXPECT_EQ(vs_mc->reps_compared, 1);
  EXPECT_EQ(vs_mc->reps_agreeing, 1);

  // Against moodycamel at every producer count: throughput, CPU per message and p99.
  for (int p : {1, 2, 8, 64}) {
    for (const char* what : {"throughput", "CPU per message", "p99"}) {
      EXPECT_NE(find_check(checks, fmt::format("lanes / moodycamel {}, {} producers, 1 consumer", what, p)), nullptr)
          << what << " " << p;
    }
  }
  const auto* cpu = find_check(checks, "lanes / moodycamel CPU per message, 64 producers, 1 consumer");
  EXPECT_DOUBLE_EQ(cpu->ratio, 1.0);  // 100 / 100 ms/M: equal is allowed
  EXPECT_TRUE(cpu->at_most);
  EXPECT_TRUE(cpu->met);
  const auto* mc_p99 = find_check(checks, "lanes / moodycamel p99, 2 producers, 1 consumer");
  EXPECT_DOUBLE_EQ(mc_p99->ratio, 0.02);  // 10 us / 500 us
  EXPECT_DOUBLE_EQ(mc_p99->target, 0.1);
  EXPECT_TRUE(mc_p99->met);

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
    if (r.mode == "lanes" && r.producers == 8) r.msgs_per_sec = 15e6;       // 0.75x moodycamel
    if (r.mode == "lanes" && r.producers == 1) r.cpu_ms_per_million = 120;  // above moodycamel's 100
    if (r.mode == "lanes" && r.producers == 2) r.p99_ns = 40'000;           // worse than spdk
  }
  rep.results.erase(std::remove_if(rep.results.begin(), rep.results.end(),
                                   [](const mb::PointResult& r) { return r.mode == "lanes" && r.producers == 64; }),
                    rep.results.end());
  auto checks = mb::check_targets(rep);
  EXPECT_FALSE(find_check(checks, "lanes / moodycamel throughput, 8 producers")->met);
  EXPECT_TRUE(find_check(checks, "lanes / moodycamel throughput, 2 producers")->met);
  EXPECT_FALSE(find_check(checks, "lanes / moodycamel CPU per message, 1 producers")->met);
  EXPECT_FALSE(find_check(checks, "lanes / moodycamel throughput, 64 producers")->evaluated);
  EXPECT_EQ(find_check(checks, "lanes-dispatcher"), nullptr) << "its target is stated for 2 consumers";
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
  EXPECT_EQ(first["rep"], 0);
  EXPECT_EQ(j["results"][6]["stalled"], true);  // spdk at 8 producers
  EXPECT_FALSE(j["targets"].empty());
  for (const auto& t : j["targets"]) {
    for (const char* k : {"what", "evaluated", "ratio", "target", "at_most", "met", "reps_compared", "reps_agreeing"})
      EXPECT_TRUE(t.contains(k)) << k;
  }
  ASSERT_EQ(j["summary"].size(), 12u);
  EXPECT_DOUBLE_EQ(j["summary"][0]["msgs_per_sec"]["median"].get<double>(), 4e6);
  EXPECT_EQ(j["summary"][0]["reps"], 1);
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
  // Three charts (throughput, p99, CPU per message), each a line per mode and a marker per point.
  EXPECT_EQ(count("<polyline"), 3u * 3u);
  EXPECT_EQ(count("<circle"), 3u * 12u);
  EXPECT_EQ(count("class=\"mode-lanes "), 3u);
  for (const char* metric : {"metric-throughput", "metric-p99", "metric-cpu"}) EXPECT_EQ(count(metric), 3u) << metric;
  for (const char* title : {"1 consumer: throughput vs producers", "1 consumer: p99 latency vs producers",
                            "1 consumer: CPU per message vs producers"})
    EXPECT_EQ(count(title), 1u) << title;
  EXPECT_EQ(count("class=\"spread\""), 0u) << "one repetition: no whiskers";
  EXPECT_NE(svg.find("(stalled)"), std::string::npos);
  EXPECT_NE(svg.find("producers (log scale)"), std::string::npos);
}

TEST(MsgbenchSummary, SpreadIsTheMedianAndTheExtremes) {
  mb::Spread odd = mb::spread_of({3, 1, 2});
  EXPECT_DOUBLE_EQ(odd.median, 2);
  EXPECT_DOUBLE_EQ(odd.min, 1);
  EXPECT_DOUBLE_EQ(odd.max, 3);
  mb::Spread even = mb::spread_of({10, 1, 3, 2});
  EXPECT_DOUBLE_EQ(even.median, 2.5);
  EXPECT_DOUBLE_EQ(even.max, 10);
  mb::Spread none = mb::spread_of({});
  EXPECT_DOUBLE_EQ(none.median, 0);
}

// Five repetitions of lanes and moodycamel at one point: lanes ahead in three, behind in two.
mb::SweepReport five_reps() {
  mb::SweepReport rep;
  rep.machine = {{"cpu", "Test CPU"}, {"online_cores", 2}};
  rep.options.modes = {"moodycamel", "lanes"};
  rep.options.producers = {4};
  rep.options.consumers = {1};
  rep.options.reps = 5;
  const double lanes_mps[] = {25e6, 15e6, 26e6, 18e6, 24e6};
  for (int r = 0; r < 5; ++r) {
    mb::PointResult mc = point("moodycamel", 4, 1, 20e6, 1'000'000);
    mb::PointResult l = point("lanes", 4, 1, lanes_mps[r], 10'000 + 1000 * static_cast<std::uint64_t>(r));
    mc.rep = l.rep = r;
    if (r == 3) {
      l.stalled = true;
      l.stall_reason = "collapsed";
    }
    rep.results.push_back(r % 2 == 0 ? mc : l);  // the order alternates, as in a sweep
    rep.results.push_back(r % 2 == 0 ? l : mc);
  }
  return rep;
}

TEST(MsgbenchSummary, RepetitionsAreSummarisedPerPoint) {
  auto summaries = mb::summarize(five_reps());
  ASSERT_EQ(summaries.size(), 2u);
  const mb::PointSummary& lanes = summaries[0].mode == "lanes" ? summaries[0] : summaries[1];
  EXPECT_EQ(lanes.reps, 5);
  EXPECT_EQ(lanes.stalled_reps, 1);
  EXPECT_FALSE(lanes.stalled()) << "one of five is not a majority";
  EXPECT_EQ(lanes.stall_reason, "collapsed");
  EXPECT_DOUBLE_EQ(lanes.msgs_per_sec.median, 24e6);
  EXPECT_DOUBLE_EQ(lanes.msgs_per_sec.min, 15e6);
  EXPECT_DOUBLE_EQ(lanes.msgs_per_sec.max, 26e6);
  EXPECT_DOUBLE_EQ(lanes.p99_ns.median, 12'000);
}

TEST(MsgbenchSummary, TargetsUseTheMediansAndCountTheRepetitionsThatAgree) {
  auto checks = mb::check_targets(five_reps());
  const auto* t = find_check(checks, "lanes / moodycamel throughput, 4 producers, 1 consumer");
  ASSERT_NE(t, nullptr);
  EXPECT_DOUBLE_EQ(t->ratio, 24e6 / 20e6);
  EXPECT_TRUE(t->met);
  EXPECT_EQ(t->reps_compared, 5);
  EXPECT_EQ(t->reps_agreeing, 3);  // 15 and 18 M are behind moodycamel's 20 on their own
  const auto* p99 = find_check(checks, "lanes / moodycamel p99, 4 producers, 1 consumer");
  EXPECT_EQ(p99->reps_agreeing, 5);
}

TEST(MsgbenchSummary, TheTableShowsMediansSpreadsAndAgreement) {
  std::string t = mb::format_table(five_reps());
  EXPECT_NE(t.find("medians of 5 repetitions"), std::string::npos) << t;
  EXPECT_NE(t.find("[15-26]"), std::string::npos) << t;  // lanes' throughput spread, M msgs/s
  EXPECT_NE(t.find("ok (stalled in 1/5: collapsed)"), std::string::npos) << t;
  EXPECT_NE(t.find(" 3/5 "), std::string::npos) << t;  // agreement of the throughput target
  EXPECT_NE(t.find("evaluated targets met"), std::string::npos) << t;
}

TEST(MsgbenchSummary, TheJsonCarriesEveryRepetitionAndTheSvgTheirSpread) {
  nlohmann::json j = mb::to_json(five_reps());
  EXPECT_EQ(j["params"]["reps"], 5);
  ASSERT_EQ(j["results"].size(), 10u);
  std::set<int> reps;
  for (const auto& r : j["results"]) reps.insert(r["rep"].get<int>());
  EXPECT_EQ(reps, (std::set<int>{0, 1, 2, 3, 4}));
  std::string svg = mb::render_svg(five_reps());
  EXPECT_NE(svg.find("class=\"spread\""), std::string::npos) << "lanes' repetitions differ: a whisker";
  EXPECT_NE(svg.find("median of 5"), std::string::npos);
}

}  // namespace
