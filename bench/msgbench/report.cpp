// The three renderings of a sweep (table, JSON, SVG), the per-point summaries over repetitions and
// the target checks. See msgbench.hpp.

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>

#include "msgbench.hpp"

namespace nvmux::msgbench {
namespace {

const PointResult* find_rep(const SweepReport& report, const std::string& mode, int producers, int consumers, int rep) {
  for (const auto& r : report.results) {
    if (r.mode == mode && r.producers == producers && r.consumers == consumers && r.rep == rep) return &r;
  }
  return nullptr;
}

const PointSummary* find(const std::vector<PointSummary>& summaries, const std::string& mode, int producers,
                         int consumers) {
  for (const auto& s : summaries) {
    if (s.mode == mode && s.producers == producers && s.consumers == consumers) return &s;
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
  // Catalogue order of --modes, not the rotated order the repetitions ran in.
  std::vector<std::string> out;
  for (const auto& m : report.options.modes) {
    if (std::any_of(report.results.begin(), report.results.end(), [&](const PointResult& r) { return r.mode == m; }))
      out.push_back(m);
  }
  for (const auto& r : report.results) {  // a hand-made report may hold modes it did not list
    if (std::find(out.begin(), out.end(), r.mode) == out.end()) out.push_back(r.mode);
  }
  return out;
}

int reps_in(const SweepReport& report) {
  int reps = 0;
  for (const auto& r : report.results) reps = std::max(reps, r.rep + 1);
  return reps;
}

std::string fmt_ratio(double r) { return r >= 100 ? fmt::format("{:.0f}x", r) : fmt::format("{:.2f}x", r); }

// Three significant digits with an SI suffix: 0.536, 14.2, 45.6k, 2.18M.
std::string compact(double v) {
  if (!std::isfinite(v)) return "inf";
  const double a = std::fabs(v);
  if (a >= 1e9) return fmt::format("{:.3g}G", v / 1e9);
  if (a >= 1e6) return fmt::format("{:.3g}M", v / 1e6);
  if (a >= 1e3) return fmt::format("{:.3g}k", v / 1e3);
  return fmt::format("{:.3g}", v);
}

std::string range_of(const Spread& s, double scale) { return compact(s.min / scale) + "-" + compact(s.max / scale); }

// numerator / denominator, with x / 0 = inf (and 0 / 0 = 1: nothing against nothing).
double ratio_of(double numerator, double denominator) {
  if (denominator > 0) return numerator / denominator;
  return numerator > 0 ? INFINITY : 1.0;
}

// Fixed colours so a mode looks the same in every chart.
const char* colour_of(const std::string& mode) {
  static const std::map<std::string, const char*> colours{{"spdk", "#d62728"},  {"spdk-rts", "#ff7f0e"},
                                                          {"mutex", "#7f7f7f"}, {"moodycamel", "#9467bd"},
                                                          {"lanes", "#2ca02c"}, {"lanes-dispatcher", "#17becf"}};
  auto it = colours.find(mode);
  return it == colours.end() ? "#1f77b4" : it->second;
}

// ---- the metrics the targets and the charts compare ----

struct Metric {
  const char* name;                      // in target names and CSS classes
  double (*of_rep)(const PointResult&);  // one repetition's value
  const Spread PointSummary::*spread;    // the summary's median and spread
  const char* unit;                      // for target details
  double detail_scale;                   // the detail shows value / scale
};

const Metric kThroughput{"throughput", [](const PointResult& r) { return r.msgs_per_sec; }, &PointSummary::msgs_per_sec,
                         "M msgs/s", 1e6};
const Metric kCpu{"CPU per message", [](const PointResult& r) { return r.cpu_ms_per_million; },
                  &PointSummary::cpu_ms_per_million, "ms/M", 1};
const Metric kP99{"p99", [](const PointResult& r) { return static_cast<double>(r.p99_ns); }, &PointSummary::p99_ns,
                  "ns", 1};

// ---- target checks ----

bool verdict(double ratio, double target, bool at_most) { return at_most ? ratio <= target : ratio >= target; }

// `a` at pa producers against `b` at pb producers, both at c consumers: on the medians, then
// repetition by repetition (the two sides of one repetition ran side by side).
TargetCheck ratio_check(const SweepReport& report, const std::vector<PointSummary>& summaries, std::string what,
                        const Metric& metric, const std::string& a, int pa, const std::string& b, int pb, int c,
                        double target, bool at_most) {
  TargetCheck t;
  t.what = std::move(what);
  t.target = target;
  t.at_most = at_most;
  const PointSummary* sa = find(summaries, a, pa, c);
  const PointSummary* sb = find(summaries, b, pb, c);
  if (sa == nullptr || sb == nullptr) {
    t.detail = "not measured in this run";
    return t;
  }
  const double va = (sa->*metric.spread).median, vb = (sb->*metric.spread).median;
  t.evaluated = true;
  t.ratio = ratio_of(va, vb);
  t.met = verdict(t.ratio, target, at_most);
  for (int rep = 0; rep < reps_in(report); ++rep) {
    const PointResult* ra = find_rep(report, a, pa, c, rep);
    const PointResult* rb = find_rep(report, b, pb, c, rep);
    if (ra == nullptr || rb == nullptr) continue;
    ++t.reps_compared;
    if (verdict(ratio_of(metric.of_rep(*ra), metric.of_rep(*rb)), target, at_most) == t.met) ++t.reps_agreeing;
  }
  t.detail =
      fmt::format("{} / {} {}", compact(va / metric.detail_scale), compact(vb / metric.detail_scale), metric.unit);
  if (sa->stalled()) t.detail += fmt::format(" ({} stalled)", a);
  if (sb->stalled() && sb != sa) t.detail += fmt::format(" ({} stalled)", b);
  return t;
}

// lanes p99 against spdk's wherever spdk completed: the worst point, on the medians (points where
// most of spdk's repetitions completed) and repetition by repetition (where that one completed).
TargetCheck p99_vs_spdk_check(const SweepReport& report, const std::vector<PointSummary>& summaries, int c) {
  TargetCheck t;
  t.what = fmt::format("lanes p99 / spdk p99, worst point where spdk completes, {} consumer{}", c, c == 1 ? "" : "s");
  t.target = 1.0;
  t.at_most = true;
  int points = 0;
  int worst_p = 0;
  for (int p : producer_counts(report, c)) {
    const PointSummary* l = find(summaries, "lanes", p, c);
    const PointSummary* s = find(summaries, "spdk", p, c);
    if (l == nullptr || s == nullptr || s->stalled() || s->p99_ns.median <= 0) continue;
    double ratio = l->p99_ns.median / s->p99_ns.median;
    if (points++ == 0 || ratio > t.ratio) {
      t.ratio = ratio;
      worst_p = p;
    }
  }
  if (points == 0) {
    t.detail = "no point where both ran and spdk completed";
    return t;
  }
  t.evaluated = true;
  t.met = t.ratio <= t.target;
  t.detail = fmt::format("{} point{} compared; worst at {} producers", points, points == 1 ? "" : "s", worst_p);
  for (int rep = 0; rep < reps_in(report); ++rep) {
    double worst = -1;
    for (int p : producer_counts(report, c)) {
      const PointResult* l = find_rep(report, "lanes", p, c, rep);
      const PointResult* s = find_rep(report, "spdk", p, c, rep);
      if (l == nullptr || s == nullptr || s->stalled || s->p99_ns == 0) continue;
      worst = std::max(worst, static_cast<double>(l->p99_ns) / static_cast<double>(s->p99_ns));
    }
    if (worst < 0) continue;
    ++t.reps_compared;
    if ((worst <= t.target) == t.met) ++t.reps_agreeing;
  }
  return t;
}

// ---- the SVG: a row of panels per metric, a column per consumer count ----

constexpr double kPanelW = 560, kPanelH = 400;
constexpr double kLeft = 70, kRight = 20, kTop = 40, kBottom = 50;
constexpr double kLegendH = 24;
constexpr std::size_t kLegendPerRow = 3;

struct ChartMetric {
  const char* key;    // CSS class suffix
  const char* title;  // panel title after "N consumers: "
  const char* axis;   // y-axis title
  const char* unit;   // in tooltips, after value / label_scale
  double floor;       // plot floor (zero and tiny values sit here), in the summary's unit
  double label_scale;
  const Spread PointSummary::*spread;
};

const ChartMetric kCharts[] = {
    {"throughput", "throughput vs producers", "million msgs/s (log scale)", "M msgs/s", 1e3, 1e6,
     &PointSummary::msgs_per_sec},
    {"p99", "p99 latency vs producers", "p99 enqueue-to-execute, us (log scale)", "us p99", 10, 1e3,
     &PointSummary::p99_ns},
    {"cpu", "CPU per message vs producers", "CPU ms per million msgs (log scale)", "ms/M", 1, 1,
     &PointSummary::cpu_ms_per_million},
};

// A chart's value axis: powers of ten from 10^lo to 10^hi, shared by its panels.
struct Decades {
  double lo;
  double hi;
};

Decades decades_of(const std::vector<PointSummary>& summaries, const ChartMetric& m) {
  double ymin = 1e300, ymax = 0;
  for (const auto& s : summaries) {
    const Spread& v = s.*m.spread;
    ymin = std::min(ymin, std::max(v.min, m.floor));
    ymax = std::max(ymax, std::max(v.max, m.floor));
  }
  if (ymax == 0) ymin = m.floor, ymax = m.floor * 1e3;
  double lo = std::floor(std::log10(ymin)), hi = std::ceil(std::log10(ymax));
  if (hi <= lo) hi = lo + 1;
  return {lo, hi};
}

// One panel's plot area in pixels, with producers on a log2 scale across and the metric on a
// log10 scale up.
struct Panel {
  double x0, x1, y0, y1;
  double xlo, xhi;  // log2 of the fewest and most producers
  Decades decades;
  double floor;

  double x(double producers) const { return x0 + (std::log2(producers) - xlo) / (xhi - xlo) * (x1 - x0); }
  double y(double value) const {
    return y1 - (std::log10(std::max(value, floor)) - decades.lo) / (decades.hi - decades.lo) * (y1 - y0);
  }
};

// The panel in column `column`, row `row`, over the producer counts `ps`, sorted.
Panel panel_at(std::size_t column, std::size_t row, const std::vector<int>& ps, Decades decades, double floor) {
  Panel panel{};
  const double top = kPanelH * static_cast<double>(row);
  panel.x0 = kPanelW * static_cast<double>(column) + kLeft;
  panel.x1 = kPanelW * static_cast<double>(column + 1) - kRight;
  panel.y0 = top + kTop;
  panel.y1 = top + kPanelH - kBottom;
  panel.xlo = std::log2(ps.front());
  panel.xhi = std::log2(ps.back());
  if (panel.xhi <= panel.xlo) panel.xhi = panel.xlo + 1;
  panel.decades = decades;
  panel.floor = floor;
  return panel;
}

// Title, grid lines with their labels, frame and axis titles of one panel.
void draw_panel_axes(std::string& s, const Panel& panel, const ChartMetric& m, int c, const std::vector<int>& ps) {
  const double x0 = panel.x0, x1 = panel.x1, y0 = panel.y0, y1 = panel.y1;
  s += fmt::format(
      "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">"
      "{} consumer{}: {}</text>\n",
      (x0 + x1) / 2, y0 - 18, c, c == 1 ? "" : "s", m.title);
  for (double e = panel.decades.lo; e <= panel.decades.hi; e += 1) {
    double y = panel.y(std::pow(10.0, e));
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", x0, y, x1, y);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{:g}</text>\n", x0 - 6, y + 4,
                     std::pow(10.0, e) / m.label_scale);
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
  s += fmt::format("<text transform=\"translate({:.1f},{:.1f}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                   x0 - 50, (y0 + y1) / 2, m.axis);
}

// One mode's line through the medians of a panel, a marker per point (open when most of its
// repetitions stalled) and a whisker from the lowest to the highest repetition.
void draw_mode_line(std::string& s, const Panel& panel, const std::vector<PointSummary>& summaries,
                    const ChartMetric& m, const std::string& mode, int c, const std::vector<int>& ps) {
  std::string points;
  std::string marks;
  for (int p : ps) {
    const PointSummary* r = find(summaries, mode, p, c);
    if (r == nullptr) continue;
    const Spread& v = r->*m.spread;
    double x = panel.x(p), y = panel.y(v.median);
    points += fmt::format("{:.1f},{:.1f} ", x, y);
    if (v.max > v.min) {
      marks += fmt::format(
          "<line class=\"spread\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" "
          "stroke-width=\"1\" opacity=\"0.6\"/>\n",
          x, panel.y(v.min), x, panel.y(v.max), colour_of(mode));
    }
    marks += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\" stroke=\"{}\" stroke-width=\"1.5\">"
        "<title>{} P={} C={}: {} {} (median of {}; {}){}</title></circle>\n",
        x, y, r->stalled() ? 5 : 3, r->stalled() ? "white" : colour_of(mode), colour_of(mode), mode, p, c,
        compact(v.median / m.label_scale), m.unit, r->reps, range_of(v, m.label_scale),
        r->stalled() ? " (stalled)" : "");
  }
  if (points.empty()) return;
  s += fmt::format(
      "<polyline class=\"mode-{} metric-{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", mode,
      m.key, colour_of(mode), points);
  s += marks;
}

// The legend under the panels, kLegendPerRow modes per row, and the note on markers and parameters.
void draw_legend(std::string& s, double top, const std::vector<std::string>& modes, std::size_t legend_rows,
                 const SweepOptions& options) {
  for (std::size_t i = 0; i < modes.size(); ++i) {
    const std::size_t row = i / kLegendPerRow, column = i % kLegendPerRow;
    double x = 20 + 200 * static_cast<double>(column);
    double y = top + 10 + kLegendH * static_cast<double>(row);
    s += fmt::format(
        "<line x1=\"{:.0f}\" y1=\"{:.0f}\" x2=\"{:.0f}\" y2=\"{:.0f}\" stroke=\"{}\" stroke-width=\"3\"/>"
        "<text x=\"{:.0f}\" y=\"{:.0f}\">{}</text>\n",
        x, y, x + 30, y, colour_of(modes[i]), x + 38, y + 4, modes[i]);
  }
  double note_y = top + 10 + kLegendH * static_cast<double>(legend_rows) + 8;
  s += fmt::format(
      "<text x=\"20\" y=\"{:.0f}\" fill=\"#555\">lines through the medians of {} repetition{}, whiskers from the "
      "lowest to the highest; open marker: most repetitions stalled; {:.1f} s per point, {} ns work per "
      "message</text>\n",
      note_y, options.reps, options.reps == 1 ? "" : "s", options.point.duration_s, options.point.work_ns);
}

}  // namespace

Spread spread_of(std::vector<double> values) {
  Spread s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  s.median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  s.min = values.front();
  s.max = values.back();
  return s;
}

std::vector<PointSummary> summarize(const SweepReport& report) {
  std::vector<PointSummary> out;
  std::vector<std::vector<const PointResult*>> reps;  // parallel to out
  for (const auto& r : report.results) {
    auto it = std::find_if(out.begin(), out.end(), [&](const PointSummary& s) {
      return s.mode == r.mode && s.producers == r.producers && s.consumers == r.consumers;
    });
    if (it == out.end()) {
      out.push_back({});
      out.back().mode = r.mode;
      out.back().producers = r.producers;
      out.back().consumers = r.consumers;
      reps.emplace_back();
      it = out.end() - 1;
    }
    reps[static_cast<std::size_t>(it - out.begin())].push_back(&r);
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    PointSummary& s = out[i];
    std::vector<double> mps, p50, p99, p999, cpu;
    for (const PointResult* r : reps[i]) {
      ++s.reps;
      if (r->stalled) {
        if (s.stalled_reps++ == 0) s.stall_reason = r->stall_reason;
      } else {  // a stalled repetition's counts say what it could not finish, not a failed check
        s.lost += r->lost;
        s.out_of_order += r->out_of_order;
        s.unbalanced_pairs += r->unbalanced_pairs;
      }
      if (r->interrupted && !s.interrupted) s.interrupted_window_s = r->seconds;
      s.interrupted = s.interrupted || r->interrupted;
      mps.push_back(r->msgs_per_sec);
      p50.push_back(static_cast<double>(r->p50_ns));
      p99.push_back(static_cast<double>(r->p99_ns));
      p999.push_back(static_cast<double>(r->p999_ns));
      cpu.push_back(r->cpu_ms_per_million);
    }
    s.msgs_per_sec = spread_of(std::move(mps));
    s.p50_ns = spread_of(std::move(p50));
    s.p99_ns = spread_of(std::move(p99));
    s.p999_ns = spread_of(std::move(p999));
    s.cpu_ms_per_million = spread_of(std::move(cpu));
  }
  return out;
}

std::vector<TargetCheck> check_targets(const SweepReport& report) {
  const std::vector<PointSummary> summaries = summarize(report);
  std::vector<TargetCheck> checks;
  for (int c : consumer_counts(report)) {
    const std::string cs = fmt::format("{} consumer{}", c, c == 1 ? "" : "s");
    // Against the best peer, at every producer count: throughput, CPU per message, p99.
    for (int p : producer_counts(report, c)) {
      checks.push_back(ratio_check(report, summaries,
                                   fmt::format("lanes / moodycamel throughput, {} producers, {}", p, cs), kThroughput,
                                   "lanes", p, "moodycamel", p, c, 1.0, false));
      checks.push_back(ratio_check(report, summaries,
                                   fmt::format("lanes / moodycamel CPU per message, {} producers, {}", p, cs), kCpu,
                                   "lanes", p, "moodycamel", p, c, 1.0, true));
      checks.push_back(ratio_check(report, summaries, fmt::format("lanes / moodycamel p99, {} producers, {}", p, cs),
                                   kP99, "lanes", p, "moodycamel", p, c, 0.1, true));
    }
    checks.push_back(ratio_check(report, summaries, fmt::format("lanes / spdk throughput, 2 producers, {}", cs),
                                 kThroughput, "lanes", 2, "spdk", 2, c, 20, false));
    checks.push_back(ratio_check(report, summaries, fmt::format("lanes 64 producers / lanes 1 producer, {}", cs),
                                 kThroughput, "lanes", 64, "lanes", 1, c, 0.5, false));
    checks.push_back(p99_vs_spdk_check(report, summaries, c));
    if (c >= 2) {  // the dispatcher's target is stated with consumers on both cores
      checks.push_back(ratio_check(report, summaries,
                                   fmt::format("lanes-dispatcher / lanes throughput, 64 producers, {}", cs),
                                   kThroughput, "lanes-dispatcher", 64, "lanes", 64, c, 0.5, false));
    }
  }
  return checks;
}

std::string format_table(const SweepReport& report) {
  std::string out;
  const auto& o = report.options;
  const std::vector<PointSummary> summaries = summarize(report);
  const int reps = reps_in(report);
  const bool spreads = reps > 1;
  bool have_spdk = std::find(o.modes.begin(), o.modes.end(), "spdk") != o.modes.end();
  if (report.interrupted_by != 0) {
    out += fmt::format(
        "\nnvmux-msgbench: INTERRUPTED by signal {} after {} of {} points: the results cover the points that ran; "
        "a point cut short says interrupted\n",
        report.interrupted_by, report.results.size(),
        o.modes.size() * o.producers.size() * o.consumers.size() * static_cast<std::size_t>(o.reps));
  }
  for (int c : consumer_counts(report)) {
    std::string lanes = o.point.lane_capacity != 0 ? fmt::format(" | {}-slot lanes", o.point.lane_capacity) : "";
    std::string medians = spreads ? fmt::format(" | medians of {} repetitions [min-max]", reps) : "";
    out +=
        fmt::format("\n== {} consumer{} | {:.1f} s per point{} | {} ns work per message{} | {} on {} cores\n", c,
                    c == 1 ? "" : "s", o.point.duration_s, medians, o.point.work_ns, lanes,
                    report.machine.value("cpu", std::string("unknown CPU")), report.machine.value("online_cores", 0));
    if (spreads) {
      out += fmt::format("{:>9}  {:<17}{:>10} {:<14}{:>11}{:>11} {:<14}{:>11}{:>10} {:<14}{:>9}  {}\n", "producers",
                         "mode", "M msgs/s", "[min-max]", "p50 ns", "p99 ns", "[min-max]", "p99.9 ns", "cpu ms/M",
                         "[min-max]", have_spdk ? "x spdk" : "", "status");
    } else {
      out += fmt::format("{:>9}  {:<17}{:>10}{:>12}{:>12}{:>12}{:>13}{:>10}  {}\n", "producers", "mode", "M msgs/s",
                         "p50 ns", "p99 ns", "p99.9 ns", "cpu ms/M", have_spdk ? "x spdk" : "", "status");
    }
    for (int p : producer_counts(report, c)) {
      const PointSummary* spdk = find(summaries, "spdk", p, c);
      for (const auto& mode : modes_in(report)) {
        const PointSummary* r = find(summaries, mode, p, c);
        if (r == nullptr) continue;
        std::string vs;
        if (spdk != nullptr) vs = fmt_ratio(ratio_of(r->msgs_per_sec.median, spdk->msgs_per_sec.median));
        std::string status = "ok";
        if (r->stalled_reps != 0) {
          std::string count = spreads ? fmt::format(" in {}/{}", r->stalled_reps, r->reps) : "";
          status = r->stalled() ? fmt::format("STALLED{}: {}", count, r->stall_reason)
                                : fmt::format("ok (stalled{}: {})", count, r->stall_reason);
        } else if (r->interrupted) {
          status = fmt::format("interrupted: a {:.2f} s window", r->interrupted_window_s);
        }
        if (r->lost != 0 || r->out_of_order != 0 || r->unbalanced_pairs != 0) {
          status = fmt::format("CHECK FAILED: lost {} out-of-order {} unbalanced pairs {}", r->lost, r->out_of_order,
                               r->unbalanced_pairs);
        }
        if (spreads) {
          out +=
              fmt::format("{:>9}  {:<17}{:>10.3f} {:<14}{:>11.0f}{:>11.0f} {:<14}{:>11.0f}{:>10.1f} {:<14}{:>9}  {}\n",
                          p, mode, r->msgs_per_sec.median / 1e6, "[" + range_of(r->msgs_per_sec, 1e6) + "]",
                          r->p50_ns.median, r->p99_ns.median, "[" + range_of(r->p99_ns, 1) + "]", r->p999_ns.median,
                          r->cpu_ms_per_million.median, "[" + range_of(r->cpu_ms_per_million, 1) + "]", vs, status);
        } else {
          out += fmt::format("{:>9}  {:<17}{:>10.3f}{:>12.0f}{:>12.0f}{:>12.0f}{:>13.1f}{:>10}  {}\n", p, mode,
                             r->msgs_per_sec.median / 1e6, r->p50_ns.median, r->p99_ns.median, r->p999_ns.median,
                             r->cpu_ms_per_million.median, vs, status);
        }
      }
    }
  }
  auto checks = check_targets(report);
  out += spreads ? fmt::format(
                       "\nTargets (ratios of the medians of {} repetitions; agree: repetitions whose own ratio gives "
                       "the same verdict)\n",
                       reps)
                 : "\nTargets (ratios from this run)\n";
  int met = 0, evaluated = 0;
  for (const auto& t : checks) {
    std::string verdict = !t.evaluated ? "n/a" : (t.met ? "met" : "NOT MET");
    std::string need = fmt::format("{} {:.2f}", t.at_most ? "<=" : ">=", t.target);
    std::string ratio = t.evaluated ? (std::isfinite(t.ratio) ? fmt::format("{:.2f}", t.ratio) : "inf") : "-";
    std::string agree = spreads && t.evaluated ? fmt::format("{}/{}", t.reps_agreeing, t.reps_compared) : "";
    out += fmt::format("  {:<72} {:>8} {:>8}  {:<7} {:>5}  {}\n", t.what, ratio, need, verdict, agree, t.detail);
    evaluated += t.evaluated ? 1 : 0;
    met += t.evaluated && t.met ? 1 : 0;
  }
  out += fmt::format("  {} of {} evaluated targets met\n", met, evaluated);
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
                 {"reps", o.reps},
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
                            {"rep", r.rep},
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
  auto spread = [](const Spread& s) { return nlohmann::json{{"median", s.median}, {"min", s.min}, {"max", s.max}}; };
  j["summary"] = nlohmann::json::array();
  for (const auto& s : summarize(report)) {
    j["summary"].push_back(
        {{"mode", s.mode},
         {"producers", s.producers},
         {"consumers", s.consumers},
         {"reps", s.reps},
         {"stalled_reps", s.stalled_reps},
         {"stalled", s.stalled()},
         {"msgs_per_sec", spread(s.msgs_per_sec)},
         {"latency_ns", {{"p50", spread(s.p50_ns)}, {"p99", spread(s.p99_ns)}, {"p999", spread(s.p999_ns)}}},
         {"cpu_ms_per_million", spread(s.cpu_ms_per_million)}});
  }
  j["targets"] = nlohmann::json::array();
  for (const auto& t : check_targets(report)) {
    j["targets"].push_back(
        {{"what", t.what},
         {"evaluated", t.evaluated},
         {"ratio", t.evaluated && std::isfinite(t.ratio) ? nlohmann::json(t.ratio) : nlohmann::json(nullptr)},
         {"target", t.target},
         {"at_most", t.at_most},
         {"met", t.met},
         {"reps_compared", t.reps_compared},
         {"reps_agreeing", t.reps_agreeing},
         {"detail", t.detail}});
  }
  return j;
}

std::string render_svg(const SweepReport& report) {
  const std::vector<PointSummary> summaries = summarize(report);
  auto cs = consumer_counts(report);
  auto modes = modes_in(report);
  const std::size_t legend_rows = (modes.size() + kLegendPerRow - 1) / kLegendPerRow;  // rounded up
  constexpr std::size_t kRows = std::size(kCharts);
  const double charts_h = kPanelH * static_cast<double>(kRows);
  double total_w = kPanelW * static_cast<double>(std::max<std::size_t>(1, cs.size()));
  double total_h = charts_h + kLegendH * static_cast<double>(legend_rows) + 30;

  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" viewBox=\"0 0 {:.0f} {:.0f}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      total_w, total_h, total_w, total_h);
  for (std::size_t row = 0; row < kRows; ++row) {
    const ChartMetric& m = kCharts[row];
    const Decades decades = decades_of(summaries, m);
    for (std::size_t column = 0; column < cs.size(); ++column) {
      int c = cs[column];
      auto ps = producer_counts(report, c);
      std::sort(ps.begin(), ps.end());
      const Panel panel = panel_at(column, row, ps, decades, m.floor);
      draw_panel_axes(s, panel, m, c, ps);
      for (const auto& mode : modes) draw_mode_line(s, panel, summaries, m, mode, c, ps);
    }
  }
  draw_legend(s, charts_h, modes, legend_rows, report.options);
  s += "</svg>\n";
  return s;
}

}  // namespace nvmux::msgbench
