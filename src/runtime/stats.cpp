#include "nvmux/runtime/stats.hpp"

namespace nvmux {

HistogramSummary HistogramSummary::of(const Histogram& histogram) {
  HistogramSummary s;
  s.count = histogram.count();
  s.min = histogram.min();
  s.max = histogram.max();
  s.mean = histogram.mean();
  s.p50 = histogram.percentile(50);
  s.p99 = histogram.percentile(99);
  s.p999 = histogram.percentile(99.9);
  return s;
}

namespace {

nlohmann::json summary_json(const HistogramSummary& s) {
  return {{"count", s.count}, {"min", s.min}, {"max", s.max},   {"mean", s.mean},
          {"p50", s.p50},     {"p99", s.p99}, {"p99_9", s.p999}};
}

}  // namespace

nlohmann::json RuntimeStats::to_json() const {
  nlohmann::json j;
  j["reactors"] = nlohmann::json::array();
  for (const auto& r : reactors) {
    j["reactors"].push_back({{"index", r.index},
                             {"core", r.core},
                             {"dispatcher", r.dispatcher},
                             {"busy_ns", r.busy_ns},
                             {"idle_ns", r.idle_ns},
                             {"iterations", r.iterations},
                             {"sleeps", r.sleeps},
                             {"wakeups", r.wakeups},
                             {"yields", r.yields},
                             {"asleep", r.asleep},
                             {"threads", r.threads}});
  }
  j["threads"] = nlohmann::json::array();
  for (const auto& t : threads) {
    j["threads"].push_back({{"name", t.name},
                            {"serial", t.serial},
                            {"state", t.state},
                            {"reactor", t.reactor},
                            {"bound_core", t.bound_core},
                            {"busy_ns", t.busy_ns},
                            {"idle_ns", t.idle_ns},
                            {"polls", t.polls},
                            {"messages", t.messages},
                            {"forwarded", t.forwarded},
                            {"pollers", t.pollers},
                            {"moves", t.moves}});
  }
  j["lanes"] = nlohmann::json::array();
  for (const auto& l : lanes) {
    j["lanes"].push_back({{"id", l.id},
                          {"sender", l.sender},
                          {"consumer", l.consumer},
                          {"target", l.target},
                          {"depth", l.depth},
                          {"high_water", l.high_water},
                          {"sent", l.sent},
                          {"messages", l.messages},
                          {"full_events", l.full_events},
                          {"sender_sleeps", l.sender_sleeps},
                          {"dropped", l.dropped},
                          {"sender_gone", l.sender_gone},
                          {"batch_size", summary_json(l.batch_size)},
                          {"latency_ns", summary_json(l.latency_ns)}});
  }
  j["lanes_created"] = lanes_created;
  j["lanes_retired"] = lanes_retired;
  j["retired_lane_messages"] = retired_lane_messages;
  j["dropped_messages"] = dropped_messages;
  return j;
}

}  // namespace nvmux
