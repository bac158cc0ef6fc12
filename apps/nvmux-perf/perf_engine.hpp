#pragma once
// The nvmux-perf workload engine: spdk_nvme_perf's model on nvmux queue pairs.
//
// One owner thread per queue pair (pinned to a core from `cores`, round-robin) creates its qpair,
// keeps `queue_depth` I/Os in flight for `seconds`, and records every completion's latency from
// submit to callback. Queue pair i works on namespace (i % namespaces) + 1.
//
// With `service`, the run is a client of nvmuxd instead: one session, and one session queue per
// "queue pair" (the daemon owns the device's queue pairs), all on namespace `nsid`; data buffers
// live in the session's shared arena, so the device reads and writes them directly.
//
// --partition K/N: every queue pair works only inside the K-th of N equal LBA ranges of its
// namespace (nvmux/common/partition.hpp), so N verifying processes can share one namespace.
//
// --verify: every block written carries (LBA, generation, a pattern derived from both); every
// block read is checked against the generation this run last wrote there. Before a workload that
// reads, each queue pair first writes its whole region once (the "prefill", not timed) so every
// read has something to check. With verify, queue pairs on one namespace split it into disjoint
// regions and no two I/Os in flight touch the same blocks, so the expected contents are exact.
//
// Interruption: when *interrupt (a signal number, set from a signal handler) becomes non-zero, the
// run stops early — during the prefill or the timed window — drains what is in flight and returns
// the results of the time that ran, marked interrupted.
//
// Threading: run_perf() is called from one thread; it starts and joins the workers. The progress
// callback runs on the calling thread about once a second.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nvmux/common/histogram.hpp"
#include "nvmux/common/partition.hpp"
#include "nvmux/common/status.hpp"
#include "nvmux/nvme/backend.hpp"

namespace nvmux::perf {

enum class Pattern { kRead, kWrite, kRandRead, kRandWrite, kRw, kRandRw };
Result<Pattern> parse_pattern(std::string_view name);
std::string_view to_string(Pattern pattern);

struct PerfParams;
// "emu", "uring" or "service".
std::string_view backend_name(const PerfParams& params);

struct PerfParams {
  nvme::BackendOptions backend;       // emu, uring (unused with `service`)
  bool service = false;               // --backend service: drive nvmuxd
  std::string socket;                 // --socket ("" = the default socket path)
  std::uint32_t nsid = 1;             // --nsid, with `service`
  bool wait_for_completions = false;  // --wait, with `service`: sleep instead of polling when idle
  Partition partition;                // --partition K/N
  std::uint32_t queue_depth = 32;     // -q
  // --iodepth-low (fio's iodepth_low): refill the queue only once at most this many I/Os are in
  // flight, then fill it completely. Unset: refill as soon as any slot frees (spdk_nvme_perf's way).
  std::optional<std::uint32_t> iodepth_low;
  // -C (spdk_nvme_perf's --max-completion-per-poll): completions handled per poll, so at most this
  // many slots are refilled and submitted together. 0: every completion the poll finds.
  std::uint32_t max_completions_per_poll = 0;
  std::uint32_t io_bytes = 4096;  // -o
  Pattern pattern = Pattern::kRandRead;
  int read_percent = -1;             // -M; -1 = from the pattern (100 / 0 / 50 for rw)
  double seconds = 5.0;              // -t
  bool latency_percentiles = false;  // -L
  std::uint32_t qpairs = 1;
  std::vector<int> cores;  // empty: not pinned
  bool verify = false;
  std::uint64_t seed = 1;
  std::size_t max_reported_mismatches = 10;
  const std::atomic<int>* interrupt = nullptr;  // non-zero (a signal number): stop early
};

// Limits of the numeric flags, checked by run_perf and shown by --help.
inline constexpr double kMaxSeconds = 86400;                // -t: a day
inline constexpr std::uint32_t kMaxEmuLatencyUs = 1000000;  // --emu-latency-us: a second
inline constexpr std::uint32_t kMaxQpairs = 64;             // --qpairs
// -q: one less than the queue entries each backend grants (a queue holds depth + 1 entries).
std::uint32_t max_queue_depth(const PerfParams& params);

struct Mismatch {
  std::uint32_t qpair = 0;
  std::uint32_t nsid = 0;
  std::uint64_t lba = 0;
  std::uint64_t expected_generation = 0;
  std::string found;  // what the block's header held
};

struct QpairResult {
  std::string name;
  int core = -1;
  std::uint32_t nsid = 0;
  std::uint64_t ios = 0;  // completed inside the timed window
  std::uint64_t bytes = 0;
  std::uint64_t reads = 0;
  std::uint64_t writes = 0;
  std::uint64_t io_errors = 0;                          // completions with an error status
  std::uint64_t verify_errors = 0;                      // blocks whose contents were wrong
  std::uint64_t submitted = 0;                          // I/Os submitted inside the timed window
  std::uint64_t refills = 0;                            // times the loop submitted one or more of them
  std::uint64_t checked_blocks = 0;                     // --verify: blocks read back and compared, window or not
  std::map<std::string, std::uint64_t> errors_by_kind;  // every failed completion, by its cause
  std::string first_error;                              // the first failed I/O: its command, LBA and cause
  double seconds = 0;
  Histogram latency_ticks;  // TSC ticks from submit to callback (tsc_to_ns to convert)
};

struct PerfReport {
  PerfParams params;
  int read_percent = 100;
  std::vector<QpairResult> qpairs;
  QpairResult total;
  std::vector<Mismatch> mismatches;  // the first max_reported_mismatches
  double prefill_seconds = 0;
  std::string controller;
  int interrupted_by = 0;  // the signal that stopped the run early, 0 when it ran its course
};

struct Progress {
  double elapsed_s = 0;
  double seconds = 0;
  std::uint64_t ios = 0;
  double iops_last_second = 0;
  bool prefill = false;
};
using ProgressFn = std::function<void(const Progress&)>;

// Checks the parameters (with messages naming the flag), opens the controller, runs the workload.
// Errors: kInvalidArgument for bad parameters; the controller's errors; kAborted when a queue pair
// failed mid-run (with its diagnostic).
Result<PerfReport> run_perf(const PerfParams& params, const ProgressFn& progress = {});

// spdk_nvme_perf-style table: a row per queue pair and a total row.
std::string format_report(const PerfReport& report);
nlohmann::json report_to_json(const PerfReport& report);

}  // namespace nvmux::perf
