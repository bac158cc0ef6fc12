#pragma once
// nvmux-msgbench: cross-thread message passing, side by side in one run — SPDK's send path on
// real DPDK primitives, DPDK's RTS variant, a mutex inbox, moodycamel::ConcurrentQueue and nvmux
// lanes (inbox poller and dispatcher) — P plain producer pthreads sending to C consumers.
//
// This header is what the app's thin main and the tests use: the mode catalogue, one point, a
// sweep, and the three renderings (table, JSON, SVG).
//
// Threading: run_point/run_sweep are called from one thread at a time (they start and join their
// own threads and leave none behind). release_environment() is called once, at the end, from
// the main thread.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nvmux/common/status.hpp"

namespace nvmux::msgbench {

struct ModeInfo {
  std::string name;           // as given to --modes
  std::string description;    // one line
  bool built = false;         // false when its dependency was missing at build time
  std::string not_built_why;  // when !built: what was missing and how to get it
  bool uses_dpdk = false;
};

// Every mode nvmux-msgbench knows, built or not, in table order.
const std::vector<ModeInfo>& mode_catalog();
// Checks a --modes list: every name known and built. Errors (kInvalidArgument / kUnsupported)
// say which name is unknown or why it is absent from this build.
Status check_modes(const std::vector<std::string>& modes);
// The built modes, in catalogue order (the default --modes).
std::vector<std::string> built_modes();

// Limits of one point. Every wait is bounded: a point never takes longer than
// warmup + duration + drain_timeout + join grace, whatever the design does.
//
// A point is marked stalled (and reports what it completed) when, during the window, nothing was
// executed for stall_after_s (the window is cut off there), nothing was executed for stall_gap_s
// at a stretch, or the window's throughput fell below the collapse floor (10k msgs/s by default,
// lower with heavy --work-ns); or when, after the window, producers stayed inside their send call past the
// exit grace or the consumers did not drain what was sent within drain_timeout_s.
struct PointOptions {
  double duration_s = 2.0;        // measured window
  std::uint64_t work_ns = 0;      // busy work per message in the handler
  double warmup_s = 0.1;          // before the window: queues fill, caches warm
  double stall_gap_s = 0.25;      // a stretch this long with no message executed: collapsed, stalled
  double stall_after_s = 1.0;     // no message executed for this long: cut off early, stalled
  double drain_timeout_s = 2.0;   // after the window: consumers must catch up within this
  std::size_t lane_capacity = 0;  // lanes modes only: slots per lane (power of two); 0 = runtime default
  // Below this many msgs/s in the window a point counts as collapsed: any design that works moves
  // millions a second on its own core. Tests under sanitizers (5-50x slower) lower it.
  double collapse_floor_msgs_per_sec = 10'000;
  // Interruption: when *interrupt (a signal number, set from a signal handler) becomes non-zero
  // the point ends at once within its bounds: the attach wait, the warm-up or the window is cut
  // short, then the producers stop and the drain and stop follow as usual. The result says
  // interrupted (its window covers the time that ran) and a sweep runs no further point.
  const std::atomic<int>* interrupt = nullptr;
};

struct PointResult {
  std::string mode;
  int producers = 0;
  int consumers = 0;
  int rep = 0;                    // which repetition of the point (0-based; SweepOptions::reps)
  double seconds = 0;             // length of the measured window
  std::uint64_t window_msgs = 0;  // executed inside the window
  double msgs_per_sec = 0;
  std::uint64_t p50_ns = 0, p99_ns = 0, p999_ns = 0;  // enqueue-to-execute, inside the window
  double cpu_ms_per_million = 0;                      // process CPU time inside the window per million messages
  bool stalled = false;
  std::string stall_reason;  // empty unless stalled
  bool interrupted = false;  // a signal cut the point short (PointOptions::interrupt)
  // Producers stayed inside the send call past the exit limit (10 s after the window): the point
  // was abandoned — its threads left running, its mode never stopped, only the window's numbers
  // and `executed` reported — and the sweep ended. Also stalled.
  bool abandoned = false;
  std::uint64_t sent = 0;              // enqueued by producers, whole point
  std::uint64_t executed = 0;          // executed by consumers, whole point
  std::uint64_t lost = 0;              // sent but never executed (only when not drained)
  std::uint64_t out_of_order = 0;      // per (producer, consumer) sequence gaps seen by consumers
  std::uint64_t unbalanced_pairs = 0;  // (producer, consumer) pairs whose counts differ
  std::vector<std::pair<std::string, std::uint64_t>> counters;  // mode-specific
};

// Runs one point. Errors: kInvalidArgument (bad counts), kUnsupported (mode not built),
// kUnavailable (the mode's environment failed to start, e.g. DPDK EAL). A design that stalls is
// not an error: the result says stalled.
Result<PointResult> run_point(const std::string& mode, int producers, int consumers, const PointOptions& options);

inline constexpr int kMaxReps = 100;  // --reps

struct SweepOptions {
  std::vector<std::string> modes;
  std::vector<int> producers{1, 2, 4, 8, 16, 64};
  std::vector<int> consumers{1, 2};
  int reps = 1;  // repetitions of every point, 1..kMaxReps
  PointOptions point;
};

struct Progress {
  std::size_t index = 0;  // 1-based point number (every repetition counts)
  std::size_t total = 0;
  const std::string* mode = nullptr;
  int producers = 0, consumers = 0;
  int rep = 0;                            // 0-based repetition
  const PointResult* finished = nullptr;  // set when the point is done, else it is starting
};

struct SweepReport {
  nlohmann::json machine;
  SweepOptions options;
  std::vector<PointResult> results;  // the points that ran, the last one possibly interrupted
  int interrupted_by = 0;            // the signal that ended the sweep early, 0 when it ran its course
  bool abandoned = false;            // the last point was abandoned (PointResult::abandoned): threads left
};

// Checks a sweep's shape before anything runs. Errors: kInvalidArgument naming the flag, e.g. the
// spdk modes with more consumers than cores (see spdk_mode.cpp: their rings' tail wait convoys
// when consumers share a core, and a point could take minutes to stop).
Status check_sweep(const SweepOptions& options);

// Runs every (consumers, producers, mode) point `reps` times: for each consumer and producer count,
// repetition after repetition, every mode once per repetition (the first mode rotating from one
// repetition to the next), so that the contenders alternate and noise hits them alike.
// Errors stop the sweep (the points done so far are lost; the caller prints the Status). An
// interrupt (PointOptions::interrupt) is not an error: the report holds the points that ran and
// interrupted_by the signal.
Result<SweepReport> run_sweep(const SweepOptions& options, const std::function<void(const Progress&)>& progress);

// Machine description for the report: host, CPU model, cores, kernel, TSC rate, DPDK version.
nlohmann::json machine_info();

// The median of `values` (the mean of the middle two for an even count) and its min-max spread.
struct Spread {
  double median = 0;
  double min = 0;
  double max = 0;
};
Spread spread_of(std::vector<double> values);

// Every repetition of one (mode, producers, consumers) point, summarised.
struct PointSummary {
  std::string mode;
  int producers = 0;
  int consumers = 0;
  int reps = 0;                                                    // repetitions that ran
  int stalled_reps = 0;                                            // of which stalled
  std::string stall_reason;                                        // the first stalled repetition's
  bool interrupted = false;                                        // a repetition was cut short by a signal
  double interrupted_window_s = 0;                                 // ... and the window it ran
  std::uint64_t lost = 0, out_of_order = 0, unbalanced_pairs = 0;  // summed over repetitions
  Spread msgs_per_sec, p50_ns, p99_ns, p999_ns, cpu_ms_per_million;
  bool stalled() const { return 2 * stalled_reps > reps; }  // a majority of its repetitions stalled
};
// One summary per point, in the order the points first ran.
std::vector<PointSummary> summarize(const SweepReport& report);

// One table per consumer count (medians, with the min-max spread when there are repetitions),
// then the target checks with their ratios.
std::string format_table(const SweepReport& report);
// {"machine", "params", "results": [every repetition: {mode, producers, consumers, rep,
//   msgs_per_sec, latency_ns: {p50, p99, p999}, cpu_ms_per_million, stalled, ...}],
//  "summary": [per point: medians and min/max], "targets": [...]}
nlohmann::json to_json(const SweepReport& report);
// Three charts per consumer count against producers (log scales), one line per mode through the
// medians with a min-max whisker at each point: throughput, p99 latency, CPU per message.
std::string render_svg(const SweepReport& report);

// The targets nvmux is held to (docs/benchmarks.md, "The targets"; issue 15): against moodycamel
// at every producer count (throughput, CPU per message, p99), against spdk, oversubscription, and
// the dispatcher. Evaluated on the medians; each check also says how many repetitions, taken on
// their own, give the same verdict. Missing points: not evaluated.
struct TargetCheck {
  std::string what;
  double ratio = 0;      // from the medians
  double target = 0;     // the bound on the ratio
  bool at_most = false;  // met when ratio <= target (else ratio >= target)
  bool evaluated = false;
  bool met = false;
  int reps_compared = 0;  // repetitions in which both sides ran
  int reps_agreeing = 0;  // of which give the same verdict as the medians
  std::string detail;
};
std::vector<TargetCheck> check_targets(const SweepReport& report);

// Releases process-wide state the modes set up lazily (the DPDK EAL). Call once before exit.
// threads_left: an abandoned point's threads still run (SweepReport::abandoned); the EAL is then
// not cleaned up under them, only its runtime directory removed, and the caller must end the
// process with std::_Exit once its output is flushed.
void release_environment(bool threads_left = false);

}  // namespace nvmux::msgbench
