// nvmux-perf: spdk_nvme_perf's workload on nvmux queue pairs, against the emu, uring or vfio backend,
// or through nvmuxd (--backend service).
//
//   nvmux-perf -q 32 -o 4096 -w randread -t 5                       # emu, 1 GiB RAM namespace
//   nvmux-perf --backend uring --ns file:/data/ns1.img,size=1G -q 1 -w randread -t 5 -L
//   nvmux-perf --ns ram:size=256M -w randrw -M 70 --qpairs 2 --cores 0,1 --verify --json out.json
//   nvmux-perf --backend service --socket /tmp/nvmuxd.sock -w randrw --verify --partition 0/4
//
// Exit status: 0 the run completed without errors; 1 the run found errors (I/O errors, verify
// mismatches, no I/O completed) or could not run (the device, the daemon, the --json file);
// 2 bad usage (a flag, a value or a namespace that cannot be used as given); 128 + N when signal
// N (SIGINT, SIGTERM) ended the run early: its partial results are printed and written first.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cli.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"
#include "nvmux/common/partition.hpp"
#include "nvmux/common/stop_signals.hpp"
#include "nvmux/nvme/emu.hpp"
#include "nvmux/nvme/uring.hpp"
#include "perf_engine.hpp"

namespace {

constexpr int kExitErrors = 1;
using nvmux::apps::kExitUsage;

int fail(const nvmux::Status& s) {
  std::fprintf(stderr, "nvmux-perf: %s\n", s.to_string().c_str());
  return s.code() == nvmux::StatusCode::kInvalidArgument ? kExitUsage : kExitErrors;
}

nvmux::Status usage_error(const std::string& message) {
  return nvmux::Status(nvmux::StatusCode::kInvalidArgument, message);
}

// --json PATH must be a file in an existing directory; checked before the run so a typo does not
// cost the whole run.
nvmux::Status check_json_path(const std::string& path) {
  struct stat sb {};
  if (::stat(path.c_str(), &sb) == 0 && S_ISDIR(sb.st_mode)) return usage_error("--json " + path + ": a directory");
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (::stat(dir.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    return usage_error(fmt::format("--json {}: directory {} does not exist", path, dir));
  }
  return {};
}

// Writes text to path, checking every write and the close. Errors name the path and the reason.
nvmux::Status write_file(const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return nvmux::Status::from_errno(errno, "--json: cannot open " + path);
  const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0;
  const int write_errno = errno;
  if (std::fclose(f) != 0 || !written) {
    return nvmux::Status::from_errno(written ? errno : write_errno, "--json: cannot write " + path);
  }
  return {};
}

// The file namespaces that do not exist yet: this run creates them, and removes them again if it
// fails before doing any I/O.
std::vector<std::string> files_to_create(const std::vector<nvmux::nvme::NamespaceArg>& namespaces) {
  std::vector<std::string> paths;
  struct stat sb {};
  for (const auto& ns : namespaces) {
    if (ns.kind == nvmux::nvme::NamespaceArg::Kind::kFile && ::stat(ns.path.c_str(), &sb) != 0) {
      paths.push_back(ns.path);
    }
  }
  return paths;
}

}  // namespace

// An exception escaping main ends the tool with its what() on stderr, which is what a CLI wants.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  nvmux::init_logging("warn");
  CLI::App app{
      "nvmux-perf: drive NVMe queue pairs (emu, io_uring or vfio backend) with an spdk_nvme_perf-style workload",
      "nvmux-perf"};
  app.footer(
      "Exit status: 0 success; 1 the run found errors (I/O errors, verify mismatches, no I/O completed) or could "
      "not run; 2 bad usage; 130 / 143 interrupted by SIGINT / SIGTERM (partial results printed first).");
  std::string backend = "emu", pattern = "randread", cores, json_path, emu_engine = "thread";
  std::vector<std::string> ns_args;
  nvmux::perf::PerfParams params;
  int engine_core = -2;
  app.add_option("--backend", backend,
                 "emu (software NVMe controller), uring (io_uring on files/block devices), vfio (a PCIe controller "
                 "bound to vfio-pci) or service (through nvmuxd)")
      ->capture_default_str();
  auto* pci_opt = app.add_option("--pci", params.backend.pci_address,
                                 "vfio: the controller's PCI address, e.g. 0000:00:04.0 (docs/vfio.md)");
  std::string partition = "0/1";
  auto* socket_opt = app.add_option("--socket", params.socket,
                                    "service: nvmuxd's socket (default: $NVMUX_SOCKET, else the per-user default)");
  auto* nsid_opt = app.add_option("--nsid", params.nsid, "service: the namespace to use")->capture_default_str();
  auto* wait_opt = app.add_flag("--wait", params.wait_for_completions,
                                "service: sleep until a completion arrives instead of polling (nvmux_queue_wait)");
  app.add_option("--partition", partition,
                 "work only inside the K-th of N equal LBA ranges (K/N, K from 0), so N processes can share a "
                 "namespace")
      ->capture_default_str();
  app.add_option("--ns", ns_args,
                 "namespace: ram:size=1G[,bs=4096] | null:size=1G | file:PATH[,size=1G][,bs=4096] | bdev:/dev/X "
                 "(repeatable; emu default ram:size=1G)");
  app.add_option("-q,--queue-depth", params.queue_depth,
                 fmt::format("I/Os in flight per queue pair, 1..{} (emu), 1..{} (uring, service)",
                             nvmux::nvme::EmuOptions{}.max_queue_entries - 1,
                             nvmux::nvme::UringOptions{}.max_queue_entries - 1))
      ->capture_default_str();
  app.add_option("--iodepth-low", params.iodepth_low,
                 "refill the queue only once at most this many I/Os are in flight (fio's iodepth_low; "
                 "default: refill at once)");
  app.add_option("-C,--max-completion-per-poll", params.max_completions_per_poll,
                 "completions handled (and slots refilled) per poll; 0: all the poll finds")
      ->capture_default_str();
  app.add_option("-o,--io-size", params.io_bytes, "I/O size in bytes: a multiple of 512, at most the device's limit")
      ->capture_default_str();
  app.add_option("-w,--workload", pattern, "read|write|randread|randwrite|rw|randrw")->capture_default_str();
  app.add_option("-M,--rwmixread", params.read_percent, "read percentage for rw/randrw, 0..100 (default 50)")
      ->check(CLI::Range(0, 100));
  app.add_option("-t,--time", params.seconds, fmt::format("seconds to run, (0, {}]", nvmux::perf::kMaxSeconds))
      ->capture_default_str();
  app.add_flag("-L,--latency", params.latency_percentiles, "print latency percentiles (p50 .. p99.99)");
  app.add_option("--qpairs", params.qpairs,
                 fmt::format("queue pairs, one owner thread each, 1..{}", nvmux::perf::kMaxQpairs))
      ->capture_default_str();
  auto* cores_opt = app.add_option("--cores", cores, "cores for the owner threads, e.g. 0 or 0,1 or 0-3 (round-robin)");
  app.add_flag("--verify", params.verify, "stamp every written block and check every block read");
  app.add_option("--json", json_path, "write the results as JSON to this file");
  app.add_option("--seed", params.seed, "random seed")->capture_default_str();
  auto* engine_opt = app.add_option("--emu-engine", emu_engine, "emu device engine: thread (its own core) or inline")
                         ->capture_default_str();
  auto* engine_core_opt = app.add_option("--emu-engine-core", engine_core,
                                         "pin the emu device thread to this core (default: the last core)");
  auto* latency_opt =
      app.add_option("--emu-latency-us", params.backend.emu_latency_us,
                     fmt::format("emu: fixed latency added to every I/O, 0..{} us", nvmux::perf::kMaxEmuLatencyUs));
  bool buffered = false;
  auto* buffered_opt = app.add_flag("--buffered", buffered, "uring: use the page cache instead of O_DIRECT");
  auto* sqpoll_opt =
      app.add_flag("--sqpoll", params.backend.uring_sqpoll, "uring: a kernel thread polls the submission queue");
  if (auto done = nvmux::apps::parse_command_line(app, "nvmux-perf", argc, argv)) return *done;

  params.service = backend == "service";
  // Each option belongs to one backend; one given to another backend is a mistake worth naming.
  const std::vector<const CLI::Option*> emu_only{engine_opt, engine_core_opt, latency_opt};
  const std::vector<const CLI::Option*> uring_only{buffered_opt, sqpoll_opt};
  const std::vector<const CLI::Option*> service_only{socket_opt, nsid_opt, wait_opt};
  const std::vector<const CLI::Option*> vfio_only{pci_opt};
  for (const auto* list : {&emu_only, &uring_only, &service_only, &vfio_only}) {
    const bool applies = (list == &emu_only && backend == "emu") || (list == &uring_only && backend == "uring") ||
                         (list == &service_only && params.service) || (list == &vfio_only && backend == "vfio");
    for (const CLI::Option* opt : *list) {
      if (!applies && opt->count() != 0) {
        return fail(usage_error(fmt::format("{} does not apply to --backend {}", opt->get_name(), backend)));
      }
    }
  }
  if (!params.service) {
    auto b = nvmux::nvme::parse_backend(backend);
    if (!b.ok()) {
      return fail(nvmux::Status::error(nvmux::StatusCode::kInvalidArgument,
                                       "--backend {}: unknown backend (emu, uring, vfio or service)", backend));
    }
    params.backend.backend = *b;
  }
  if (auto parsed = nvmux::parse_partition(partition); parsed.ok()) {
    params.partition = *parsed;
  } else {
    return fail(parsed.status());
  }
  for (const auto& a : ns_args) {
    auto ns = nvmux::nvme::parse_namespace_arg(a);
    if (!ns.ok()) return fail(ns.status());
    params.backend.namespaces.push_back(*ns);
  }
  auto w = nvmux::perf::parse_pattern(pattern);
  if (!w.ok()) return fail(w.status());
  params.pattern = *w;
  if (cores_opt->count() != 0) {
    auto list = nvmux::parse_core_list(cores, "--cores");
    if (!list.ok()) return fail(list.status());
    params.cores = *list;
  }
  if (emu_engine != "thread" && emu_engine != "inline") {
    return fail(
        nvmux::Status::error(nvmux::StatusCode::kInvalidArgument, "--emu-engine {}: thread or inline", emu_engine));
  }
  params.backend.emu_inline_engine = emu_engine == "inline";
  // The device engine gets the last core, away from the owner threads, unless told otherwise.
  if (engine_core_opt->count() != 0 && (engine_core < -1 || engine_core >= nvmux::online_cores())) {
    return fail(
        usage_error(fmt::format("--emu-engine-core {}: core does not exist (this machine has 0..{}; -1: "
                                "not pinned)",
                                engine_core, nvmux::online_cores() - 1)));
  }
  params.backend.emu_engine_core =
      engine_core == -2 ? (nvmux::online_cores() > 1 ? nvmux::online_cores() - 1 : -1) : engine_core;
  params.backend.uring_direct = !buffered;
  if (!json_path.empty()) {
    if (auto s = check_json_path(json_path); !s.ok()) return fail(s);
  }
  const std::vector<std::string> created = files_to_create(params.backend.namespaces);
  nvmux::catch_stop_signals();
  params.interrupt = &nvmux::stop_signal();

  const bool tty = isatty(STDERR_FILENO) != 0;
  auto progress = [tty](const nvmux::perf::Progress& p) {
    if (!tty) return;
    if (p.prefill) {
      std::fprintf(stderr, "\r  prefilling for --verify ... %.0f s   ", p.elapsed_s);
    } else {
      std::fprintf(stderr, "\r  %4.0f / %.0f s   %12.0f IOPS   ", p.elapsed_s, p.seconds, p.iops_last_second);
    }
    std::fflush(stderr);
  };
  auto report = nvmux::perf::run_perf(params, progress);
  if (tty) std::fprintf(stderr, "\r%60s\r", "");
  if (!report.ok()) {
    for (const auto& path : created) ::unlink(path.c_str());  // this run made it and did nothing with it
    return fail(report.status());
  }
  std::fputs(nvmux::perf::format_report(*report).c_str(), stdout);
  std::fflush(stdout);
  int rc = 0;
  if (!json_path.empty()) {
    if (auto s = write_file(json_path, nvmux::perf::report_to_json(*report).dump(2) + "\n"); s.ok()) {
      std::printf("wrote %s\n", json_path.c_str());
    } else {
      rc = fail(s);
    }
  }
  if (report->interrupted_by != 0) return nvmux::exit_status_for_signal(report->interrupted_by);
  if (report->total.ios == 0) {
    std::fprintf(stderr, "nvmux-perf: no I/O completed in %.1f s: nothing was measured\n", report->total.seconds);
    return kExitErrors;
  }
  if (report->total.verify_errors != 0 || report->total.io_errors != 0) return kExitErrors;
  return rc;
}
