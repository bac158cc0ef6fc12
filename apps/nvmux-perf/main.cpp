// nvmux-perf: spdk_nvme_perf's workload on nvmux queue pairs, against the emu or uring backend,
// or through nvmuxd (--backend service).
//
//   nvmux-perf -q 32 -o 4096 -w randread -t 5                       # emu, 1 GiB RAM namespace
//   nvmux-perf --backend uring --ns file:/data/ns1.img,size=1G -q 1 -w randread -t 5 -L
//   nvmux-perf --ns ram:size=256M -w randrw -M 70 --qpairs 2 --cores 0,1 --verify --json out.json
//   nvmux-perf --backend service --socket /tmp/nvmuxd.sock -w randrw --verify --partition 0/4
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>

#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"
#include "nvmux/common/partition.hpp"
#include "perf_engine.hpp"

// An exception escaping main ends the tool with its what() on stderr, which is what a CLI wants.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  nvmux::init_logging("warn");
  CLI::App app{"nvmux-perf: drive NVMe queue pairs (emu or io_uring backend) with an spdk_nvme_perf-style workload"};
  std::string backend = "emu", pattern = "randread", cores, json_path, emu_engine = "thread";
  std::vector<std::string> ns_args;
  nvmux::perf::PerfParams params;
  int engine_core = -2;
  app.add_option("--backend", backend,
                 "emu (software NVMe controller), uring (io_uring on files/block devices) or service (through nvmuxd)")
      ->capture_default_str();
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
  app.add_option("-q,--queue-depth", params.queue_depth, "I/Os in flight per queue pair")->capture_default_str();
  app.add_option("--iodepth-low", params.iodepth_low,
                 "refill the queue only once at most this many I/Os are in flight (fio's iodepth_low; "
                 "default: refill at once)");
  app.add_option("-C,--max-completion-per-poll", params.max_completions_per_poll,
                 "completions handled (and slots refilled) per poll; 0: all the poll finds")
      ->capture_default_str();
  app.add_option("-o,--io-size", params.io_bytes, "I/O size in bytes")->capture_default_str();
  app.add_option("-w,--workload", pattern, "read|write|randread|randwrite|rw|randrw")->capture_default_str();
  app.add_option("-M,--rwmixread", params.read_percent, "read percentage for rw/randrw (default 50)");
  app.add_option("-t,--time", params.seconds, "seconds to run")->capture_default_str();
  app.add_flag("-L,--latency", params.latency_percentiles, "print latency percentiles (p50 .. p99.99)");
  app.add_option("--qpairs", params.qpairs, "queue pairs, one owner thread each")->capture_default_str();
  app.add_option("--cores", cores, "cores for the owner threads, e.g. 0 or 0,1 or 0-3 (round-robin)");
  app.add_flag("--verify", params.verify, "stamp every written block and check every block read");
  app.add_option("--json", json_path, "write the results as JSON to this file");
  app.add_option("--seed", params.seed, "random seed")->capture_default_str();
  auto* engine_opt = app.add_option("--emu-engine", emu_engine, "emu device engine: thread (its own core) or inline")
                         ->capture_default_str();
  auto* engine_core_opt =
      app.add_option("--emu-engine-core", engine_core, "pin the emu device thread (default: the last core)");
  auto* latency_opt =
      app.add_option("--emu-latency-us", params.backend.emu_latency_us, "emu: fixed latency added to every I/O");
  bool buffered = false;
  auto* buffered_opt = app.add_flag("--buffered", buffered, "uring: use the page cache instead of O_DIRECT");
  auto* sqpoll_opt =
      app.add_flag("--sqpoll", params.backend.uring_sqpoll, "uring: a kernel thread polls the submission queue");
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const nvmux::Status& s) {
    std::fprintf(stderr, "nvmux-perf: %s\n", s.to_string().c_str());
    return 2;
  };
  params.service = backend == "service";
  // Each option belongs to some backends; one given to another backend is a mistake worth naming.
  for (const CLI::Option* opt : params.service ? std::vector<const CLI::Option*>{engine_opt, engine_core_opt,
                                                                                 latency_opt, buffered_opt, sqpoll_opt}
                                               : std::vector<const CLI::Option*>{socket_opt, nsid_opt, wait_opt}) {
    if (opt->count() != 0) {
      return fail(nvmux::Status::error(nvmux::StatusCode::kInvalidArgument, "{} does not apply to --backend {}",
                                       opt->get_name(), backend));
    }
  }
  if (!params.service) {
    auto b = nvmux::nvme::parse_backend(backend);
    if (!b.ok()) {
      return fail(nvmux::Status::error(nvmux::StatusCode::kInvalidArgument,
                                       "--backend {}: unknown backend (emu, uring or service)", backend));
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
  if (!cores.empty()) {
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
  params.backend.emu_engine_core =
      engine_core == -2 ? (nvmux::online_cores() > 1 ? nvmux::online_cores() - 1 : -1) : engine_core;
  params.backend.uring_direct = !buffered;

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
  if (!report.ok()) return fail(report.status());
  std::fputs(nvmux::perf::format_report(*report).c_str(), stdout);
  if (!json_path.empty()) {
    std::ofstream(json_path) << nvmux::perf::report_to_json(*report).dump(2) << "\n";
    std::printf("wrote %s\n", json_path.c_str());
  }
  if (report->total.verify_errors != 0 || report->total.io_errors != 0) return 1;
  return 0;
}
