// nvmuxd end to end: the real daemon binary as a child process, clients in this process and in
// forked children. Sessions and every refusal, descriptor validation field by field, verified data
// from several processes, kill -9 of a client and of the daemon, idle cost, policy.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include "nvmux/common/cpu.hpp"
#include "nvmux/service/client.hpp"
#include "support/nvmuxd_process.hpp"
#include "support/test_scale.hpp"

namespace nvmux::service {
namespace {

using test::NvmuxdProcess;

constexpr std::uint32_t kBlock = 4096;
constexpr std::uint64_t kDeadlineNs = 30'000'000'000ull;

std::string temp_path(const std::string& what) {
  static std::atomic<int> counter{0};
  return fmt::format("/tmp/nvmux-svc-{}-{}-{}", getpid(), counter++, what);
}

// One request's outcome.
struct Done {
  bool done = false;
  nvmux_cpl cpl{};
  static void cb(void* ctx, const nvmux_cpl* c) {
    auto* d = static_cast<Done*>(ctx);
    d->done = true;
    d->cpl = *c;
  }
};

// Polls `q` until `d` completed; false past the deadline.
bool wait_done(Queue& q, const Done& d) {
  std::uint64_t deadline = monotonic_ns() + kDeadlineNs;
  while (!d.done && monotonic_ns() < deadline) {
    if (!q.poll().ok()) return d.done;
  }
  return d.done;
}

// The daemon's counters once only `client`'s own session is open and at least `closed` sessions
// were closed (sessions close asynchronously after a client dies), or as they are at the deadline.
DaemonStats settled_stats(Client& client, std::uint64_t closed) {
  std::uint64_t deadline = monotonic_ns() + kDeadlineNs;
  DaemonStats stats;
  do {
    stats = client.daemon_stats().value();
  } while ((stats.sessions != 1 || stats.sessions_closed < closed) && monotonic_ns() < deadline);
  return stats;
}

void stamp(std::byte* buf, std::uint64_t lba, std::uint32_t blocks, std::uint64_t generation) {
  for (std::uint32_t b = 0; b < blocks; ++b) {
    auto* words = reinterpret_cast<std::uint64_t*>(buf + std::size_t{b} * kBlock);
    for (std::size_t i = 0; i < kBlock / 8; ++i) words[i] = (lba + b) * 0x9e3779b97f4a7c15ull ^ generation ^ i;
  }
}

class Service : public ::testing::Test {
 protected:
  void SetUp() override { start({"--ns", "ram:size=64M"}); }
  void start(std::vector<std::string> args) {
    socket_ = temp_path("sock");
    args.insert(args.end(), {"--cores", "0", "--log-level", "warn"});
    daemon_ = std::make_unique<NvmuxdProcess>(NVMUXD_BINARY, socket_, args);
    ASSERT_TRUE(daemon_->ready()) << "nvmuxd did not start: " << daemon_->output();
  }
  std::unique_ptr<Client> connect() {
    auto c = Client::connect(socket_);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  // One synchronous request through `submit`; returns its completion.
  template <class F>
  nvmux_cpl run(Queue& q, F submit) {
    Done d;
    Status s = submit(&d);
    EXPECT_TRUE(s.ok()) << s.to_string();
    if (!s.ok()) return nvmux_cpl{s.to_errno(), 0, 0};
    EXPECT_TRUE(wait_done(q, d)) << "request never completed";
    return d.cpl;
  }

  std::string socket_;
  std::unique_ptr<NvmuxdProcess> daemon_;
};

TEST_F(Service, ASessionMovesVerifiedDataThroughEveryOperation) {
  auto client = connect();
  ASSERT_TRUE(client);
  auto ns = client->namespace_info(1);
  ASSERT_TRUE(ns.ok()) << ns.status().to_string();
  EXPECT_EQ(ns->block_size, kBlock);
  EXPECT_EQ(ns->blocks, (64u << 20) / kBlock);
  EXPECT_FALSE(ns->read_only);
  auto q = client->create_queue(32).value();
  auto* buf = static_cast<std::byte*>(client->buf_alloc(8 * kBlock));
  ASSERT_NE(buf, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buf) % 4096, 0u);
  stamp(buf, 100, 8, 7);
  EXPECT_EQ(run(*q, [&](Done* d) { return q->write(1, 100, 8, buf, Done::cb, d); }).status, 0);
  std::vector<std::byte> expect(buf, buf + 8 * kBlock);
  std::memset(buf, 0, 8 * kBlock);
  EXPECT_EQ(run(*q, [&](Done* d) { return q->read(1, 100, 8, buf, Done::cb, d); }).status, 0);
  EXPECT_EQ(std::memcmp(buf, expect.data(), expect.size()), 0);
  EXPECT_EQ(run(*q, [&](Done* d) { return q->flush(1, Done::cb, d); }).status, 0);
  EXPECT_EQ(run(*q, [&](Done* d) { return q->write_zeroes(1, 100, 4, Done::cb, d); }).status, 0);
  EXPECT_EQ(run(*q, [&](Done* d) { return q->deallocate(1, 104, 4, Done::cb, d); }).status, 0);
  std::memset(buf, 0xee, 8 * kBlock);
  EXPECT_EQ(run(*q, [&](Done* d) { return q->read(1, 100, 8, buf, Done::cb, d); }).status, 0);
  for (std::size_t i = 0; i < 8 * kBlock; ++i) ASSERT_EQ(buf[i], std::byte{0}) << "byte " << i;
  // Many in flight at once, every one verified.
  constexpr int kIos = 32;
  auto* big = static_cast<std::byte*>(client->buf_alloc(kIos * kBlock));
  ASSERT_NE(big, nullptr);
  std::vector<Done> done(kIos);
  for (int i = 0; i < kIos; ++i) {
    stamp(big + i * kBlock, 1000 + i, 1, 9);
    ASSERT_TRUE(q->write(1, 1000 + i, 1, big + i * kBlock, Done::cb, &done[i]).ok());
  }
  for (auto& d : done) ASSERT_TRUE(wait_done(*q, d));
  std::memset(big, 0, kIos * kBlock);
  std::vector<Done> reads(kIos);
  for (int i = 0; i < kIos; ++i) ASSERT_TRUE(q->read(1, 1000 + i, 1, big + i * kBlock, Done::cb, &reads[i]).ok());
  std::vector<std::byte> one(kBlock);
  for (int i = 0; i < kIos; ++i) {
    ASSERT_TRUE(wait_done(*q, reads[i]));
    EXPECT_EQ(reads[i].cpl.status, 0);
    stamp(one.data(), 1000 + i, 1, 9);
    EXPECT_EQ(std::memcmp(big + i * kBlock, one.data(), kBlock), 0) << "block " << 1000 + i;
  }
}

TEST_F(Service, SubmitRefusesWhatTheLibraryCanCheck) {
  auto client = connect();
  ASSERT_TRUE(client);
  auto q = client->create_queue(2).value();
  auto* buf = static_cast<std::byte*>(client->buf_alloc(kBlock));
  std::vector<std::byte> private_memory(kBlock);
  Done d;
  EXPECT_EQ(q->read(1, 0, 1, private_memory.data(), Done::cb, &d).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(q->read(1, 0, 2, buf, Done::cb, &d).code(), StatusCode::kInvalidArgument);  // past its buffer
  EXPECT_EQ(q->read(1, (64u << 20) / kBlock, 1, buf, Done::cb, &d).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(q->read(1, UINT64_MAX, 1, buf, Done::cb, &d).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(q->read(2, 0, 1, buf, Done::cb, &d).code(), StatusCode::kNotFound);
  EXPECT_EQ(q->read(1, 0, 0, buf, Done::cb, &d).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(q->read(1, 0, 1, buf, nullptr, nullptr).code(), StatusCode::kInvalidArgument);
  Done a, b, c;
  ASSERT_TRUE(q->read(1, 0, 1, buf, Done::cb, &a).ok());
  ASSERT_TRUE(q->read(1, 1, 1, buf, Done::cb, &b).ok());
  EXPECT_EQ(q->read(1, 2, 1, buf, Done::cb, &c).code(), StatusCode::kWouldBlock);  // depth 2
  ASSERT_TRUE(wait_done(*q, a) && wait_done(*q, b));
  EXPECT_EQ(client->create_queue(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client->create_queue(kMaxQueueDepth + 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client->namespace_info(7).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(client->buf_free(private_memory.data()));
  EXPECT_TRUE(client->buf_free(buf));
  EXPECT_FALSE(client->buf_free(buf));  // twice
  EXPECT_EQ(client->buf_alloc(client->arena_bytes() + 1), nullptr);
  EXPECT_EQ(client->buf_alloc(SIZE_MAX), nullptr);  // rounding up to a page must not wrap to 0
}

TEST_F(Service, TheDaemonChecksEveryDescriptorFieldItself) {
  auto client = connect();
  ASSERT_TRUE(client);
  auto q = client->create_queue(8).value();
  const std::uint64_t arena = client->arena_bytes();
  const std::uint64_t blocks = (64u << 20) / kBlock;
  auto good = [] {
    IoDescriptor d{};
    d.opcode = static_cast<std::uint8_t>(IoOpcode::kRead);
    d.nsid = 1;
    d.lba = 0;
    d.blocks = 1;
    d.arena_offset = 0;
    return d;
  };
  struct Case {
    const char* what;
    std::function<void(IoDescriptor&)> mutate;
    int status;
  };
  std::vector<Case> cases = {
      {"valid", [](IoDescriptor&) {}, 0},
      {"opcode 0", [](IoDescriptor& d) { d.opcode = 0; }, -EINVAL},
      {"opcode 99", [](IoDescriptor& d) { d.opcode = 99; }, -EINVAL},
      {"nsid 0", [](IoDescriptor& d) { d.nsid = 0; }, -ENOENT},
      {"nsid 2", [](IoDescriptor& d) { d.nsid = 2; }, -ENOENT},
      {"blocks 0", [](IoDescriptor& d) { d.blocks = 0; }, -EINVAL},
      {"lba at the end", [&](IoDescriptor& d) { d.lba = blocks; }, -ERANGE},
      {"lba + blocks overflows",
       [](IoDescriptor& d) {
         d.lba = UINT64_MAX;
         d.blocks = 2;
       },
       -ERANGE},
      {"blocks past the end",
       [&](IoDescriptor& d) {
         d.lba = blocks - 1;
         d.blocks = 2;
       },
       -ERANGE},
      {"huge block count", [](IoDescriptor& d) { d.blocks = UINT32_MAX; }, -ERANGE},
      {"transfer above the limit", [](IoDescriptor& d) { d.blocks = 4096; }, -EINVAL},
      {"arena offset past the end", [&](IoDescriptor& d) { d.arena_offset = arena; }, -EINVAL},
      {"buffer runs past the arena", [&](IoDescriptor& d) { d.arena_offset = arena - 2048; }, -EINVAL},
      {"arena offset overflows", [](IoDescriptor& d) { d.arena_offset = UINT64_MAX - 100; }, -EINVAL},
      {"unaligned arena offset", [](IoDescriptor& d) { d.arena_offset = 2; }, -EINVAL},
      {"write zeroes too long",
       [](IoDescriptor& d) {
         d.opcode = 4;
         d.blocks = 70000;
       },
       -EINVAL},
  };
  for (const Case& c : cases) {
    IoDescriptor d = good();
    c.mutate(d);
    Done done;
    ASSERT_TRUE(q->submit_descriptor(d, Done::cb, &done).ok()) << c.what;
    ASSERT_TRUE(wait_done(*q, done)) << c.what;
    EXPECT_EQ(done.cpl.status, c.status) << c.what;
  }
  // The session is still good after every refusal.
  Done fine;
  ASSERT_TRUE(q->submit_descriptor(good(), Done::cb, &fine).ok());
  ASSERT_TRUE(wait_done(*q, fine));
  EXPECT_EQ(fine.cpl.status, 0);
}

// A child process: write then read-verify its own LBA range for `seconds`. Returns the number of
// errors (I/O errors plus mismatching blocks) as its exit code (capped), 100+ for set-up failures.
int verify_worker(const std::string& socket, std::uint64_t first_lba, std::uint64_t lbas, double seconds,
                  std::uint32_t seed) {
  auto client = Client::connect(socket);
  if (!client.ok()) return 101;
  auto q = (*client)->create_queue(16);
  if (!q.ok()) return 102;
  constexpr int kDepth = 16;
  auto* buf = static_cast<std::byte*>((*client)->buf_alloc(kDepth * kBlock));
  if (buf == nullptr) return 103;
  std::mt19937_64 rng(seed);
  std::vector<std::uint64_t> generation(lbas, 0);
  int errors = 0;
  std::uint64_t end = monotonic_ns() + static_cast<std::uint64_t>(seconds * 1e9);
  std::uint64_t round = 1;
  while (monotonic_ns() < end && errors == 0) {
    std::vector<Done> done(kDepth);
    std::vector<std::uint64_t> lba(kDepth);
    std::vector<bool> was_write(kDepth);
    for (int i = 0; i < kDepth; ++i) {
      // Distinct LBAs within a round, so no two requests in flight touch one block.
      lba[i] = first_lba + (rng() % (lbas / kDepth)) * kDepth + static_cast<std::uint64_t>(i);
      was_write[i] = (rng() & 1) != 0 || generation[lba[i] - first_lba] == 0;
      Status s;
      if (was_write[i]) {
        stamp(buf + i * kBlock, lba[i], 1, round);
        s = (*q)->write(1, lba[i], 1, buf + i * kBlock, Done::cb, &done[i]);
      } else {
        s = (*q)->read(1, lba[i], 1, buf + i * kBlock, Done::cb, &done[i]);
      }
      if (!s.ok()) return 104;
    }
    std::vector<std::byte> expect(kBlock);
    for (int i = 0; i < kDepth; ++i) {
      if (!wait_done(**q, done[i]) || done[i].cpl.status != 0) {
        ++errors;
        continue;
      }
      std::uint64_t& gen = generation[lba[i] - first_lba];
      if (was_write[i]) {
        gen = round;
      } else {
        stamp(expect.data(), lba[i], 1, gen);
        if (std::memcmp(expect.data(), buf + i * kBlock, kBlock) != 0) ++errors;
      }
    }
    ++round;
  }
  return std::min(errors, 99);
}

TEST_F(Service, ProcessesVerifyTogetherAndAKilledOneCostsTheOthersNothing) {
  constexpr int kWorkers = 4;
  const std::uint64_t per_worker = ((64u << 20) / kBlock) / kWorkers;
  const double seconds = 1.5;
  std::vector<pid_t> pids;
  for (int w = 0; w < kWorkers; ++w) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(verify_worker(socket_, w * per_worker, per_worker, seconds, 1000 + w));
    pids.push_back(pid);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  kill(pids[0], SIGKILL);  // mid-I/O
  for (int w = 0; w < kWorkers; ++w) {
    int status = 0;
    ASSERT_EQ(waitpid(pids[w], &status, 0), pids[w]);
    if (w == 0) {
      EXPECT_TRUE(WIFSIGNALED(status));
    } else {
      ASSERT_TRUE(WIFEXITED(status));
      EXPECT_EQ(WEXITSTATUS(status), 0) << "worker " << w << " saw errors (or failed to set up, >100)";
    }
  }
  // The daemon freed every session: only ours is left, and nothing is in flight.
  auto client = connect();
  ASSERT_TRUE(client);
  DaemonStats stats = settled_stats(*client, kWorkers);
  EXPECT_EQ(stats.sessions, 1u);
  EXPECT_EQ(stats.queues, 0u);
  EXPECT_EQ(stats.in_flight, 0u);
  EXPECT_EQ(stats.sessions_closed, static_cast<std::uint64_t>(kWorkers));
}

TEST_F(Service, KilledClientsMidIoNeverLeakSessions) {
  const int rounds = static_cast<int>(test::stress_count(20, 5));
  for (int r = 0; r < rounds; ++r) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(verify_worker(socket_, 0, 4096, 5.0, r));
    std::this_thread::sleep_for(std::chrono::milliseconds(30 + r % 7 * 10));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  auto client = connect();
  ASSERT_TRUE(client);
  DaemonStats stats = settled_stats(*client, 0);
  EXPECT_EQ(stats.sessions, 1u) << "after " << rounds << " kills";
  EXPECT_EQ(stats.queues, 0u);
  EXPECT_EQ(stats.in_flight, 0u);
}

TEST_F(Service, AnIdleDaemonSleeps) {
  auto client = connect();
  ASSERT_TRUE(client);
  auto q = client->create_queue(4).value();  // an attached queue must not keep it polling either
  auto* buf = client->buf_alloc(kBlock);
  EXPECT_EQ(run(*q, [&](Done* d) { return q->read(1, 0, 1, buf, Done::cb, d); }).status, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  double before = daemon_->cpu_seconds();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  double used = daemon_->cpu_seconds() - before;
  EXPECT_LT(used, 0.1) << "an idle nvmuxd used " << used << " s of CPU in 2 s";
  // And it wakes for the next request.
  EXPECT_EQ(run(*q, [&](Done* d) { return q->read(1, 0, 1, buf, Done::cb, d); }).status, 0);
  // A client that sleeps in wait() is woken by the completion.
  Done d;
  ASSERT_TRUE(q->read(1, 1, 1, buf, Done::cb, &d).ok());
  std::uint64_t deadline = monotonic_ns() + kDeadlineNs;
  while (!d.done && monotonic_ns() < deadline) ASSERT_TRUE(q->wait(1000).ok());
  EXPECT_TRUE(d.done);
}

TEST_F(Service, ASecondDaemonOnTheSocketIsRefusedAndAStaleSocketIsReplaced) {
  NvmuxdProcess second(NVMUXD_BINARY, socket_, {"--cores", "0"}, 5000);
  EXPECT_FALSE(second.ready());
  int status = second.stop(SIGTERM, 5000);
  EXPECT_TRUE(status == -1 || (WIFEXITED(status) && WEXITSTATUS(status) == 1));
  EXPECT_EQ(daemon_->stop(SIGKILL), SIGKILL);  // leaves its socket file behind
  EXPECT_TRUE(std::filesystem::exists(socket_));
  NvmuxdProcess third(NVMUXD_BINARY, socket_, {"--cores", "0", "--ns", "ram:size=16M"});
  EXPECT_TRUE(third.ready()) << third.output();
  EXPECT_TRUE(Client::connect(socket_).ok());
  // SIGTERM: a clean stop that removes the socket file.
  int stopped = third.stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(stopped) && WEXITSTATUS(stopped) == 0);
  EXPECT_FALSE(std::filesystem::exists(socket_));
}

// A device that answers after the daemon's --io-timeout-ms: the request completes to the client
// with -ETIMEDOUT by then (the queue pair's own timeout), the late answer is dropped, and the
// daemon goes on serving with nothing left in flight.
class ServiceSlowDevice : public Service {
 protected:
  void SetUp() override {
    start({"--ns", "ram:size=16M", "--emu-latency-us", std::to_string(kDeviceLatencyMs * 1000), "--io-timeout-ms",
           std::to_string(kTimeoutMs)});
  }
  static constexpr int kDeviceLatencyMs = 400;
  static constexpr int kTimeoutMs = 50;
};

TEST_F(ServiceSlowDevice, ACommandPastItsTimeoutCompletesWithEtimedout) {
  auto client = connect();
  ASSERT_TRUE(client);
  auto q = client->create_queue(4).value();
  auto* buf = client->buf_alloc(kBlock);
  ASSERT_NE(buf, nullptr);
  for (int round = 0; round < 2; ++round) {
    const std::uint64_t t0 = monotonic_ns();
    nvmux_cpl cpl = run(*q, [&](Done* d) { return q->read(1, 7, 1, buf, Done::cb, d); });
    const double waited_ms = static_cast<double>(monotonic_ns() - t0) / 1e6;
    EXPECT_EQ(cpl.status, -ETIMEDOUT) << "round " << round << ": " << nvmux_strerror(cpl.status);
    EXPECT_GE(waited_ms, kTimeoutMs * 0.9) << "round " << round;
    EXPECT_LT(waited_ms, kDeviceLatencyMs) << "round " << round << ": the timeout did not fire before the device";
    // Let the device's late answer arrive (and be dropped) before the next round.
    std::this_thread::sleep_for(std::chrono::milliseconds(kDeviceLatencyMs + 100));
  }
  auto stats = client->daemon_stats();
  ASSERT_TRUE(stats.ok()) << stats.status().to_string();
  EXPECT_EQ(stats->in_flight, 0u);
  EXPECT_EQ(stats->sessions, 1u);
}

// On uring, a client's arena is an io_uring registered buffer (zero copy without the kernel
// pinning pages per request): pinned while the session does I/O, let go when it closes. Read from
// the daemon's VmPin, which counts exactly the pages registered buffers hold.
class ServiceUring : public Service {
 protected:
  void SetUp() override {
    image_ = temp_path("img");
    start({"--backend", "uring", "--ns", fmt::format("file:{},size=16M", image_)});
  }
  void TearDown() override { std::filesystem::remove(image_); }
  std::uint64_t pinned_kib() const {
    std::ifstream status(fmt::format("/proc/{}/status", daemon_->pid()));
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmPin:", 0) == 0) return std::stoull(line.substr(6));
    }
    return 0;
  }
  std::string image_;
};

TEST_F(ServiceUring, AClientArenaIsARegisteredBufferWhileItsSessionLasts) {
  const std::uint64_t baseline = pinned_kib();  // the controller's own arena, registered at start
  constexpr std::size_t kArena = 8u << 20;
  {
    auto client = Client::connect(socket_, kArena).value();
    auto q = client->create_queue(4).value();
    auto* buf = static_cast<std::byte*>(client->buf_alloc(4 * kBlock));
    stamp(buf, 3, 4, 42);
    ASSERT_EQ(run(*q, [&](Done* d) { return q->write(1, 3, 4, buf, Done::cb, d); }).status, 0);
    std::vector<std::byte> want(buf, buf + 4 * kBlock);
    std::memset(buf, 0, 4 * kBlock);
    ASSERT_EQ(run(*q, [&](Done* d) { return q->read(1, 3, 4, buf, Done::cb, d); }).status, 0);
    EXPECT_EQ(std::memcmp(buf, want.data(), want.size()), 0);
    EXPECT_EQ(pinned_kib(), baseline + kArena / 1024) << "the arena is not a registered buffer";
  }
  std::uint64_t pinned = 0;
  for (std::uint64_t deadline = monotonic_ns() + kDeadlineNs; monotonic_ns() < deadline;) {
    if ((pinned = pinned_kib()) == baseline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(pinned, baseline) << "a closed session's arena stays pinned";
}

// Fairness: one backend queue pair (--max-qpairs 1) shared by a client that keeps 256 requests in
// flight and a client at depth 1. The owner drains its queues round-robin, a bounded batch each,
// so the depth-1 client's requests do not wait behind the other's backlog: its median latency
// beside the flood stays within 3x of its median alone. (The p99 target is measured on a quiet
// machine by bench/service-multiprocess; a test asserts the median, which scheduling noise on a
// loaded 2-core CI machine does not move.)
class ServiceSharedQpair : public Service {
 protected:
  void SetUp() override {
    start({"--ns", "ram:size=64M", "--max-qpairs", "1", "--emu-latency-us", std::to_string(kDeviceLatencyUs)});
  }
  static constexpr int kDeviceLatencyUs = 200;
};

// The depth-1 client: `count` reads one after another; returns each one's latency in ns.
std::vector<std::uint64_t> depth1_latencies(Queue& q, void* buf, int count) {
  std::vector<std::uint64_t> latencies;
  for (int i = 0; i < count; ++i) {
    Done d;
    const std::uint64_t t0 = monotonic_ns();
    if (!q.read(1, static_cast<std::uint64_t>(i) % 1024, 1, buf, Done::cb, &d).ok()) break;
    const std::uint64_t deadline = t0 + kDeadlineNs;
    while (!d.done && monotonic_ns() < deadline) {
      if (!q.wait(100).ok()) break;
    }
    if (!d.done || d.cpl.status != 0) break;
    latencies.push_back(monotonic_ns() - t0);
  }
  return latencies;
}

std::uint64_t median_of(std::vector<std::uint64_t> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

TEST_F(ServiceSharedQpair, ADepth1ClientIsNotStuckBehindADepth256Client) {
  const int kReads = static_cast<int>(test::stress_count(400, 50));
  auto light = connect();
  ASSERT_TRUE(light);
  auto light_q = light->create_queue(1).value();
  void* light_buf = light->buf_alloc(kBlock);
  ASSERT_NE(light_buf, nullptr);
  const std::vector<std::uint64_t> alone = depth1_latencies(*light_q, light_buf, kReads);
  ASSERT_EQ(alone.size(), static_cast<std::size_t>(kReads));

  // The heavy client, in its own session, keeps 256 reads in flight until told to stop.
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> heavy_done{0};
  std::atomic<bool> heavy_full{false};
  std::string heavy_error;
  std::thread heavy([&] {
    auto client = Client::connect(socket_);
    if (!client.ok()) {
      heavy_error = client.status().to_string();
      return;
    }
    auto q = (*client)->create_queue(256).value();
    auto* bufs = static_cast<std::byte*>((*client)->buf_alloc(256 * kBlock));
    struct Slot {
      std::atomic<std::uint64_t>* done;
      bool busy = false;
    };
    std::vector<Slot> slots(256, Slot{&heavy_done});
    auto cb = [](void* ctx, const nvmux_cpl*) {
      auto* slot = static_cast<Slot*>(ctx);
      slot->busy = false;
      slot->done->fetch_add(1, std::memory_order_relaxed);
    };
    std::uint64_t lba = 2048;
    while (!stop.load(std::memory_order_relaxed)) {
      for (std::size_t i = 0; i < slots.size(); ++i) {
        if (slots[i].busy) continue;
        if (!q->read(1, lba++ % 8192, 1, bufs + i * kBlock, cb, &slots[i]).ok()) break;
        slots[i].busy = true;
      }
      if (q->in_flight() == 256) heavy_full.store(true, std::memory_order_relaxed);
      if (!q->wait(10).ok()) break;
    }
    while (q->in_flight() != 0 && q->wait(100).ok()) {
    }
  });
  while (!heavy_full.load() && heavy_error.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const std::uint64_t heavy_before = heavy_done.load();
  const std::vector<std::uint64_t> shared = depth1_latencies(*light_q, light_buf, kReads);
  const std::uint64_t heavy_during = heavy_done.load() - heavy_before;
  stop = true;
  heavy.join();
  ASSERT_TRUE(heavy_error.empty()) << heavy_error;
  ASSERT_EQ(shared.size(), static_cast<std::size_t>(kReads));
  const std::uint64_t alone_median = median_of(alone), shared_median = median_of(shared);
#if !defined(NVMUX_SANITIZED)
  // Timing is asserted in optimised builds only: under a sanitizer the daemon's owner is CPU-bound
  // (5-20x slower) and the device latency no longer dominates, so the ratio would measure the
  // instrumentation. There the test still checks that every request of both clients completes.
  // The heavy client really was flooding the queue pair meanwhile: far more than the light one.
  EXPECT_GT(heavy_during, static_cast<std::uint64_t>(kReads) * 10);
  EXPECT_LE(shared_median, 3 * alone_median) << "depth-1 median alone " << alone_median / 1000 << " us, beside "
                                             << "the depth-256 client " << shared_median / 1000 << " us";
#endif
  std::printf("depth-1 median: alone %.1f us, beside a depth-256 client %.1f us (it completed %llu reads meanwhile)\n",
              static_cast<double>(alone_median) / 1e3, static_cast<double>(shared_median) / 1e3,
              static_cast<unsigned long long>(heavy_during));
}

TEST(ServiceStandalone, NoDaemonIsNotConnected) {
  auto c = Client::connect("/tmp/nvmux-no-such-daemon.sock");
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(c.status().message().find("not running"), std::string::npos) << c.status().message();
  EXPECT_EQ(c.status().to_errno(), -ENOTCONN);
}

TEST(ServiceStandalone, ADeadDaemonFailsCallsWithin1sAndARestartedOneKeepsTheData) {
  std::string socket = temp_path("sock");
  std::string image = temp_path("ns.img");
  std::vector<std::string> args{"--ns", "file:" + image + ",size=16M", "--cores", "0", "--log-level", "warn"};
  std::vector<std::byte> expect(kBlock);
  {
    auto daemon = std::make_unique<NvmuxdProcess>(NVMUXD_BINARY, socket, args);
    ASSERT_TRUE(daemon->ready()) << daemon->output();
    auto client = Client::connect(socket).value();
    auto q = client->create_queue(8).value();
    auto* buf = static_cast<std::byte*>(client->buf_alloc(kBlock));
    stamp(buf, 5, 1, 42);
    std::memcpy(expect.data(), buf, kBlock);
    Done w, f;
    ASSERT_TRUE(q->write(1, 5, 1, buf, Done::cb, &w).ok());
    ASSERT_TRUE(wait_done(*q, w));
    ASSERT_EQ(w.cpl.status, 0);
    ASSERT_TRUE(q->flush(1, Done::cb, &f).ok());
    ASSERT_TRUE(wait_done(*q, f));
    ASSERT_EQ(f.cpl.status, 0);
    // Requests in flight when the daemon dies: the daemon is stopped (SIGSTOP) so they cannot
    // complete, then killed.
    kill(daemon->pid(), SIGSTOP);
    std::vector<Done> pending(4);
    for (auto& p : pending) ASSERT_TRUE(q->read(1, 0, 1, buf, Done::cb, &p).ok());
    daemon->stop(SIGKILL);
    std::uint64_t t0 = monotonic_ns();
    Result<std::uint32_t> r = 0u;
    while ((r = q->wait(100)).ok() && monotonic_ns() - t0 < 5'000'000'000ull) {
    }
    double detect_ms = static_cast<double>(monotonic_ns() - t0) / 1e6;
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
    EXPECT_LT(detect_ms, 1000.0) << "took " << detect_ms << " ms to see the daemon was gone";
    for (auto& p : pending) {
      EXPECT_TRUE(p.done);
      EXPECT_EQ(p.cpl.status, -ECANCELED);
    }
    Done after;
    EXPECT_EQ(q->read(1, 0, 1, buf, Done::cb, &after).code(), StatusCode::kUnavailable);
    EXPECT_EQ(client->namespace_info(1).status().code(), StatusCode::kUnavailable);
    std::printf("daemon death seen after %.1f ms\n", detect_ms);
  }
  // A restarted daemon accepts a reconnect, and the flushed write is there.
  NvmuxdProcess restarted(NVMUXD_BINARY, socket, args);
  ASSERT_TRUE(restarted.ready()) << restarted.output();
  auto client = Client::connect(socket).value();
  auto q = client->create_queue(8).value();
  auto* buf = static_cast<std::byte*>(client->buf_alloc(kBlock));
  Done r;
  ASSERT_TRUE(q->read(1, 5, 1, buf, Done::cb, &r).ok());
  ASSERT_TRUE(wait_done(*q, r));
  EXPECT_EQ(r.cpl.status, 0);
  EXPECT_EQ(std::memcmp(buf, expect.data(), kBlock), 0);
  q.reset();
  client.reset();
  std::filesystem::remove(image);
}

class ServicePolicy : public Service {
 protected:
  void SetUp() override {}
  void start_with(const std::string& json) {
    policy_ = temp_path("policy.json");
    std::ofstream(policy_) << json;
    start({"--ns", "ram:size=16M", "--ns", "ram:size=16M", "--policy", policy_});
  }
  void TearDown() override {
    if (!policy_.empty()) std::filesystem::remove(policy_);
  }
  std::string policy_;
};

TEST_F(ServicePolicy, AUidThePolicyDoesNotNameIsRefusedAtConnect) {
  start_with(fmt::format(R"({{"clients": [{{"uid": {}}}]}})", geteuid() + 12345));
  auto c = Client::connect(socket_);
  EXPECT_EQ(c.status().code(), StatusCode::kPermissionDenied) << c.status().to_string();
  EXPECT_NE(c.status().message().find(fmt::format("uid {}", geteuid())), std::string::npos) << c.status().message();
}

TEST_F(ServicePolicy, ReadOnlyAndLbaRangeGrantsAreEnforcedByTheDaemon) {
  start_with(fmt::format(R"({{"clients": [{{"uid": {}, "namespaces": [
      {{"nsid": 1, "access": "ro"}}, {{"nsid": 2, "access": "rw", "lba_ranges": [[100, 199]]}}]}}]}})",
                         geteuid()));
  auto client = connect();
  ASSERT_TRUE(client);
  EXPECT_TRUE(client->namespace_info(1)->read_only);
  EXPECT_FALSE(client->namespace_info(2)->read_only);
  auto q = client->create_queue(4).value();
  auto* buf = static_cast<std::byte*>(client->buf_alloc(kBlock));
  std::memset(buf, 0x5a, kBlock);
  EXPECT_EQ(run(*q, [&](Done* d) { return q->write(1, 0, 1, buf, Done::cb, d); }).status, -EACCES);
  EXPECT_EQ(run(*q, [&](Done* d) { return q->write_zeroes(1, 0, 1, Done::cb, d); }).status, -EACCES);
  EXPECT_EQ(run(*q, [&](Done* d) { return q->deallocate(1, 0, 1, Done::cb, d); }).status, -EACCES);
  EXPECT_EQ(run(*q, [&](Done* d) { return q->read(1, 0, 1, buf, Done::cb, d); }).status, 0);
  for (std::size_t i = 0; i < kBlock; ++i) ASSERT_EQ(buf[i], std::byte{0}) << "a refused write changed the data";
  EXPECT_EQ(run(*q, [&](Done* d) { return q->write(2, 150, 1, buf, Done::cb, d); }).status, 0);
  EXPECT_EQ(run(*q, [&](Done* d) { return q->write(2, 99, 1, buf, Done::cb, d); }).status, -EACCES);
  auto* two = static_cast<std::byte*>(client->buf_alloc(2 * kBlock));
  EXPECT_EQ(run(*q, [&](Done* d) { return q->read(2, 199, 2, two, Done::cb, d); }).status, -EACCES);  // crosses the end
  EXPECT_EQ(run(*q, [&](Done* d) { return q->read(2, 200, 1, buf, Done::cb, d); }).status, -EACCES);
}

// The same grants for real other users: children that setresuid to uids the policy names (or
// does not) before connecting, so SO_PEERCRED carries their uid. Root runs the daemon and checks
// the data afterwards.
TEST_F(ServicePolicy, RealOtherUidsGetOnlyWhatThePolicyGrants) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to become other uids";
  constexpr uid_t kReader = 65534, kStranger = 65533;
  start_with(fmt::format(R"({{"clients": [{{"uid": 0}}, {{"uid": {}, "namespaces": [
      {{"nsid": 1, "access": "ro"}}, {{"nsid": 2, "access": "rw", "lba_ranges": [[100, 199]]}}]}}]}})",
                         kReader));
  // Runs `body` as `uid` in a child; its exit code is the number of failed expectations (or 100+
  // for a set-up failure).
  auto as_uid = [&](uid_t uid, const std::function<int()>& body) {
    pid_t child = fork();
    if (child == 0) {
      if (setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0) _exit(100);
      _exit(body());
    }
    int status = 0;
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
  };
  EXPECT_EQ(as_uid(kStranger,
                   [&] {
                     auto c = Client::connect(socket_);
                     return c.status().code() == StatusCode::kPermissionDenied &&
                                    c.status().message().find("uid 65533") != std::string::npos
                                ? 0
                                : 1;
                   }),
            0)
      << "a uid the policy does not name was not refused";
  EXPECT_EQ(as_uid(kReader,
                   [&] {
                     auto c = Client::connect(socket_);
                     if (!c.ok()) return 101;
                     auto q = (*c)->create_queue(4);
                     if (!q.ok()) return 102;
                     auto* buf = static_cast<std::byte*>((*c)->buf_alloc(kBlock));
                     std::memset(buf, 0x5a, kBlock);
                     auto one = [&](auto submit) {
                       Done d;
                       if (!submit(&d).ok() || !wait_done(**q, d)) return 1;
                       return d.cpl.status;
                     };
                     int failed = 0;
                     failed += one([&](Done* d) { return (*q)->write(1, 7, 1, buf, Done::cb, d); }) != -EACCES;
                     failed += one([&](Done* d) { return (*q)->write_zeroes(1, 7, 1, Done::cb, d); }) != -EACCES;
                     failed += one([&](Done* d) { return (*q)->deallocate(1, 7, 1, Done::cb, d); }) != -EACCES;
                     failed += one([&](Done* d) { return (*q)->read(1, 7, 1, buf, Done::cb, d); }) != 0;
                     std::memset(buf, 0x5a, kBlock);  // the read above brought zeros
                     failed += one([&](Done* d) { return (*q)->write(2, 150, 1, buf, Done::cb, d); }) != 0;
                     failed += one([&](Done* d) { return (*q)->write(2, 200, 1, buf, Done::cb, d); }) != -EACCES;
                     failed += one([&](Done* d) { return (*q)->read(2, 99, 1, buf, Done::cb, d); }) != -EACCES;
                     return failed;
                   }),
            0)
      << "uid 65534's grant was not enforced";
  // Root's view afterwards: the read-only block is untouched, the granted one was written.
  auto root = connect();
  ASSERT_TRUE(root);
  auto q = root->create_queue(4).value();
  auto* buf = static_cast<std::byte*>(root->buf_alloc(kBlock));
  EXPECT_EQ(run(*q, [&](Done* d) { return q->read(1, 7, 1, buf, Done::cb, d); }).status, 0);
  for (std::size_t i = 0; i < kBlock; ++i) ASSERT_EQ(buf[i], std::byte{0}) << "a refused write changed the data";
  EXPECT_EQ(run(*q, [&](Done* d) { return q->read(2, 150, 1, buf, Done::cb, d); }).status, 0);
  EXPECT_EQ(buf[0], std::byte{0x5a});
}

TEST_F(ServicePolicy, ABadPolicyFileStopsTheDaemonWithItsReason) {
  policy_ = temp_path("policy.json");
  std::ofstream(policy_) << R"({"clients": [{"uid": 0, "namespaces": [{"nsid": 1, "access": "rx"}]}]})";
  NvmuxdProcess bad(NVMUXD_BINARY, temp_path("sock"), {"--policy", policy_, "--cores", "0"}, 5000);
  EXPECT_FALSE(bad.ready());
  int status = bad.stop(SIGTERM, 5000);
  EXPECT_TRUE(status == -1 || (WIFEXITED(status) && WEXITSTATUS(status) == 2)) << status;
}

TEST_F(Service, TheCApiWorksFromC) {
  std::string cmd = fmt::format("{} {}", C_API_TEST_BINARY, socket_);
  int status = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd << " exited " << status;
}

}  // namespace
}  // namespace nvmux::service
