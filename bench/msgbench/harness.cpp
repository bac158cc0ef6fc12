// The harness: threads, clock, bounds and accounting of every point. See msgbench.hpp.
//
// One point, on the harness thread:
//
//   mode.start()                     consumers run (the mode's threads or its runtime)
//   P producer threads               unpinned plain std::threads; attach, then wait for `go`
//   go ── warm-up ── window ──┐      the window is sampled every kSampleMs; no progress for
//                             │      stall_after_s cuts it short (stalled)
//                             stop   producers leave their send loops (retry loops check stop)
//   join producers                   bounded by kProducerExitGraceS, else stalled
//   drain                            until executed == sent, bounded by drain_timeout_s
//   mode.stop()                      consumers joined, queues freed
//
// Producer p sends its k-th message to consumer (p + k) % C, stamped with the TSC just before
// the send call and a sequence number per (producer, consumer) pair.

#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>

#include "mode.hpp"
#include "msgbench.hpp"
#include "nvmux/common/log.hpp"
#if defined(NVMUX_MSGBENCH_HAVE_DPDK)
#include "dpdk_env.hpp"
#endif

namespace nvmux::msgbench {

// ---- pieces of mode.hpp ----

ConsumerSink::ConsumerSink(int producers, std::uint64_t work_ticks)
    : work_ticks_(work_ticks), next_seq_(static_cast<std::size_t>(producers), 0) {}

void execute_on_sink(ConsumerSink* sink, const Stamp& stamp) { sink->execute(stamp); }

void Backoff::pause() {
  if (++spins_ <= kSpinsBeforeYield) {
    cpu_relax();
  } else {
    std::this_thread::yield();
  }
}

void PolledConsumers::start(int consumers, PollFn poll, void* ctx) {
  stop_.store(false, std::memory_order_relaxed);  // no thread runs yet
  for (int c = 0; c < consumers; ++c) {
    threads_.emplace_back([this, c, poll, ctx] {
      (void)pin_current_thread(c % online_cores());
      set_current_thread_name("msgb-cons-" + std::to_string(c));
      // acquire: pairs with stop()'s release so the final poll sees every message enqueued before
      // the producers were joined.
      while (!stop_.load(std::memory_order_acquire)) {
        if (poll(ctx, c) == 0) cpu_relax();
      }
      while (poll(ctx, c) != 0) {
      }
    });
  }
}

void PolledConsumers::stop() {
  stop_.store(true, std::memory_order_release);  // see start()
  for (auto& t : threads_) t.join();
  threads_.clear();
}

// ---- catalogue ----

namespace {

constexpr int kMaxProducers = 1024;
constexpr int kMaxConsumers = 64;
constexpr int kSampleMs = 10;
constexpr double kProducerExitGraceS = 2.0;
// Past this, producers still inside the design's send call are abandoned with the point (see
// wait_for_exit): with hundreds of producers spinning in DPDK's ring tail wait on a few cores the
// convoy unwinds one scheduler time slice per producer, which took minutes.
constexpr double kProducerExitLimitS = 10.0;
constexpr double kAttachTimeoutS = 10.0;
// With busy work per message the collapse floor (PointOptions) is at most this fraction of what
// the consumers could execute from the work alone.
constexpr double kCollapseFloorFraction = 0.01;

#if defined(NVMUX_MSGBENCH_HAVE_DPDK)
constexpr bool kHaveDpdk = true;
#else
constexpr bool kHaveDpdk = false;
#endif
#if defined(NVMUX_MSGBENCH_HAVE_RUNTIME)
constexpr bool kHaveRuntime = true;
#else
constexpr bool kHaveRuntime = false;
#endif

const char* const kNoDpdk =
    "DPDK (pkg-config libdpdk) was not found when nvmux was configured; run scripts/setup-deps "
    "(it installs libdpdk-dev) and rebuild";
const char* const kNoRuntime =
    "the nvmux runtime (CMake target nvmux_runtime, src/runtime) is not part of this build; the lanes "
    "modes need it";

std::unique_ptr<Mode> make_mode(const std::string& name) {
  if (name == "mutex") return make_mutex_mode();
  if (name == "moodycamel") return make_moodycamel_mode();
#if defined(NVMUX_MSGBENCH_HAVE_DPDK)
  if (name == "spdk") return make_spdk_mode(false);
  if (name == "spdk-rts") return make_spdk_mode(true);
#endif
#if defined(NVMUX_MSGBENCH_HAVE_RUNTIME)
  if (name == "lanes") return make_lanes_mode(false);
  if (name == "lanes-dispatcher") return make_lanes_mode(true);
#endif
  return nullptr;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// The signal that asked the run to stop early, 0 while none did (PointOptions::interrupt).
int interrupt_signal(const PointOptions& options) {
  return options.interrupt != nullptr ? options.interrupt->load(std::memory_order_relaxed) : 0;  // a flag
}

// Marks the point interrupted when a stop was asked for; returns whether one was.
bool check_interrupt(const PointOptions& options, PointResult& r) {
  if (interrupt_signal(options) != 0) r.interrupted = true;
  return r.interrupted;
}

// What producer thread p leaves behind; written by that thread only, read after it is joined
// (or, for `exited`, while it runs).
struct alignas(128) ProducerRecord {
  std::uint64_t sent = 0;
  std::vector<std::uint32_t> sent_to;  // per consumer: next sequence number = messages sent
  std::atomic<bool> attached{false};
  std::atomic<bool> exited{false};
};

using Sinks = std::vector<std::unique_ptr<ConsumerSink>>;
using Records = std::vector<std::unique_ptr<ProducerRecord>>;

// The measured window, as executed-message counts and process CPU time at its two ends.
struct Window {
  std::uint64_t exec0 = 0;
  std::uint64_t exec1 = 0;
  double cpu0 = 0;
  double cpu1 = 0;
};

Status check_point_shape(int producers, int consumers, const PointOptions& options) {
  if (producers < 1 || producers > kMaxProducers) {
    return Status::error(StatusCode::kInvalidArgument, "producers {} outside 1..{}", producers, kMaxProducers);
  }
  if (consumers < 1 || consumers > kMaxConsumers) {
    return Status::error(StatusCode::kInvalidArgument, "consumers {} outside 1..{}", consumers, kMaxConsumers);
  }
  if (!(options.duration_s > 0) || options.duration_s > 3600) {
    return Status::error(StatusCode::kInvalidArgument, "duration {} s outside (0, 3600]", options.duration_s);
  }
  return {};
}

// Marks the point stalled; the first reason given is the one reported.
void mark_stalled(PointResult& r, std::string why) {
  if (!r.stalled) r.stall_reason = std::move(why);
  r.stalled = true;
}

Sinks make_sinks(int producers, int consumers, const PointOptions& options) {
  std::uint64_t work_ticks = options.work_ns != 0 ? std::max<std::uint64_t>(1, ns_to_tsc(options.work_ns)) : 0;
  Sinks sinks;
  for (int c = 0; c < consumers; ++c) sinks.push_back(std::make_unique<ConsumerSink>(producers, work_ticks));
  return sinks;
}

std::uint64_t executed_by(const Sinks& sinks) {
  std::uint64_t n = 0;
  for (const auto& s : sinks) n += s->executed();
  return n;
}

bool all_attached(const Records& records) {
  return std::all_of(records.begin(), records.end(),
                     [](const auto& rec) { return rec->attached.load(std::memory_order_acquire); });
}

bool all_exited(const Records& records) {
  return std::all_of(records.begin(), records.end(),
                     [](const auto& rec) { return rec->exited.load(std::memory_order_acquire); });
}

// Producer thread p: attach, wait for `go`, send round-robin over the consumers until `stop`, then
// leave its counts in `rec`.
void run_producer(Mode& mode, int p, int consumers, ProducerRecord& rec, const std::atomic<bool>& go,
                  const std::atomic<bool>& stop) {
  (void)unpin_current_thread();  // plain pthreads: the scheduler places them
  set_current_thread_name("msgb-prod-" + std::to_string(p));
  std::unique_ptr<ProducerHandle> handle = mode.attach_producer(p);
  rec.attached.store(true, std::memory_order_release);  // the harness waits for every attach
  // acquire: pairs with the harness's release of go/stop.
  while (!go.load(std::memory_order_acquire) && !stop.load(std::memory_order_acquire)) std::this_thread::yield();
  // The counters live in this thread's own memory while it sends (its own malloc arena), and
  // go to the record at the end: a heap block the harness allocated could share a cache line
  // with a mode's read-mostly data and slow every send down by false sharing.
  std::vector<std::uint32_t> sent_to(static_cast<std::size_t>(consumers), 0);
  std::uint64_t sent = 0;
  auto c = static_cast<std::size_t>(p % consumers);
  while (!stop.load(std::memory_order_relaxed)) {  // a flag; the join orders what we wrote
    Stamp stamp{read_tsc(), static_cast<std::uint32_t>(p), sent_to[c]};
    if (!handle->send(static_cast<int>(c), stamp, stop)) break;
    ++sent_to[c];
    ++sent;
    if (++c == static_cast<std::size_t>(consumers)) c = 0;
  }
  rec.sent_to = std::move(sent_to);
  rec.sent = sent;
  handle.reset();
  rec.exited.store(true, std::memory_order_release);  // sampled by the harness's exit wait
}

std::vector<std::thread> start_producers(Mode& mode, int producers, int consumers, Records& records,
                                         const std::atomic<bool>& go, const std::atomic<bool>& stop) {
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    records.push_back(std::make_unique<ProducerRecord>());
    ProducerRecord* rec = records.back().get();
    rec->sent_to.assign(static_cast<std::size_t>(consumers), 0);  // what a thread that never sends leaves
    threads.emplace_back([&mode, p, consumers, rec, &go, &stop] { run_producer(mode, p, consumers, *rec, go, stop); });
  }
  return threads;
}

void wait_for_attach(const Records& records, const PointOptions& options, PointResult& r) {
  auto attach_start = std::chrono::steady_clock::now();
  while (!all_attached(records) && !check_interrupt(options, r)) {
    if (seconds_since(attach_start) > kAttachTimeoutS) {
      mark_stalled(r, fmt::format("producers did not attach within {} s", kAttachTimeoutS));
      break;
    }
    sleep_ms(1);
  }
}

// Samples progress every kSampleMs for the window's duration; no progress for stall_after_s cuts it
// short, progress only in bursts marks it collapsed. Sets r.seconds.
Window measure_window(const Sinks& sinks, const PointOptions& options, PointResult& r) {
  Window w;
  auto t0 = std::chrono::steady_clock::now();
  w.cpu0 = process_cpu_seconds();
  w.exec0 = executed_by(sinks);
  std::uint64_t last_exec = w.exec0;
  auto last_progress = t0;
  double longest_gap_s = 0;
  while (!r.stalled && !check_interrupt(options, r) && seconds_since(t0) < options.duration_s) {
    sleep_ms(std::min<int>(kSampleMs, std::max(1, static_cast<int>((options.duration_s - seconds_since(t0)) * 1000))));
    std::uint64_t e = executed_by(sinks);
    if (e != last_exec) {
      last_exec = e;
      last_progress = std::chrono::steady_clock::now();
    } else {
      longest_gap_s = std::max(longest_gap_s, seconds_since(last_progress));
      if (longest_gap_s >= options.stall_after_s) {
        mark_stalled(r, fmt::format("no message executed for {:.1f} s; cut off {:.1f} s into the window",
                                    options.stall_after_s, seconds_since(t0)));
      }
    }
  }
  if (longest_gap_s >= options.stall_gap_s) {
    // Collapse: progress only in bursts between long stretches where nothing runs.
    mark_stalled(r, fmt::format("collapsed: no message executed for {:.2f} s at a stretch (limit {:.2f} s)",
                                longest_gap_s, options.stall_gap_s));
  }
  w.exec1 = executed_by(sinks);
  w.cpu1 = process_cpu_seconds();
  r.seconds = seconds_since(t0);
  return w;
}

// Collapse: progress so slow that the design has stopped working for this load.
void check_collapse_floor(const Window& w, int consumers, const PointOptions& options, PointResult& r) {
  if (!r.stalled && !r.interrupted && r.seconds > 0) {  // a window cut short by a signal is no measure
    double floor = options.collapse_floor_msgs_per_sec;
    if (options.work_ns != 0) {
      floor = std::min(floor, kCollapseFloorFraction * consumers * 1e9 / static_cast<double>(options.work_ns));
    }
    double rate = static_cast<double>(w.exec1 - w.exec0) / r.seconds;
    if (rate < floor) {
      mark_stalled(r, fmt::format("collapsed: {:.0f} msgs/s, below the floor of {:.0f} msgs/s", rate, floor));
    }
  }
}

// Returns false when producers were still inside the send call kProducerExitLimitS after the
// window: the point is then abandoned (its threads cannot be joined in a bounded time).
bool wait_for_exit(const Records& records, PointResult& r) {
  auto stop_time = std::chrono::steady_clock::now();
  bool grace_reported = false;
  while (!all_exited(records)) {
    if (!grace_reported && seconds_since(stop_time) > kProducerExitGraceS) {
      // They are inside the design's own send call (a ring's tail wait, a blocked send_msg); the
      // consumers keep running, so they get out; the point is marked, and we keep waiting.
      mark_stalled(r, fmt::format("producers still inside the send call {} s after the deadline", kProducerExitGraceS));
      grace_reported = true;
    }
    if (seconds_since(stop_time) > kProducerExitLimitS) {
      const auto inside = std::count_if(records.begin(), records.end(),
                                        [](const auto& rec) { return !rec->exited.load(std::memory_order_acquire); });
      r.stall_reason = fmt::format(
          "{} of {} producers still inside the send call {} s after the deadline: point abandoned, sweep ended", inside,
          records.size(), kProducerExitLimitS);
      r.abandoned = true;
      return false;
    }
    sleep_ms(1);
  }
  return true;
}

// Waits, up to drain_timeout_s, for the consumers to execute everything the producers sent.
void drain(const Sinks& sinks, const PointOptions& options, PointResult& r) {
  auto drain_start = std::chrono::steady_clock::now();
  while (executed_by(sinks) < r.sent && seconds_since(drain_start) < options.drain_timeout_s) sleep_ms(1);
  if (executed_by(sinks) < r.sent) {
    mark_stalled(r, fmt::format("consumers left {} messages unexecuted {} s after the producers stopped",
                                r.sent - executed_by(sinks), options.drain_timeout_s));
  }
}

// The point's numbers from the window, the sinks and the producers' records.
void tally(const Window& w, const Sinks& sinks, const Records& records, PointResult& r) {
  r.executed = executed_by(sinks);
  r.lost = r.sent > r.executed ? r.sent - r.executed : 0;
  r.window_msgs = w.exec1 - w.exec0;
  r.msgs_per_sec = r.seconds > 0 ? static_cast<double>(r.window_msgs) / r.seconds : 0;
  r.cpu_ms_per_million = r.window_msgs > 0 ? (w.cpu1 - w.cpu0) * 1e3 / (static_cast<double>(r.window_msgs) / 1e6) : 0;
  Histogram latency;
  for (const auto& s : sinks) {
    latency.merge(s->latency_ticks());
    r.out_of_order += s->out_of_order();
  }
  r.p50_ns = tsc_to_ns(latency.percentile(50));
  r.p99_ns = tsc_to_ns(latency.percentile(99));
  r.p999_ns = tsc_to_ns(latency.percentile(99.9));
  for (int p = 0; p < r.producers; ++p) {
    for (int c = 0; c < r.consumers; ++c) {
      if (records[static_cast<std::size_t>(p)]->sent_to[static_cast<std::size_t>(c)] !=
          sinks[static_cast<std::size_t>(c)]->received_from(p)) {
        ++r.unbalanced_pairs;
      }
    }
  }
}

}  // namespace

const std::vector<ModeInfo>& mode_catalog() {
  static const std::vector<ModeInfo> catalog{
      {"spdk", "SPDK spdk_thread_send_msg on DPDK: global rte_mempool (no cache) + MP/SC rte_ring per consumer",
       kHaveDpdk, kHaveDpdk ? "" : kNoDpdk, true},
      {"spdk-rts", "the same with DPDK's relaxed-tail-sync ring and ring_mt_rts mempool ops", kHaveDpdk,
       kHaveDpdk ? "" : kNoDpdk, true},
      {"mutex", "std::mutex + std::deque inbox per consumer (naive baseline)", true, "", false},
      {"moodycamel", "moodycamel::ConcurrentQueue per consumer with producer tokens (per-producer sub-queues)", true,
       "", false},
      {"lanes", "nvmux send_msg: one SPSC lane per (producer, thread), drained by the target's inbox poller",
       kHaveRuntime, kHaveRuntime ? "" : kNoRuntime, false},
      {"lanes-dispatcher", "nvmux send_msg with the dedicated messaging thread (scheme 2)", kHaveRuntime,
       kHaveRuntime ? "" : kNoRuntime, false},
  };
  return catalog;
}

std::vector<std::string> built_modes() {
  std::vector<std::string> names;
  for (const auto& m : mode_catalog()) {
    if (m.built) names.push_back(m.name);
  }
  return names;
}

Status check_modes(const std::vector<std::string>& modes) {
  if (modes.empty()) return Status::error(StatusCode::kInvalidArgument, "no modes given");
  for (const auto& name : modes) {
    auto it =
        std::find_if(mode_catalog().begin(), mode_catalog().end(), [&](const ModeInfo& m) { return m.name == name; });
    if (it == mode_catalog().end()) {
      std::vector<std::string> known;
      for (const auto& m : mode_catalog()) known.push_back(m.name);
      return Status::error(StatusCode::kInvalidArgument, "unknown mode '{}' (known: {})", name, fmt::join(known, ", "));
    }
    if (!it->built) {
      return Status::error(StatusCode::kUnsupported, "mode '{}' is not built into this nvmux-msgbench: {}", name,
                           it->not_built_why);
    }
  }
  return {};
}

Status check_sweep(const SweepOptions& options) {
  NVMUX_RETURN_IF_ERROR(check_modes(options.modes));
  if (options.producers.empty() || options.consumers.empty()) {
    return Status::error(StatusCode::kInvalidArgument, "--producers and --consumers need at least one count each");
  }
  if (options.reps < 1 || options.reps > kMaxReps) {
    return Status::error(StatusCode::kInvalidArgument, "--reps {} outside 1..{}", options.reps, kMaxReps);
  }
  const int most_consumers = *std::max_element(options.consumers.begin(), options.consumers.end());
  for (const auto& name : options.modes) {
    const bool uses_dpdk = std::any_of(mode_catalog().begin(), mode_catalog().end(),
                                       [&](const ModeInfo& m) { return m.name == name && m.uses_dpdk; });
    if (uses_dpdk && most_consumers > online_cores()) {
      // SPDK runs one reactor per core. Two consumers sharing a core each spin in the message
      // pool's multi-producer tail wait while the other, preempted, holds the slot: every put
      // can cost a scheduler time slice, and stopping a point took minutes.
      return Status::error(StatusCode::kInvalidArgument,
                           "--consumers {} with mode {}: at most one consumer per core ({} cores here), as SPDK "
                           "runs one reactor per core",
                           most_consumers, name, online_cores());
    }
  }
  return {};
}

// ---- one point ----

Result<PointResult> run_point(const std::string& mode_name, int producers, int consumers, const PointOptions& options) {
  NVMUX_RETURN_IF_ERROR(check_modes({mode_name}));
  std::unique_ptr<Mode> mode = make_mode(mode_name);
  NVMUX_ASSERT(mode != nullptr, "mode '{}' is in the catalogue as built but has no factory", mode_name);
  return run_point_with(std::move(mode), mode_name, producers, consumers, options);
}

// What the threads of one point share. Heap-allocated so that an abandoned point (producers that
// cannot be joined in a bounded time) can leave it to them: it is then never freed.
struct PointState {
  std::unique_ptr<Mode> mode;
  Sinks sinks;
  Records records;
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
};

Result<PointResult> run_point_with(std::unique_ptr<Mode> mode, const std::string& mode_name, int producers,
                                   int consumers, const PointOptions& options) {
  NVMUX_ASSERT(mode != nullptr, "run_point_with needs a mode");
  NVMUX_RETURN_IF_ERROR(check_point_shape(producers, consumers, options));

  auto st = std::make_unique<PointState>();
  st->mode = std::move(mode);
  st->sinks = make_sinks(producers, consumers, options);
  ModeConfig config{producers, consumers, options.lane_capacity, {}};
  for (auto& s : st->sinks) config.sinks.push_back(s.get());
  if (Status s = st->mode->start(config); !s.ok()) {
    (void)st->mode->stop();
    return s;
  }

  PointResult r;
  r.mode = mode_name;
  r.producers = producers;
  r.consumers = consumers;

  st->threads = start_producers(*st->mode, producers, consumers, st->records, st->go, st->stop);
  wait_for_attach(st->records, options, r);

  st->go.store(true, std::memory_order_release);  // producers start
  for (auto warm = std::chrono::steady_clock::now();
       !r.stalled && !check_interrupt(options, r) && seconds_since(warm) < options.warmup_s;) {
    sleep_ms(1);
  }
  for (auto& s : st->sinks) s->set_recording(true);
  const Window window = measure_window(st->sinks, options, r);
  check_collapse_floor(window, consumers, options, r);
  for (auto& s : st->sinks) s->set_recording(false);
  st->stop.store(true, std::memory_order_release);  // producers leave their loops

  if (!wait_for_exit(st->records, r)) {
    // Abandoned: the stuck producers still need the mode's consumers to get out, so nothing is
    // stopped or freed; the threads are detached and the state is left to them (a deliberate
    // leak). The window's numbers stand; the caller ends the sweep.
    for (auto& t : st->threads) t.detach();
    r.window_msgs = window.exec1 - window.exec0;
    r.msgs_per_sec = r.seconds > 0 ? static_cast<double>(r.window_msgs) / r.seconds : 0;
    r.executed = executed_by(st->sinks);
    (void)st.release();  // NOLINT(bugprone-unused-return-value): owned by the detached threads now
    return r;
  }
  for (auto& t : st->threads) t.join();
  for (auto& rec : st->records) r.sent += rec->sent;

  drain(st->sinks, options, r);
  // A design that cannot stop cleanly (the runtime dropping what it could not run, say) is a result
  // of this point, not a reason to abandon the sweep: its loss shows in `lost`.
  if (Status stopped = st->mode->stop(); !stopped.ok()) mark_stalled(r, "stopping the mode: " + stopped.to_string());
  r.counters = st->mode->counters();
  st->mode.reset();

  tally(window, st->sinks, st->records, r);
  return r;
}

// ---- sweep ----

Result<SweepReport> run_sweep(const SweepOptions& options, const std::function<void(const Progress&)>& progress) {
  NVMUX_RETURN_IF_ERROR(check_sweep(options));
  SweepReport report;
  report.options = options;
  report.machine = machine_info();
  const std::size_t mode_count = options.modes.size();
  std::size_t total =
      mode_count * options.producers.size() * options.consumers.size() * static_cast<std::size_t>(options.reps);
  std::size_t index = 0;
  for (int consumers : options.consumers) {
    for (int producers : options.producers) {
      for (int rep = 0; rep < options.reps; ++rep) {
        for (std::size_t k = 0; k < mode_count; ++k) {
          // Each repetition starts one mode further: no mode always runs first (or right after
          // the same neighbour).
          const std::string& mode = options.modes[(k + static_cast<std::size_t>(rep)) % mode_count];
          report.interrupted_by = interrupt_signal(options.point);
          if (report.interrupted_by != 0) return report;  // the points that ran, the last one cut short
          Progress pr{++index, total, &mode, producers, consumers, rep, nullptr};
          if (progress) progress(pr);
          auto result = run_point(mode, producers, consumers, options.point);
          if (!result.ok()) {
            return Status(result.status().code(),
                          fmt::format("{} with {} producers and {} consumers (repetition {}): {}", mode, producers,
                                      consumers, rep + 1, result.status().message()));
          }
          report.results.push_back(std::move(result).value());
          report.results.back().rep = rep;
          pr.finished = &report.results.back();
          if (progress) progress(pr);
          if (report.results.back().abandoned) {  // its threads still run: later points would not measure
            report.abandoned = true;
            return report;
          }
        }
      }
    }
  }
  report.interrupted_by = interrupt_signal(options.point);  // a signal during the last point
  return report;
}

// ---- environment ----

nlohmann::json machine_info() {
  nlohmann::json m;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  m["hostname"] = host;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      m["cpu"] = colon == std::string::npos ? line : line.substr(colon + 2);
      break;
    }
  }
  m["online_cores"] = online_cores();
  utsname u{};
  if (uname(&u) == 0) m["kernel"] = std::string(u.sysname) + " " + u.release;
  m["tsc_hz"] = tsc_hz();
  m["compiler"] = std::string("g++ ") + __VERSION__;
#if defined(NVMUX_MSGBENCH_HAVE_DPDK)
  m["dpdk"] = dpdk_version_string();
#else
  m["dpdk"] = nullptr;
#endif
  m["nvmux_runtime"] = kHaveRuntime;
  std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  m["date_utc"] = stamp;
  return m;
}

void release_environment(bool threads_left) {
#if defined(NVMUX_MSGBENCH_HAVE_DPDK)
  if (threads_left) {
    remove_dpdk_runtime_dir();  // rte_eal_cleanup() would free what they still use
  } else {
    shutdown_dpdk_eal();
  }
#else
  (void)threads_left;
#endif
}

}  // namespace nvmux::msgbench
