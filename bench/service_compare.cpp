// service_compare: nvmuxd's client path against its peers, side by side in one run.
//
// Every contender reads 4 KiB blocks from an emu `null` namespace (or, for the bare ring, echoes one
// word), for the same duration, one client, alternating contenders within each repetition:
//
//   nvmuxd poll d1/d32   libnvmux_client against `nvmuxd --ns null:size=1G --emu-engine inline
//                        --cores D`, the client polling its CQ ring (Queue::poll)
//   nvmuxd wait d1       the same, the client sleeping in Queue::wait between requests
//   sem-peer d1/d32      the peer SPDK users are told to build: request slots in POSIX shared memory
//                        (shm_open + mmap) and process-shared POSIX semaphores, one sem_post per
//                        request each way, to a forked server that answers a null read
//   ring RTT d1          one word round trip through two nvmux SPSC rings in a memfd, to an echo
//                        process that spins: the floor of any cross-process ring protocol
//   in-process d1/d32    nvmux-perf on the same namespace and engine (no service in between)
//
// The daemon's owner, the sem server, the echo process and nvmux-perf's owner run on core D
// (--daemon-core, 0); this process, the client, on core C (--client-core, 1).
//
// Prints medians over the repetitions with their min-max spread, then the targets as
// ratios with MET / NOT MET. Every point is bounded in time; a contender that stops answering is
// cut off and reports what it completed.
//
//   service_compare                       # 2 s per point, 3 repetitions
//   service_compare --quick               # 0.3 s, 1 repetition (CI smoke)
//   service_compare --json out.json --duration 5 --reps 5

#include <fcntl.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "nvmux/common/cpu.hpp"
#include "nvmux/common/histogram.hpp"
#include "nvmux/common/shm.hpp"
#include "nvmux/ring/spsc_ring.hpp"
#include "nvmux/service/client.hpp"

namespace {

using nvmux::Histogram;
using nvmux::monotonic_ns;
using nvmux::read_tsc;
using nvmux::tsc_to_ns;

constexpr std::uint32_t kBlockBytes = 4096;
constexpr std::uint64_t kNamespaceBlocks = (1ull << 30) / kBlockBytes;  // null:size=1G
constexpr std::uint64_t kGraceNs =
    5'000'000'000ull;  // a point that has not finished this long after its end is cut off

// ---------------------------------------------------------------------------------------------
// Children: every process we start, killed on exit, on SIGINT/SIGTERM, and (PR_SET_PDEATHSIG) if
// we die without cleaning up.

constexpr int kMaxChildren = 16;
std::atomic<pid_t> g_children[kMaxChildren];
std::atomic<pid_t> g_daemon{0};
std::atomic<bool> g_interrupted{false};
char g_daemon_log[256];  // temporary files, unlinked by the signal handler too
char g_perf_json[256];
char g_perf_log[256];

void add_child(pid_t pid) {
  for (auto& c : g_children) {
    pid_t empty = 0;
    if (c.compare_exchange_strong(empty, pid)) return;
  }
}

void reap_child(pid_t pid, int sig) {
  if (pid <= 0) return;
  ::kill(pid, sig);
  int status = 0;
  ::waitpid(pid, &status, 0);
  for (auto& c : g_children) {
    pid_t expected = pid;
    c.compare_exchange_strong(expected, 0);
  }
}

void kill_all_children() {
  for (auto& c : g_children) {
    pid_t pid = c.exchange(0);
    if (pid > 0) {
      // The daemon drains and removes its socket on SIGTERM; the others are ours and stateless.
      ::kill(pid, pid == g_daemon.load() ? SIGTERM : SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
}

void on_signal(int) {
  g_interrupted.store(true);
  kill_all_children();
  for (const char* path : {g_daemon_log, g_perf_json, g_perf_log}) {
    if (path[0] != 0) ::unlink(path);
  }
  static const char msg[] = "service_compare: interrupted; children stopped\n";
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
  ::_exit(130);
}

// fork() whose child dies with us; `core` >= 0 pins the child.
pid_t fork_child(int core, int death_signal = SIGKILL) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    std::exit(1);
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, death_signal);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    if (core >= 0) (void)nvmux::pin_current_thread(core);
    return 0;
  }
  add_child(pid);
  return pid;
}

// ---------------------------------------------------------------------------------------------
// Results

struct PointResult {
  double iops = 0;  // requests (or round trips) completed per second
  double p50_us = 0;
  double p99_us = 0;
  std::uint64_t ios = 0;
  double seconds = 0;
  bool cut_off = false;  // the contender stopped answering; what it completed is reported
  std::string note;
};

PointResult finish(const Histogram& ticks, std::uint64_t ios, std::uint64_t start_ns, bool cut_off) {
  PointResult r;
  r.ios = ios;
  r.seconds = static_cast<double>(monotonic_ns() - start_ns) / 1e9;
  r.iops = r.seconds > 0 ? static_cast<double>(ios) / r.seconds : 0;
  r.p50_us = static_cast<double>(tsc_to_ns(ticks.percentile(50))) / 1000.0;
  r.p99_us = static_cast<double>(tsc_to_ns(ticks.percentile(99))) / 1000.0;
  r.cut_off = cut_off;
  return r;
}

std::uint64_t next_lba(std::uint64_t& state) {  // xorshift64: random 4 KiB blocks, cheap
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state % kNamespaceBlocks;
}

struct Options {
  double duration = 2.0;
  int reps = 3;
  bool quick = false;
  std::string json_path;
  std::string nvmuxd;
  std::string nvmux_perf;
  int daemon_core = 0;
  int client_core = 1;
  std::string socket;
};

// ---------------------------------------------------------------------------------------------
// 1. nvmuxd through libnvmux_client

struct ServiceSlot {
  void* buf = nullptr;
  std::uint64_t submitted = 0;  // tsc
  bool busy = false;
  struct ServiceRun* run = nullptr;
};

struct ServiceRun {
  Histogram latency;
  std::uint64_t completed = 0;
  std::uint64_t errors = 0;
};

void on_service_done(void* ctx, const nvmux_cpl* cpl) {
  auto* s = static_cast<ServiceSlot*>(ctx);
  s->run->latency.record(read_tsc() - s->submitted);
  s->busy = false;
  if (cpl->status != 0) ++s->run->errors;
  ++s->run->completed;
}

PointResult run_service(const Options& o, std::uint32_t depth, bool sleeping) {
  PointResult failed;
  auto client = nvmux::service::Client::connect(o.socket);
  if (!client.ok()) {
    failed.note = client.status().to_string();
    return failed;
  }
  auto queue = (*client)->create_queue(depth);
  if (!queue.ok()) {
    failed.note = queue.status().to_string();
    return failed;
  }
  nvmux::service::Queue& q = **queue;
  ServiceRun run;
  std::vector<ServiceSlot> slots(depth);
  for (auto& s : slots) {
    s.buf = (*client)->buf_alloc(kBlockBytes);
    s.run = &run;
  }
  std::uint64_t rng = 0x9e3779b97f4a7c15ull;
  auto submit_free = [&] {
    for (auto& s : slots) {
      if (s.busy) continue;
      s.submitted = read_tsc();
      if (!q.read(1, next_lba(rng), 1, s.buf, on_service_done, &s).ok()) return false;
      s.busy = true;
    }
    return true;
  };
  // Warm up (first touches, the owner waking from idle) outside the measurement.
  const std::uint64_t warm_end = monotonic_ns() + 50'000'000ull;
  while (monotonic_ns() < warm_end) {
    if (!submit_free() || !q.poll().ok()) break;
  }
  const std::uint64_t start = monotonic_ns();
  while (q.in_flight() != 0 && monotonic_ns() < start + kGraceNs) (void)q.poll();
  run.latency.reset();
  run.completed = 0;
  const std::uint64_t begin = monotonic_ns();
  const std::uint64_t end = begin + static_cast<std::uint64_t>(o.duration * 1e9);
  bool cut_off = false;
  while (true) {
    std::uint64_t now = monotonic_ns();
    if (now >= end) break;
    if (!submit_free()) break;
    auto r = sleeping ? q.wait(100) : q.poll();
    if (!r.ok()) {
      failed.note = r.status().to_string();
      cut_off = true;
      break;
    }
  }
  PointResult result = finish(run.latency, run.completed, begin, cut_off);
  while (q.in_flight() != 0 && monotonic_ns() < end + kGraceNs) (void)q.poll();
  if (q.in_flight() != 0) result.cut_off = true;
  if (run.errors != 0) result.note = std::to_string(run.errors) + " I/O errors";
  if (!failed.note.empty()) result.note = failed.note;
  for (auto& s : slots) (*client)->buf_free(s.buf);
  return result;
}

// ---------------------------------------------------------------------------------------------
// 2. The semaphore peer: slots in POSIX shared memory, process-shared POSIX semaphores.

enum SlotState : std::uint32_t { kFree = 0, kSubmitted = 1, kTaken = 2, kDone = 3 };

struct alignas(64) SemSlot {
  std::atomic<std::uint32_t> state;
  std::uint32_t opcode;
  std::uint64_t lba;
  std::int32_t status;
  std::uint64_t submitted;  // client's tsc, untouched by the server
};

struct SemShared {
  sem_t request;     // posted by the client once per request
  sem_t completion;  // posted by the server once per answer
  std::atomic<std::uint32_t> stop;
  std::uint32_t depth;
  alignas(64) SemSlot slots[32];
  alignas(4096) std::byte data[32][kBlockBytes];  // each slot's 4 KiB buffer
};

timespec deadline_in(std::uint64_t ns) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  std::uint64_t total = static_cast<std::uint64_t>(ts.tv_nsec) + ns;
  ts.tv_sec += static_cast<time_t>(total / 1'000'000'000ull);
  ts.tv_nsec = static_cast<long>(total % 1'000'000'000ull);
  return ts;
}

[[noreturn]] void sem_server(SemShared* shm) {
  std::uint32_t cursor = 0;
  while (shm->stop.load(std::memory_order_acquire) == 0) {
    timespec until = deadline_in(100'000'000ull);
    if (sem_timedwait(&shm->request, &until) != 0) continue;
    // One request was posted: find a submitted slot, "execute" the null read, answer.
    for (std::uint32_t i = 0; i < shm->depth; ++i) {
      SemSlot& s = shm->slots[(cursor + i) % shm->depth];
      std::uint32_t expected = kSubmitted;
      if (s.state.compare_exchange_strong(expected, kTaken, std::memory_order_acquire)) {
        s.status = s.opcode == 1 && s.lba < kNamespaceBlocks ? 0 : -EINVAL;
        s.state.store(kDone, std::memory_order_release);
        sem_post(&shm->completion);
        cursor = (cursor + i + 1) % shm->depth;
        break;
      }
    }
  }
  ::_exit(0);
}

PointResult run_sem_peer(const Options& o, std::uint32_t depth) {
  PointResult failed;
  std::string name = "/nvmux-service-compare-" + std::to_string(::getpid());
  int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    failed.note = std::string("shm_open: ") + std::strerror(errno);
    return failed;
  }
  ::shm_unlink(name.c_str());  // the mappings keep it; nothing left behind if we die
  if (::ftruncate(fd, sizeof(SemShared)) != 0) {
    ::close(fd);
    failed.note = std::string("ftruncate: ") + std::strerror(errno);
    return failed;
  }
  void* addr = ::mmap(nullptr, sizeof(SemShared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (addr == MAP_FAILED) {
    failed.note = std::string("mmap: ") + std::strerror(errno);
    return failed;
  }
  auto* shm = new (addr) SemShared();
  sem_init(&shm->request, 1, 0);
  sem_init(&shm->completion, 1, 0);
  shm->depth = depth;
  pid_t server = fork_child(o.daemon_core);
  if (server == 0) sem_server(shm);

  Histogram latency;
  std::uint64_t completed = 0, errors = 0, rng = 0x9e3779b97f4a7c15ull;
  std::uint32_t cursor = 0;
  bool cut_off = false;
  auto submit = [&](SemSlot& s) {
    s.opcode = 1;
    s.lba = next_lba(rng);
    s.submitted = read_tsc();
    s.state.store(kSubmitted, std::memory_order_release);
    sem_post(&shm->request);
  };
  auto run_for = [&](std::uint64_t ns, bool record) {
    const std::uint64_t end = monotonic_ns() + ns;
    for (std::uint32_t i = 0; i < depth; ++i) submit(shm->slots[i]);
    std::uint32_t outstanding = depth;
    while (outstanding != 0) {
      timespec until = deadline_in(1'000'000'000ull);
      if (sem_timedwait(&shm->completion, &until) != 0) {
        if (errno == EINTR) continue;
        cut_off = true;  // the server stopped answering
        return;
      }
      for (std::uint32_t i = 0; i < depth; ++i) {
        SemSlot& s = shm->slots[(cursor + i) % depth];
        if (s.state.load(std::memory_order_acquire) != kDone) continue;
        cursor = (cursor + i + 1) % depth;
        if (record) {
          latency.record(read_tsc() - s.submitted);
          ++completed;
          if (s.status != 0) ++errors;
        }
        s.state.store(kFree, std::memory_order_relaxed);
        if (monotonic_ns() < end) {
          submit(s);
        } else {
          --outstanding;
        }
        break;
      }
    }
  };
  run_for(50'000'000ull, false);
  const std::uint64_t begin = monotonic_ns();
  if (!cut_off) run_for(static_cast<std::uint64_t>(o.duration * 1e9), true);
  PointResult result = finish(latency, completed, begin, cut_off);
  if (errors != 0) result.note = std::to_string(errors) + " errors";
  shm->stop.store(1, std::memory_order_release);
  sem_post(&shm->request);
  reap_child(server, SIGKILL);
  sem_destroy(&shm->request);
  sem_destroy(&shm->completion);
  ::munmap(addr, sizeof(SemShared));
  return result;
}

// ---------------------------------------------------------------------------------------------
// 3. The bare cross-process ring round trip: nvmux's SPSC rings in a memfd, an echo process.

constexpr std::uint64_t kEchoStop = ~std::uint64_t{0};

PointResult run_ring_rtt(const Options& o) {
  PointResult failed;
  constexpr std::uint64_t kCapacity = 64;
  const std::size_t ring_bytes = nvmux::ring_region_bytes(kCapacity, sizeof(std::uint64_t));
  auto memory = nvmux::SharedMemory::create("service-compare-rings", std::size_t{2} * 4096 + 2 * ring_bytes);
  if (!memory.ok()) {
    failed.note = memory.status().to_string();
    return failed;
  }
  auto there_span = memory->bytes().subspan(0, ring_bytes);
  auto back_span = memory->bytes().subspan((ring_bytes + 4095) / 4096 * 4096, ring_bytes);
  auto there = nvmux::create_ring<std::uint64_t>(there_span, kCapacity);
  auto back = nvmux::create_ring<std::uint64_t>(back_span, kCapacity);
  if (!there.ok() || !back.ok()) {
    failed.note = "create_ring failed";
    return failed;
  }
  pid_t echo = fork_child(o.daemon_core);
  if (echo == 0) {
    // The child maps the memfd as a peer process would (its own mapping of the same file).
    auto mine = nvmux::SharedMemory::map(memory->fd(), memory->size());
    if (!mine.ok()) ::_exit(1);
    auto in = nvmux::attach_ring<std::uint64_t>(mine->bytes().subspan(0, ring_bytes), kCapacity);
    auto out = nvmux::attach_ring<std::uint64_t>(mine->bytes().subspan((ring_bytes + 4095) / 4096 * 4096, ring_bytes),
                                                 kCapacity);
    if (!in.ok() || !out.ok()) ::_exit(1);
    nvmux::RingConsumer<std::uint64_t> consumer(*in, nvmux::Peer::kUntrusted);
    nvmux::RingProducer<std::uint64_t> producer(*out, nvmux::Peer::kUntrusted);
    std::uint64_t v = 0;
    while (true) {
      if (!consumer.try_pop(v)) {
        nvmux::cpu_relax();
        continue;
      }
      if (v == kEchoStop) ::_exit(0);
      while (!producer.try_push(v)) nvmux::cpu_relax();
    }
  }
  nvmux::RingProducer<std::uint64_t> producer(*there);
  nvmux::RingConsumer<std::uint64_t> consumer(*back);
  Histogram latency;
  std::uint64_t completed = 0;
  bool cut_off = false;
  auto run_for = [&](std::uint64_t ns, bool record) {
    const std::uint64_t end = monotonic_ns() + ns;
    while (monotonic_ns() < end) {
      std::uint64_t sent = read_tsc();
      (void)producer.try_push(sent);
      std::uint64_t got = 0;
      std::uint64_t spins = 0;
      while (!consumer.try_pop(got)) {
        nvmux::cpu_relax();
        if ((++spins & 0xffff) == 0 && monotonic_ns() > end + kGraceNs) {
          cut_off = true;
          return;
        }
      }
      if (record) {
        latency.record(read_tsc() - got);
        ++completed;
      }
    }
  };
  run_for(50'000'000ull, false);
  const std::uint64_t begin = monotonic_ns();
  if (!cut_off) run_for(static_cast<std::uint64_t>(o.duration * 1e9), true);
  PointResult result = finish(latency, completed, begin, cut_off);
  (void)producer.try_push(kEchoStop);
  reap_child(echo, SIGKILL);
  return result;
}

// ---------------------------------------------------------------------------------------------
// 4. In-process: nvmux-perf on the same namespace and engine.

PointResult run_in_process(const Options& o, std::uint32_t depth) {
  PointResult result;
  std::string json_path = "/tmp/service-compare-" + std::to_string(::getpid()) + "-perf.json";
  std::string log_path = "/tmp/service-compare-" + std::to_string(::getpid()) + "-perf.log";
  std::snprintf(g_perf_json, sizeof(g_perf_json), "%s", json_path.c_str());
  std::snprintf(g_perf_log, sizeof(g_perf_log), "%s", log_path.c_str());
  std::string depth_text = std::to_string(depth), seconds = std::to_string(o.duration),
              core = std::to_string(o.daemon_core);
  pid_t perf = fork_child(-1);
  if (perf == 0) {
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (log >= 0) {
      ::dup2(log, STDOUT_FILENO);
      ::dup2(log, STDERR_FILENO);
    }
    std::vector<const char*> argv = {o.nvmux_perf.c_str(),
                                     "--backend",
                                     "emu",
                                     "--ns",
                                     "null:size=1G",
                                     "--emu-engine",
                                     "inline",
                                     "-q",
                                     depth_text.c_str(),
                                     "-o",
                                     "4096",
                                     "-w",
                                     "randread",
                                     "-t",
                                     seconds.c_str(),
                                     "--cores",
                                     core.c_str(),
                                     "-L",
                                     "--json",
                                     json_path.c_str(),
                                     nullptr};
    ::execv(argv[0], const_cast<char* const*>(argv.data()));
    std::fprintf(stderr, "exec %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  const std::uint64_t deadline = monotonic_ns() + static_cast<std::uint64_t>(o.duration * 1e9) + 30'000'000'000ull;
  int status = 0;
  while (true) {
    pid_t done = ::waitpid(perf, &status, WNOHANG);
    if (done == perf) break;
    if (monotonic_ns() > deadline) {
      reap_child(perf, SIGKILL);
      result.cut_off = true;
      result.note = "nvmux-perf did not finish; killed";
      return result;
    }
    ::usleep(10'000);
  }
  for (auto& c : g_children) {
    pid_t expected = perf;
    c.compare_exchange_strong(expected, 0);
  }
  std::ifstream in(json_path);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !in) {
    std::ifstream log(log_path);
    std::stringstream text;
    text << log.rdbuf();
    result.note = "nvmux-perf failed: " + text.str();
    return result;
  }
  try {
    auto j = nlohmann::json::parse(in);
    const auto& total = j.at("total");
    result.iops = total.at("iops").get<double>();
    result.p50_us = total.at("latency_us").at("p50").get<double>();
    result.p99_us = total.at("latency_us").at("p99").get<double>();
    result.ios = total.at("ios").get<std::uint64_t>();
    result.seconds = o.duration;
  } catch (const std::exception& e) {
    result.note = std::string("nvmux-perf JSON: ") + e.what();
  }
  std::remove(json_path.c_str());
  std::remove(log_path.c_str());
  return result;
}

// ---------------------------------------------------------------------------------------------
// The daemon

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool start_daemon(const Options& o, std::string& log_path, std::string& error) {
  log_path = "/tmp/service-compare-" + std::to_string(::getpid()) + "-nvmuxd.log";
  std::snprintf(g_daemon_log, sizeof(g_daemon_log), "%s", log_path.c_str());
  std::string cores = std::to_string(o.daemon_core);
  pid_t pid = fork_child(-1, SIGTERM);
  if (pid == 0) {
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (log >= 0) {
      ::dup2(log, STDOUT_FILENO);
      ::dup2(log, STDERR_FILENO);
    }
    (void)nvmux::unpin_current_thread();
    std::vector<const char*> argv = {o.nvmuxd.c_str(), "--socket",     o.socket.c_str(), "--backend", "emu",
                                     "--ns",           "null:size=1G", "--emu-engine",   "inline",    "--cores",
                                     cores.c_str(),    "--log-level",  "warn",           nullptr};
    ::execv(argv[0], const_cast<char* const*>(argv.data()));
    std::fprintf(stderr, "exec %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  g_daemon.store(pid);
  const std::uint64_t deadline = monotonic_ns() + 20'000'000'000ull;
  while (monotonic_ns() < deadline) {
    if (read_file(log_path).find("nvmuxd: ready on") != std::string::npos) return true;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      for (auto& c : g_children) {
        pid_t expected = pid;
        c.compare_exchange_strong(expected, 0);
      }
      g_daemon.store(0);
      error = "nvmuxd exited before it was ready:\n" + read_file(log_path);
      return false;
    }
    ::usleep(10'000);
  }
  error = "nvmuxd was not ready within 20 s:\n" + read_file(log_path);
  return false;
}

void stop_daemon() {
  pid_t pid = g_daemon.exchange(0);
  reap_child(pid, SIGTERM);
}

// ---------------------------------------------------------------------------------------------
// Reporting

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

struct Spread {
  double median = 0, min = 0, max = 0;
};

Spread spread_of(std::vector<double> v) {
  Spread s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  s.min = v.front();
  s.max = v.back();
  return s;
}

struct Contender {
  std::string key;
  std::string label;
  std::function<PointResult()> run;
  std::vector<PointResult> runs;
  Spread iops() const {
    std::vector<double> v;
    for (auto& r : runs) v.push_back(r.iops);
    return spread_of(v);
  }
  Spread p50() const {
    std::vector<double> v;
    for (auto& r : runs) v.push_back(r.p50_us);
    return spread_of(v);
  }
  Spread p99() const {
    std::vector<double> v;
    for (auto& r : runs) v.push_back(r.p99_us);
    return spread_of(v);
  }
};

std::string fmt_iops(const Spread& s) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%9.0f [%.0f-%.0f]", s.median, s.min, s.max);
  return buf;
}

std::string fmt_us(const Spread& s) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%7.2f [%.2f-%.2f]", s.median, s.min, s.max);
  return buf;
}

void usage(const char* argv0) {
  std::printf(
      "usage: %s [--duration S] [--reps N] [--quick] [--json FILE] [--nvmuxd PATH] [--nvmux-perf PATH]\n"
      "          [--daemon-core N] [--client-core N] [--socket PATH]\n"
      "  --duration S     seconds per point (default 2)\n"
      "  --reps N         repetitions, contenders alternating within each (default 3)\n"
      "  --quick          0.3 s per point, 1 repetition (CI smoke)\n"
      "  --json FILE      write parameters, every run and the ratios as JSON\n"
      "  --nvmuxd PATH    daemon binary (default: <build>/apps/nvmuxd/nvmuxd next to this binary)\n"
      "  --nvmux-perf P   nvmux-perf binary (default: <build>/apps/nvmux-perf/nvmux-perf)\n"
      "  --daemon-core N  core of the daemon's owner, the peers' servers and nvmux-perf (default 0)\n"
      "  --client-core N  core of the client, this process (default 1)\n",
      argv0);
}

}  // namespace

int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  Options o;
  std::filesystem::path build_dir = std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path();
  o.nvmuxd = (build_dir / "apps" / "nvmuxd" / "nvmuxd").string();
  o.nvmux_perf = (build_dir / "apps" / "nvmux-perf" / "nvmux-perf").string();
  o.socket = "/tmp/nvmux-service-compare-" + std::to_string(::getpid()) + ".sock";
  bool duration_given = false, reps_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "service_compare: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    try {
      if (a == "--duration") {
        o.duration = std::stod(value());
        duration_given = true;
      } else if (a == "--reps") {
        o.reps = std::stoi(value());
        reps_given = true;
      } else if (a == "--quick") {
        o.quick = true;
      } else if (a == "--json") {
        o.json_path = value();
      } else if (a == "--nvmuxd") {
        o.nvmuxd = value();
      } else if (a == "--nvmux-perf") {
        o.nvmux_perf = value();
      } else if (a == "--daemon-core") {
        o.daemon_core = std::stoi(value());
      } else if (a == "--client-core") {
        o.client_core = std::stoi(value());
      } else if (a == "--socket") {
        o.socket = value();
      } else if (a == "-h" || a == "--help") {
        usage(argv[0]);
        return 0;
      } else {
        std::fprintf(stderr, "service_compare: unknown argument '%s'\n", a.c_str());
        usage(argv[0]);
        return 2;
      }
    } catch (const std::exception&) {
      std::fprintf(stderr, "service_compare: %s: not a number\n", a.c_str());
      return 2;
    }
  }
  if (o.quick) {
    if (!duration_given) o.duration = 0.3;
    if (!reps_given) o.reps = 1;
  }
  if (!(o.duration > 0 && o.duration <= 3600) || o.reps < 1 || o.reps > 100) {
    std::fprintf(stderr, "service_compare: --duration in (0, 3600], --reps in 1..100\n");
    return 2;
  }
  const int cores = nvmux::online_cores();
  std::string pinning;
  if (o.daemon_core >= cores || o.daemon_core < 0) o.daemon_core = 0;
  if (o.client_core >= cores || o.client_core < 0 || o.client_core == o.daemon_core) {
    o.client_core = cores > 1 ? (o.daemon_core + 1) % cores : o.daemon_core;
  }
  if (o.client_core == o.daemon_core) {
    pinning = "one core only: client and servers share core " + std::to_string(o.daemon_core) +
              " (polling contenders will be starved; numbers are not meaningful)";
  } else {
    pinning = "servers (nvmuxd owner via --cores, sem server, ring echo, nvmux-perf owner) on core " +
              std::to_string(o.daemon_core) + "; client (this process) on core " + std::to_string(o.client_core);
  }

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::atexit(kill_all_children);
  (void)nvmux::pin_current_thread(o.client_core);
  (void)nvmux::tsc_hz();  // calibrate before any measurement

  const std::string cpu = cpu_model();
  std::printf("service_compare: 4 KiB random reads, emu null:size=1G, inline engine, one client\n");
  std::printf("  duration %.2f s per point, %d repetition(s), contenders alternating (order rotated per repetition)\n",
              o.duration, o.reps);
  std::printf("  nvmuxd: %s --ns null:size=1G --emu-engine inline --cores %d --socket %s\n", o.nvmuxd.c_str(),
              o.daemon_core, o.socket.c_str());
  std::printf("  nvmux-perf: %s\n", o.nvmux_perf.c_str());
  std::printf("  CPU: %s (%d online cores)\n", cpu.c_str(), cores);
  std::printf("  pinning: %s\n", pinning.c_str());
  std::string load = read_file("/proc/loadavg");
  if (!load.empty() && load.back() == '\n') load.pop_back();
  std::printf("  load average at start: %s%s\n", load.c_str(),
              std::atof(load.c_str()) > 0.5 ? "  (the machine is busy: spinning contenders share their cores)" : "");
  std::fflush(stdout);

  std::string daemon_log, error;
  if (!start_daemon(o, daemon_log, error)) {
    std::fprintf(stderr, "service_compare: %s\n", error.c_str());
    return 1;
  }

  std::vector<Contender> contenders = {
      {"nvmuxd_poll_d1", "nvmuxd poll d1", [&] { return run_service(o, 1, false); }, {}},
      {"sem_peer_d1", "sem-peer d1", [&] { return run_sem_peer(o, 1); }, {}},
      {"nvmuxd_poll_d32", "nvmuxd poll d32", [&] { return run_service(o, 32, false); }, {}},
      {"sem_peer_d32", "sem-peer d32", [&] { return run_sem_peer(o, 32); }, {}},
      {"nvmuxd_wait_d1", "nvmuxd wait d1", [&] { return run_service(o, 1, true); }, {}},
      {"ring_rtt_d1", "ring RTT d1", [&] { return run_ring_rtt(o); }, {}},
      {"in_process_d1", "in-process d1", [&] { return run_in_process(o, 1); }, {}},
      {"in_process_d32", "in-process d32", [&] { return run_in_process(o, 32); }, {}},
  };
  for (int rep = 0; rep < o.reps; ++rep) {
    for (std::size_t k = 0; k < contenders.size(); ++k) {
      Contender& c = contenders[(k + static_cast<std::size_t>(rep)) % contenders.size()];
      PointResult r = c.run();
      std::printf("  rep %d/%d %-16s %10.0f req/s  p50 %7.2f us  p99 %7.2f us%s%s\n", rep + 1, o.reps, c.label.c_str(),
                  r.iops, r.p50_us, r.p99_us, r.cut_off ? "  CUT OFF" : "",
                  r.note.empty() ? "" : ("  (" + r.note + ")").c_str());
      std::fflush(stdout);
      c.runs.push_back(r);
    }
  }
  stop_daemon();
  std::remove(daemon_log.c_str());

  std::map<std::string, const Contender*> by_key;
  for (auto& c : contenders) by_key[c.key] = &c;
  auto iops = [&](const char* key) { return by_key.at(key)->iops().median; };
  auto p50 = [&](const char* key) { return by_key.at(key)->p50().median; };

  std::printf("\n%-16s %-30s %-26s %-26s\n", "contender", "req/s median [min-max]", "p50 us [min-max]",
              "p99 us [min-max]");
  for (auto& c : contenders) {
    std::printf("%-16s %-30s %-26s %-26s\n", c.label.c_str(), fmt_iops(c.iops()).c_str(), fmt_us(c.p50()).c_str(),
                fmt_us(c.p99()).c_str());
  }

  struct Target {
    std::string name;
    double value;
    std::string goal;
    bool met;
  };
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  const double added_us = p50("nvmuxd_poll_d1") - p50("in_process_d1");
  const double rtt_us = p50("ring_rtt_d1");
  std::vector<Target> targets = {
      {"nvmuxd poll d1 / sem-peer d1 (req/s)", ratio(iops("nvmuxd_poll_d1"), iops("sem_peer_d1")), ">= 5x", false},
      {"nvmuxd poll d32 / sem-peer d32 (req/s)", ratio(iops("nvmuxd_poll_d32"), iops("sem_peer_d32")), ">= 5x", false},
      {"nvmuxd wait d1 / sem-peer d1 (req/s)", ratio(iops("nvmuxd_wait_d1"), iops("sem_peer_d1")), ">= 1x", false},
      {"nvmuxd poll d32 / in-process d32 (IOPS)", ratio(iops("nvmuxd_poll_d32"), iops("in_process_d32")), ">= 0.5x",
       false},
  };
  targets[0].met = targets[0].value >= 5;
  targets[1].met = targets[1].value >= 5;
  targets[2].met = targets[2].value >= 1;
  targets[3].met = targets[3].value >= 0.5;
  char added_goal[64];
  std::snprintf(added_goal, sizeof(added_goal), "<= 2 x RTT = %.2f us", 2 * rtt_us);
  targets.push_back({"added p50 d1: nvmuxd - in-process (us)", added_us, added_goal, added_us <= 2 * rtt_us});

  std::printf("\n%-42s %10s  %-22s %s\n", "target (medians)", "value", "goal", "verdict");
  for (auto& t : targets) {
    std::printf("%-42s %10.2f  %-22s %s\n", t.name.c_str(), t.value, t.goal.c_str(), t.met ? "MET" : "NOT MET");
  }
  std::printf("(bare ring RTT p50 %.2f us; nvmuxd poll d1 p50 %.2f us, in-process d1 p50 %.2f us)\n", rtt_us,
              p50("nvmuxd_poll_d1"), p50("in_process_d1"));

  bool any_cut = false;
  for (auto& c : contenders) {
    for (auto& r : c.runs) any_cut = any_cut || r.cut_off || r.ios == 0;
  }
  if (any_cut) std::printf("note: some runs were cut off or completed nothing; see the per-run lines above\n");

  if (!o.json_path.empty()) {
    nlohmann::json j;
    j["benchmark"] = "service_compare";
    j["parameters"] = {{"load_average", read_file("/proc/loadavg")},
                       {"duration_s", o.duration},
                       {"repetitions", o.reps},
                       {"io_bytes", kBlockBytes},
                       {"namespace", "null:size=1G"},
                       {"emu_engine", "inline"},
                       {"daemon_core", o.daemon_core},
                       {"client_core", o.client_core},
                       {"cpu_model", cpu},
                       {"online_cores", cores}};
    j["contenders"] = nlohmann::json::object();
    for (auto& c : contenders) {
      nlohmann::json runs = nlohmann::json::array();
      for (auto& r : c.runs) {
        runs.push_back({{"iops", r.iops},
                        {"p50_us", r.p50_us},
                        {"p99_us", r.p99_us},
                        {"ios", r.ios},
                        {"seconds", r.seconds},
                        {"cut_off", r.cut_off},
                        {"note", r.note}});
      }
      auto sp = [](const Spread& s) { return nlohmann::json{{"median", s.median}, {"min", s.min}, {"max", s.max}}; };
      j["contenders"][c.key] = {
          {"label", c.label}, {"iops", sp(c.iops())}, {"p50_us", sp(c.p50())}, {"p99_us", sp(c.p99())}, {"runs", runs}};
    }
    j["targets"] = nlohmann::json::array();
    for (auto& t : targets)
      j["targets"].push_back({{"name", t.name}, {"value", t.value}, {"goal", t.goal}, {"met", t.met}});
    std::ofstream(o.json_path) << j.dump(2) << "\n";
    std::printf("wrote %s\n", o.json_path.c_str());
  }
  return 0;
}
