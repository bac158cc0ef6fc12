// nvme_bench: submit-plus-complete through nvmux's QueuePair against the emu controller's `null`
// namespace (no data moves), so it measures the software path alone: the driver on core 0, the
// device engine thread on core 1, real SQ/CQ memory and doorbells between them.
//
//   qd/<depth>          keeps <depth> 4 KiB reads in flight; each completion callback resubmits at once
//   qd_inline/128       the same with the device stepped on the driver's core (software path cost)
//
// Depths 1, 32 and 128; delayed doorbells (one SQ tail write per poll batch, one CQ head write per
// poll); at most 32 completions reaped per poll. Reports IOPS and ns per I/O (wall time / completions), medians of
// repeated interleaved runs. Extra flags (before Google Benchmark's own):
//   --json FILE   write the medians as JSON
//   --quick       shorter runs (3 repetitions, 0.1 s each)
#include <benchmark/benchmark.h>

#include <time.h>
#include <unistd.h>
#include "bench_support.hpp"

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nvmux/common/cpu.hpp"
#include "nvmux/nvme/emu.hpp"

namespace {

using namespace nvmux;
using namespace nvmux::nvme;

constexpr int kDriverCore = 0;
constexpr int kDeviceCore = 1;
constexpr std::uint32_t kBlockBytes = 4096;
constexpr std::uint64_t kNamespaceBlocks = 1u << 20;  // 4 GiB, null: nothing is stored
constexpr std::uint32_t kSqEntries = 256;
constexpr double kTargetIopsAtQd128 = 5e6;
// Completions reaped per poll: the resubmissions of one poll reach the device (one SQ doorbell)
// while the driver reaps the next ones, so the two cores overlap instead of taking turns.
constexpr std::uint32_t kMaxCompletionsPerPoll = 32;

std::uint64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string one, five;
  f >> one >> five;
  return one + " " + five;
}

std::unique_ptr<EmuController> make_controller(EmuEngine engine) {
  EmuOptions o;
  o.name = engine == EmuEngine::kThread ? "bench" : "bench-inline";
  o.engine = engine;
  o.engine_core = online_cores() > kDeviceCore ? kDeviceCore : -1;
  o.engine_yields_when_idle = false;  // a dedicated, busy-polling device core, as a real device
  o.dma_arena_bytes = 32u << 20;
  o.namespaces.push_back(NamespaceSpec{kNamespaceBlocks, kBlockBytes, NamespaceBacking::kNull, ""});
  auto c = EmuController::create(o);
  NVMUX_ASSERT(c.ok(), "nvme_bench: {}", c.status().to_string());
  return std::move(c).value();
}

EmuController& controller(EmuEngine engine) {
  static std::unique_ptr<EmuController> threaded = make_controller(EmuEngine::kThread);
  static std::unique_ptr<EmuController> inline_engine = make_controller(EmuEngine::kInline);
  return engine == EmuEngine::kThread ? *threaded : *inline_engine;
}

struct Loop {
  QueuePair* qp = nullptr;
  IoVec buffer;
  std::uint64_t next_lba = 0;
  std::uint64_t completed = 0;
  std::uint64_t errors = 0;

  Status submit() {
    if (qp == nullptr) return {};  // draining
    next_lba = (next_lba + 1) & (kNamespaceBlocks - 1);
    return qp->read(1, next_lba, 1, buffer, &Loop::on_complete, this);
  }
  static void on_complete(void* ctx, const IoCompletion& c) {
    auto* self = static_cast<Loop*>(ctx);
    ++self->completed;
    if (!c.status.ok()) ++self->errors;
    (void)self->submit();  // a slot just freed: never queue-full
  }
};

template <EmuEngine kEngine>
void qd(benchmark::State& state) {
  const auto depth = static_cast<std::uint32_t>(state.range(0));
  EmuController& ctrl = controller(kEngine);
  QueuePairOptions o;
  o.name = "bench-qd" + std::to_string(depth);
  o.sq_entries = kSqEntries;
  o.delayed_doorbell = true;
  auto qp = ctrl.create_io_qpair(o).value();
  auto buffer = ctrl.dma_alloc(kBlockBytes).value();
  Loop loop{qp.get(), buffer.whole()};
  for (std::uint32_t i = 0; i < depth; ++i) NVMUX_ASSERT(loop.submit().ok(), "submit at depth {}", i);
  std::uint64_t start = monotonic_ns();
  std::uint64_t cpu_start = thread_cpu_ns();
  std::uint64_t first_completed = loop.completed;
  for (auto _ : state) {
    auto r = qp->process_completions(kMaxCompletionsPerPoll);
    benchmark::DoNotOptimize(r);
  }
  std::uint64_t elapsed = monotonic_ns() - start;
  std::uint64_t cpu = thread_cpu_ns() - cpu_start;
  loop.completed -= first_completed;
  state.SetItemsProcessed(static_cast<std::int64_t>(loop.completed));
  state.counters["IOPS"] = benchmark::Counter(static_cast<double>(loop.completed), benchmark::Counter::kIsRate);
  double n = loop.completed == 0 ? 1.0 : static_cast<double>(loop.completed);
  state.counters["ns_per_io"] = static_cast<double>(elapsed) / n;
  // CPU the driver thread spent per I/O: with the inline engine that is the whole software path.
  state.counters["driver_cpu_ns_per_io"] = static_cast<double>(cpu) / n;
  if (loop.errors != 0) state.SkipWithError("I/O errors");
  // Drain before the qpair goes away (its destructor would abort the rest).
  loop.qp = nullptr;  // stop resubmitting
  while (qp->outstanding() != 0) (void)qp->process_completions();
}

}  // namespace

BENCHMARK(qd<EmuEngine::kThread>)->Name("qd")->Arg(1)->Arg(32)->Arg(128)->UseRealTime();
// Diagnostic: the device stepped inside process_completions on the driver's core, so the CPU time
// per I/O is the whole software path (driver + device) on one core.
BENCHMARK(qd<EmuEngine::kInline>)->Name("qd_inline")->Arg(128)->UseRealTime();

int main(int argc, char** argv) {
  nvmux::bench::BenchArgs args;
  if (!nvmux::bench::init_bench(argc, argv, args)) return 1;
  const std::string& json_path = args.json_path;

  Status pinned = pin_current_thread(kDriverCore);
  std::printf(
      "nvme_bench: emu null namespace (%u-byte blocks), 4 KiB reads, SQ/CQ %u entries, delayed doorbells, "
      "%u completions per poll, driver core %d%s, device core %d, %s, load average %s\n",
      kBlockBytes, kSqEntries, kMaxCompletionsPerPoll, kDriverCore, pinned.ok() ? "" : " (not pinned)", kDeviceCore,
      args.repetitions.c_str(), load_average().c_str());
  (void)controller(EmuEngine::kThread);
  nvmux::bench::MedianReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  struct Row {
    double iops = 0;
    double ns_per_io = 0;
    double driver_cpu_ns_per_io = 0;
  };
  std::map<std::string, Row> rows;
  for (const auto& [name, m] : reporter.medians) {
    double iops = m.counter("IOPS");
    rows[name] = Row{iops, iops > 0 ? 1e9 / iops : 0, m.counter("driver_cpu_ns_per_io")};
  }
  benchmark::Shutdown();

  std::printf("\nSummary (medians; load average now %s)\n  %-14s %12s %12s %22s\n", load_average().c_str(), "benchmark",
              "IOPS", "ns per I/O", "driver CPU ns per I/O");
  nlohmann::json out;
  out["params"] = {
      {"backend", "emu"},           {"namespace", "null"},        {"io_bytes", kBlockBytes},
      {"sq_entries", kSqEntries},   {"delayed_doorbell", true},   {"completions_per_poll", kMaxCompletionsPerPoll},
      {"driver_core", kDriverCore}, {"device_core", kDeviceCore}, {"repetitions", args.repetitions}};
  for (auto& [name, row] : rows) {
    std::printf("  %-14s %12.0f %12.1f %22.1f\n", name.c_str(), row.iops, row.ns_per_io, row.driver_cpu_ns_per_io);
    out["medians"][name] = {
        {"iops", row.iops}, {"ns_per_io", row.ns_per_io}, {"driver_cpu_ns_per_io", row.driver_cpu_ns_per_io}};
  }
  double qd128 = rows.count("qd/128") ? rows["qd/128"].iops : 0;
  std::printf("\n  target: >= %.1f M IOPS at depth 128 -> measured %.2f M IOPS (%s)\n", kTargetIopsAtQd128 / 1e6,
              qd128 / 1e6, qd128 >= kTargetIopsAtQd128 ? "met" : "below target");
  out["target"] = {{"iops_at_qd128", kTargetIopsAtQd128}, {"measured", qd128}, {"met", qd128 >= kTargetIopsAtQd128}};
  if (!json_path.empty()) {
    std::ofstream(json_path) << out.dump(2) << "\n";
    std::printf("\nwrote %s\n", json_path.c_str());
  }
  return 0;
}
