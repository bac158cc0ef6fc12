// nvmux-msgbench: cross-thread messaging designs side by side in one run (see
// bench/msgbench/msgbench.hpp and docs/benchmarks.md). Parses flags, runs the sweep, prints.
//
//   nvmux-msgbench [--modes spdk,lanes,...] [--producers 1,2,4,8,16,64] [--consumers 1,2]
//                  [--duration SECONDS] [--reps N] [--work-ns NS] [--json FILE] [--svg FILE]
//                  [--list-modes]
//
// Exit status: 0 done (also when a point stalled: that is a result), 1 a point failed to run or
// a --json/--svg file could not be written or a point was abandoned (producers stuck in the send
// call 10 s after its window: the sweep ends there), 2 bad arguments or a mode not built; 128 + N when
// signal N (SIGINT 130, SIGTERM 143) ended the sweep early: the current point is cut short, the
// results of the points that ran are printed and written first (marked interrupted) and the DPDK
// EAL is shut down (no /var/run/dpdk/nvmux-msgbench-<pid> left behind).

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cli.hpp"
#include "msgbench.hpp"
#include "nvmux/common/log.hpp"
#include "nvmux/common/stop_signals.hpp"

namespace mb = nvmux::msgbench;

namespace {

constexpr std::uint64_t kMaxWorkNs = 1'000'000;  // --work-ns: a millisecond of work per message

// Writes text to path, checking every write and the close; an error names the flag, the path and
// the reason.
bool write_file(const char* flag, const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  bool ok = f != nullptr && std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0;
  int err = errno;
  if (f != nullptr && std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) std::fprintf(stderr, "nvmux-msgbench: %s: cannot write %s: %s\n", flag, path.c_str(), std::strerror(err));
  return ok;
}

// An output file must be in an existing directory and not be one: checked before the sweep runs.
bool output_path_usable(const char* flag, const std::string& path) {
  struct stat sb {};
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const char* why = ::stat(path.c_str(), &sb) == 0 && S_ISDIR(sb.st_mode)   ? "is a directory"
                    : ::stat(dir.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode) ? "is in a directory that does not exist"
                                                                            : nullptr;
  if (why != nullptr) std::fprintf(stderr, "nvmux-msgbench: %s %s: %s\n", flag, path.c_str(), why);
  return why == nullptr;
}

}  // namespace

// An exception escaping main ends the tool with its what() on stderr, which is what a CLI wants.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  nvmux::init_logging("warn");
  CLI::App app{"nvmux-msgbench: cross-thread message passing, side by side (SPDK/DPDK, mutex, moodycamel, nvmux lanes)",
               "nvmux-msgbench"};
  app.footer(
      "Exit status: 0 done (a stalled point is a result); 1 a point failed to run or was abandoned, or an output "
      "file could not be written; 2 bad usage; 130 / 143 interrupted by SIGINT / SIGTERM (the current point is cut "
      "short, the "
      "results of the points that ran printed and written first, marked interrupted).");
  mb::SweepOptions options;
  options.modes = mb::built_modes();
  std::string json_path, svg_path;
  bool list = false, quiet = false;
  app.add_option("--modes", options.modes, "comma list of modes (default: every built mode)")->delimiter(',');
  app.add_option("--producers", options.producers, "comma list of producer counts, each 1..1024")
      ->delimiter(',')
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--consumers", options.consumers, "comma list of consumer counts, each 1..64")
      ->delimiter(',')
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--duration", options.point.duration_s, "measured seconds per point, 0.01..3600")
      ->check(CLI::Range(0.01, 3600.0))
      ->capture_default_str();
  app.add_option("--reps", options.reps,
                 fmt::format("repetitions of every point, 1..{}: the modes alternate within each, and the table, "
                             "targets and chart use the medians (the JSON has every repetition)",
                             mb::kMaxReps))
      ->check(CLI::Range(1, mb::kMaxReps))
      ->capture_default_str();
  // A string first: CLI11 would wrap "-1" into 2^64 - 1 for an unsigned option.
  std::string work_ns = "0";
  app.add_option("--work-ns", work_ns, fmt::format("busy work in each message handler, 0..{} ns", kMaxWorkNs))
      ->check(CLI::Range(std::uint64_t{0}, kMaxWorkNs))
      ->capture_default_str();
  app.add_option("--lane-capacity", options.point.lane_capacity,
                 "lanes modes: slots per lane, a power of two (default: the runtime's, 1024)");
  app.add_option("--json", json_path, "write the results as JSON to FILE");
  app.add_option("--svg", svg_path,
                 "write the charts (SVG: throughput, p99 latency and CPU per message against producers) to FILE");
  app.add_flag("--list-modes", list, "list the modes and whether each is built, then exit");
  app.add_flag("--quiet", quiet, "no progress line on stderr (it is drawn only on a terminal anyway)");
  if (auto done = nvmux::apps::parse_command_line(app, "nvmux-msgbench", argc, argv)) return *done;
  options.point.work_ns = std::stoull(work_ns);  // the range check above passed: digits only

  if (list) {
    for (const auto& m : mb::mode_catalog()) {
      std::printf("%-17s %-10s %s\n", m.name.c_str(), m.built ? "built" : "NOT BUILT",
                  m.built ? m.description.c_str() : m.not_built_why.c_str());
    }
    return 0;
  }
  if (auto s = mb::check_modes(options.modes); !s.ok()) {
    std::fprintf(stderr, "nvmux-msgbench: %s\n", s.message().c_str());
    return 2;
  }
  if (auto s = mb::check_sweep(options); !s.ok()) {
    std::fprintf(stderr, "nvmux-msgbench: %s\n", s.message().c_str());
    return 2;
  }
  if ((!json_path.empty() && !output_path_usable("--json", json_path)) ||
      (!svg_path.empty() && !output_path_usable("--svg", svg_path))) {
    return 2;
  }
  for (const auto& m : mb::mode_catalog()) {
    if (!m.built) std::printf("note: mode %s is not built: %s\n", m.name.c_str(), m.not_built_why.c_str());
  }
  std::string modes_list, producers_list, consumers_list;
  for (const auto& m : options.modes) modes_list += (modes_list.empty() ? "" : ",") + m;
  for (int p : options.producers) producers_list += (producers_list.empty() ? "" : ",") + std::to_string(p);
  for (int c : options.consumers) consumers_list += (consumers_list.empty() ? "" : ",") + std::to_string(c);
  std::string lanes = options.point.lane_capacity != 0 ? std::to_string(options.point.lane_capacity) : "default";
  std::printf(
      "nvmux-msgbench: modes %s | producers %s | consumers %s | %.1f s per point | %d repetition%s | work %llu ns | "
      "lane slots %s\n",
      modes_list.c_str(), producers_list.c_str(), consumers_list.c_str(), options.point.duration_s, options.reps,
      options.reps == 1 ? "" : "s", static_cast<unsigned long long>(options.point.work_ns), lanes.c_str());
  std::fflush(stdout);

  bool tty = !quiet && isatty(STDERR_FILENO) != 0;
  auto progress = [tty](const mb::Progress& p) {
    if (!tty) return;
    if (p.finished == nullptr) {
      std::fprintf(stderr, "\r\033[K[%zu/%zu] %s  producers %d  consumers %d  rep %d ...", p.index, p.total,
                   p.mode->c_str(), p.producers, p.consumers, p.rep + 1);
    } else {
      std::fprintf(stderr, "\r\033[K[%zu/%zu] %s  producers %d  consumers %d  rep %d: %.3f M msgs/s%s", p.index,
                   p.total, p.mode->c_str(), p.producers, p.consumers, p.rep + 1, p.finished->msgs_per_sec / 1e6,
                   p.finished->stalled ? " (stalled)" : "");
      if (p.index == p.total) std::fprintf(stderr, "\n");
    }
    std::fflush(stderr);
  };
  nvmux::catch_stop_signals();
  options.point.interrupt = &nvmux::stop_signal();
  auto report = mb::run_sweep(options, progress);
  const bool threads_left = report.ok() && report->abandoned;
  mb::release_environment(threads_left);  // the DPDK EAL and its runtime directory, interrupted or not
  if (!report.ok()) {
    if (tty) std::fprintf(stderr, "\n");
    std::fprintf(stderr, "nvmux-msgbench: %s\n", report.status().to_string().c_str());
    return 1;
  }
  if (tty && report->interrupted_by != 0) std::fprintf(stderr, "\n");  // end the progress line
  std::printf("%s", mb::format_table(*report).c_str());
  bool ok = true;
  if (!json_path.empty()) {
    ok = write_file("--json", json_path, mb::to_json(*report).dump(2) + "\n") && ok;
    if (ok) std::printf("\nwrote %s\n", json_path.c_str());
  }
  if (!svg_path.empty()) {
    ok = write_file("--svg", svg_path, mb::render_svg(*report)) && ok;
    if (ok) std::printf("wrote %s\n", svg_path.c_str());
  }
  int rc = report->interrupted_by != 0 ? nvmux::exit_status_for_signal(report->interrupted_by) : ok ? 0 : 1;
  if (threads_left) {
    // An abandoned point's producers are still inside the design's send call: the sweep ended
    // there, and the process ends without running destructors under them.
    std::fprintf(stderr, "nvmux-msgbench: the sweep ended at an abandoned point (see its status)\n");
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(report->interrupted_by != 0 ? rc : 1);
  }
  return rc;
}
