// The three renderings of a sweep (table, JSON, SVG) and the target checks. See msgbench.hpp.

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "msgbench.hpp"

namespace nvmux::msgbench {
namespace {

const PointResult* find(const SweepReport& report, const std::string& mode, int producers, int consumers) {
  for (const auto& r : report.results) {
    if (r.mode == mode && r.producers == producers && r.consumers == consumers) return &r;
  }
  return nullptr;
}

std::vector<int> consumer_counts(const SweepReport& report) {
  std::vector<int> out;
  for (const auto& r : report.results) {
    if (std::find(out.begin(), out.end(), r.consumers) == out.end()) out.push_back(r.consumers);
  }
  return out;
}

std::vector<int> producer_counts(const SweepReport& report, int consumers) {
  std::vector<int> out;
  for (const auto& r : report.results) {
    if (r.consumers == consumers && std::find(out.begin(), out.end(), r.producers) == out.end())
      out.push_back(r.producers);
  }
  return out;
}

std::vector<std::string> modes_in(const SweepReport& report) {
  std::vector<std::string> out;
  for (const auto& r : report.results) {
    if (std::find(out.begin(), out.end(), r.mode) == out.end()) out.push_back(r.mode);
  }
  return out;
}

std::string fmt_ratio(double r) { return r >= 100 ? fmt::format("{:.0f}x", r) : fmt::format("{:.2f}x", r); }

// Fixed colours so a mode looks the same in every chart.
const char* colour_of(const std::string& mode) {
  static const std::map<std::string, const char*> colours{{"spdk", "#d62728"},  {"spdk-rts", "#ff7f0e"},
                                                          {"mutex", "#7f7f7f"}, {"moodycamel", "#9467bd"},
                                                          {"lanes", "#2ca02c"}, {"lanes-dispatcher", "#17becf"}};
  auto it = colours.find(mode);
  return it == colours.end() ? "#1f77b4" : it->second;
}

// ---- the SVG chart: one panel per consumer count, throughput against producers ----

constexpr double kPanelW = 560, kPanelH = 400;
constexpr double kLeft = 70, kRight = 20, kTop = 40, kBottom = 50;
constexpr double kLegendH = 24;
constexpr std::size_t kLegendPerRow = 3;
constexpr double kFloorMsgs = 1e3;  // plot floor: 0.001 M msgs/s (zero-throughput points sit here)

// The throughput axis every panel shares: powers of ten from 10^lo to 10^hi msgs/s.
struct Decades {
  double lo;
  double hi;
};

Decades throughput_decades(const SweepReport& report) {
  double ymin = 1e300, ymax = 0;
  for (const auto& r : report.results) {
    double v = std::max(r.msgs_per_sec, kFloorMsgs);
    ymin = std::min(ymin, v);
    ymax = std::max(ymax, v);
  }
  if (ymax == 0) ymin = kFloorMsgs, ymax = 1e6;
  double lo = std::floor(std::log10(ymin)), hi = std::ceil(std::log10(ymax));
  if (hi <= lo) hi = lo + 1;
  return {lo, hi};
}

// One panel's plot area in pixels, with producers on a log2 scale across and throughput on a log10
// scale up.
struct Panel {
  double x0, x1, y0, y1;
  double xlo, xhi;  // log2 of the fewest and most producers
  Decades decades;

  double x(double producers) const { return x0 + (std::log2(producers) - xlo) / (xhi - xlo) * (x1 - x0); }
  double y(double msgs_per_sec) const {
    return y1 - (std::log10(std::max(msgs_per_sec, kFloorMsgs)) - decades.lo) / (decades.hi - decades.lo) * (y1 - y0);
  }
};

// Panel `index` (left to right) over the producer counts `ps`, sorted.
Panel panel_at(std::size_t index, const std::vector<int>& ps, Decades decades) {
  Panel panel{};
  panel.x0 = kPanelW * static_cast<double>(index) + kLeft;
  panel.x1 = kPanelW * static_cast<double>(index + 1) - kRight;
  panel.y0 = kTop;
  panel.y1 = kPanelH - kBottom;
  panel.xlo = std::log2(ps.front());
  panel.xhi = std::log2(ps.back());
  if (panel.xhi <= panel.xlo) panel.xhi = panel.xlo + 1;
  panel.decades = decades;
  return panel;
}

// Title, grid lines with their labels, frame and axis titles of one panel.
void draw_panel_axes(std::string& s, const Panel& panel, int c, const std::vector<int>& ps) {
  const double x0 = panel.x0, x1 = panel.x1, y0 = panel.y0, y1 = panel.y1;
  s += fmt::format(
      "<text x=\"{:.1f}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">"
      "{} consumer{}: throughput vs producers</text>\n",
      (x0 + x1) / 2, c, c == 1 ? "" : "s");
  for (double e = panel.decades.lo; e <= panel.decades.hi; e += 1) {
    double y = panel.y(std::pow(10.0, e));
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", x0, y, x1, y);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{:g}</text>\n", x0 - 6, y + 4,
                     std::pow(10.0, e) / 1e6);
  }
  for (int p : ps) {
    double x = panel.x(p);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#eee\"/>\n", x, y0, x, y1);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", x, y1 + 16, p);
  }
  s += fmt::format(
      "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"#333\"/>\n", x0, y0,
      x1 - x0, y1 - y0);
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">producers (log scale)</text>\n",
                   (x0 + x1) / 2, y1 + 36);
  s += fmt::format(
      "<text transform=\"translate({:.1f},{:.1f}) rotate(-90)\" text-anchor=\"middle\">"
      "million msgs/s (log scale)</text>\n",
      x0 - 50, (y0 + y1) / 2);
}

// One mode's line in a panel, with a marker per point (open when the point stalled).
void draw_mode_line(std::string& s, const Panel& panel, const SweepReport& report, const std::string& mode, int c,
                    const std::vector<int>& ps) {
  std::string points;
  std::string markers;
  for (int p : ps) {
    const PointResult* r = find(report, mode, p, c);
    if (r == nullptr) continue;
    double x = panel.x(p), y = panel.y(r->msgs_per_sec);
    points += fmt::format("{:.1f},{:.1f} ", x, y);
    markers += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\" stroke=\"{}\" stroke-width=\"1.5\">"
        "<title>{} P={} C={}: {:.3f} M msgs/s{}</title></circle>\n",
        x, y, r->stalled ? 5 : 3, r->stalled ? "white" : colour_of(mode), colour_of(mode), mode, p, c,
        r->msgs_per_sec / 1e6, r->stalled ? " (stalled)" : "");
  }
  if (points.empty()) return;
  s += fmt::format("<polyline class=\"mode-{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", mode,
                   colour_of(mode), points);
  s += markers;
}

// The legend under the panels, kLegendPerRow modes per row, and the note on markers and parameters.
void draw_legend(std::string& s, const std::vector<std::string>& modes, std::size_t legend_rows,
                 const PointOptions& point) {
  for (std::size_t i = 0; i < modes.size(); ++i) {
    const std::size_t row = i / kLegendPerRow, column = i % kLegendPerRow;
    double x = 20 + 200 * static_cast<double>(column);
    double y = kPanelH + 10 + kLegendH * static_cast<double>(row);
    s += fmt::format(
        "<line x1=\"{:.0f}\" y1=\"{:.0f}\" x2=\"{:.0f}\" y2=\"{:.0f}\" stroke=\"{}\" stroke-width=\"3\"/>"
        "<text x=\"{:.0f}\" y=\"{:.0f}\">{}</text>\n",
        x, y, x + 30, y, colour_of(modes[i]), x + 38, y + 4, modes[i]);
  }
  double note_y = kPanelH + 10 + kLegendH * static_cast<double>(legend_rows) + 8;
  s += fmt::format(
      "<text x=\"20\" y=\"{:.0f}\" fill=\"#555\">open marker: point stalled (cut off at its deadline); "
      "{:.1f} s per point, {} ns work per message</text>\n",
      note_y, point.duration_s, point.work_ns);
}

}  // namespace

std::vector<TargetCheck> check_targets(const SweepReport& report) {
  std::vector<TargetCheck> checks;
  auto throughput_ratio = [&](std::string what, const std::string& a, int pa, const std::string& b, int pb, int c,
                              double target) {
    TargetCheck t;
    t.what = std::move(what);
    t.target = target;
    const PointResult* ra = find(report, a, pa, c);
    const PointResult* rb = find(report, b, pb, c);
    if (ra == nullptr || rb == nullptr) {
      t.detail = "not measured in this run";
    } else {
      t.evaluated = true;
      t.ratio = rb->msgs_per_sec > 0 ? ra->msgs_per_sec / rb->msgs_per_sec : INFINITY;
      t.met = t.ratio >= target;
      t.detail = fmt::format("{:.3f} / {:.3f} M msgs/s", ra->msgs_per_sec / 1e6, rb->msgs_per_sec / 1e6);
      if (ra->stalled) t.detail += fmt::format(" ({} stalled)", a);
      if (rb->stalled && rb != ra) t.detail += fmt::format(" ({} stalled)", b);
    }
    checks.push_back(std::move(t));
  };
  for (int c : consumer_counts(report)) {
    std::string cs = fmt::format("{} consumer{}", c, c == 1 ? "" : "s");
    throughput_ratio(fmt::format("lanes / spdk throughput, 2 producers, {}", cs), "lanes", 2, "spdk", 2, c, 20);
    throughput_ratio(fmt::format("lanes 64 producers / lanes 1 producer, {}", cs), "lanes", 64, "lanes", 1, c, 0.5);
    throughput_ratio(fmt::format("lanes / moodycamel throughput, 8 producers, {}", cs), "lanes", 8, "moodycamel", 8, c,
                     2);
    // p99: lanes no worse than spdk wherever spdk completed (not stalled).
    TargetCheck t;
    t.what = fmt::format("lanes p99 / spdk p99, worst point where spdk completes, {}", cs);
    t.target = 1.0;
    int points = 0;
    double worst = 0;
    int worst_p = 0;
    for (int p : producer_counts(report, c)) {
      const PointResult* l = find(report, "lanes", p, c);
      const PointResult* s = find(report, "spdk", p, c);
      if (l == nullptr || s == nullptr || s->stalled || s->p99_ns == 0) continue;
      ++points;
      double ratio = static_cast<double>(l->p99_ns) / static_cast<double>(s->p99_ns);
      if (ratio > worst || points == 1) {
        worst = ratio;
        worst_p = p;
      }
    }
    if (points > 0) {
      t.evaluated = true;
      t.ratio = worst;
      t.met = worst <= 1.0;
      t.detail = fmt::format("{} point{} compared; worst at {} producers", points, points == 1 ? "" : "s", worst_p);
    } else {
      t.detail = "no point where both ran and spdk completed";
    }
    checks.push_back(std::move(t));
  }
  return checks;
}

std::string format_table(const SweepReport& report) {
  std::string out;
  const auto& o = report.options;
  bool have_spdk = std::find(o.modes.begin(), o.modes.end(), "spdk") != o.modes.end();
  if (report.interrupted_by != 0) {
    out += fmt::format(
        "\nnvmux-msgbench: INTERRUPTED by signal {} after {} of {} points: the results cover the points that ran; "
        "a point cut short says interrupted\n",
        report.interrupted_by, report.results.size(), o.modes.size() * o.producers.size() * o.consumers.size());
  }
  for (int c : consumer_counts(report)) {
    std::string lanes = o.point.lane_capacity != 0 ? fmt::format(" | {}-slot lanes", o.point.lane_capacity) : "";
    out +=
        fmt::format("\n== {} consumer{} | {:.1f} s per point | {} ns work per message{} | {} on {} cores\n", c,
                    c == 1 ? "" : "s", o.point.duration_s, o.point.work_ns, lanes,
                    report.machine.value("cpu", std::string("unknown CPU")), report.machine.value("online_cores", 0));
    out += fmt::format("{:>9}  {:<17}{:>10}{:>12}{:>12}{:>12}{:>13}{:>10}  {}\n", "producers", "mode", "M msgs/s",
                       "p50 ns", "p99 ns", "p99.9 ns", "cpu ms/M", have_spdk ? "x spdk" : "", "status");
    for (int p : producer_counts(report, c)) {
      const PointResult* spdk = find(report, "spdk", p, c);
      for (const auto& mode : o.modes) {
        const PointResult* r = find(report, mode, p, c);
        if (r == nullptr) continue;
        std::string vs;
        if (spdk != nullptr) vs = spdk->msgs_per_sec > 0 ? fmt_ratio(r->msgs_per_sec / spdk->msgs_per_sec) : "inf";
        std::string status = r->stalled       ? "STALLED: " + r->stall_reason
                             : r->interrupted ? fmt::format("interrupted: a {:.2f} s window", r->seconds)
                                              : "ok";
        if (!r->stalled && (r->lost != 0 || r->out_of_order != 0 || r->unbalanced_pairs != 0)) {
          status = fmt::format("CHECK FAILED: lost {} out-of-order {} unbalanced pairs {}", r->lost, r->out_of_order,
                               r->unbalanced_pairs);
        }
        out += fmt::format("{:>9}  {:<17}{:>10.3f}{:>12}{:>12}{:>12}{:>13.1f}{:>10}  {}\n", p, mode,
                           r->msgs_per_sec / 1e6, r->p50_ns, r->p99_ns, r->p999_ns, r->cpu_ms_per_million, vs, status);
      }
    }
  }
  auto checks = check_targets(report);
  out += "\nTargets (ratios from this run)\n";
  for (const auto& t : checks) {
    std::string verdict = !t.evaluated ? "n/a" : (t.met ? "met" : "NOT MET");
    std::string need = t.what.rfind("lanes p99", 0) == 0 ? "<= 1.00" : fmt::format(">= {:.2f}", t.target);
    std::string ratio = t.evaluated ? fmt::format("{:.2f}", t.ratio) : "-";
    out += fmt::format("  {:<72} {:>8} {:>8}  {:<7} {}\n", t.what, ratio, need, verdict, t.detail);
  }
  return out;
}

nlohmann::json to_json(const SweepReport& report) {
  const auto& o = report.options;
  nlohmann::json j;
  j["machine"] = report.machine;
  j["interrupted"] = report.interrupted_by != 0;
  j["interrupted_by_signal"] = report.interrupted_by;
  j["abandoned"] = report.abandoned;
  j["params"] = {{"modes", o.modes},
                 {"producers", o.producers},
                 {"consumers", o.consumers},
                 {"duration_s", o.point.duration_s},
                 {"work_ns", o.point.work_ns},
                 {"warmup_s", o.point.warmup_s},
                 {"stall_gap_s", o.point.stall_gap_s},
                 {"stall_after_s", o.point.stall_after_s},
                 {"drain_timeout_s", o.point.drain_timeout_s},
                 {"lane_capacity", o.point.lane_capacity}};
  j["results"] = nlohmann::json::array();
  for (const auto& r : report.results) {
    nlohmann::json counters = nlohmann::json::object();
    for (const auto& [k, v] : r.counters) counters[k] = v;
    j["results"].push_back({{"mode", r.mode},
                            {"producers", r.producers},
                            {"consumers", r.consumers},
                            {"msgs_per_sec", r.msgs_per_sec},
                            {"latency_ns", {{"p50", r.p50_ns}, {"p99", r.p99_ns}, {"p999", r.p999_ns}}},
                            {"cpu_ms_per_million", r.cpu_ms_per_million},
                            {"stalled", r.stalled},
                            {"stall_reason", r.stall_reason},
                            {"interrupted", r.interrupted},
                            {"abandoned", r.abandoned},
                            {"window_s", r.seconds},
                            {"window_msgs", r.window_msgs},
                            {"sent", r.sent},
                            {"executed", r.executed},
                            {"lost", r.lost},
                            {"out_of_order", r.out_of_order},
                            {"unbalanced_pairs", r.unbalanced_pairs},
                            {"counters", counters}});
  }
  j["targets"] = nlohmann::json::array();
  for (const auto& t : check_targets(report)) {
    j["targets"].push_back({{"what", t.what},
                            {"evaluated", t.evaluated},
                            {"ratio", t.evaluated ? nlohmann::json(t.ratio) : nlohmann::json(nullptr)},
                            {"target", t.target},
                            {"met", t.met},
                            {"detail", t.detail}});
  }
  return j;
}

std::string render_svg(const SweepReport& report) {
  auto cs = consumer_counts(report);
  auto modes = modes_in(report);
  const std::size_t legend_rows = (modes.size() + kLegendPerRow - 1) / kLegendPerRow;  // rounded up
  double total_w = kPanelW * static_cast<double>(std::max<std::size_t>(1, cs.size()));
  double total_h = kPanelH + kLegendH * static_cast<double>(legend_rows) + 30;
  const Decades decades = throughput_decades(report);

  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" viewBox=\"0 0 {:.0f} {:.0f}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      total_w, total_h, total_w, total_h);
  for (std::size_t pi = 0; pi < cs.size(); ++pi) {
    int c = cs[pi];
    auto ps = producer_counts(report, c);
    std::sort(ps.begin(), ps.end());
    const Panel panel = panel_at(pi, ps, decades);
    draw_panel_axes(s, panel, c, ps);
    for (const auto& mode : modes) draw_mode_line(s, panel, report, mode, c, ps);
  }
  draw_legend(s, modes, legend_rows, report.options.point);
  s += "</svg>\n";
  return s;
}

}  // namespace nvmux::msgbench
