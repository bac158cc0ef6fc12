// nvmuxd across crashes, repeated and bounded, with counts in the output:
//
//   clients killed   a client process is SIGKILLed mid-I/O, 200 times, while a neighbour verifies
//                    its data: after each kill the daemon is back to its baseline of sessions,
//                    queues, registered arenas and device commands (read through the admin
//                    socket), the neighbour sees 0 errors, and the daemon keeps no descriptor
//   daemon killed    nvmuxd on the uring backend over a file is SIGKILLed mid-I/O, 50 times: every
//                    client call fails with -ENOTCONN within 1 s, the client reconnects to a new
//                    daemon, and every write that completed before a completed flush reads back
//                    (a block holds a generation between the last flushed one and the last
//                    submitted one, and is whole)
//
// Counts scale with NVMUX_STRESS_SCALE and down under the sanitizers.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "nvmux/common/cpu.hpp"
#include "nvmux/service/client.hpp"
#include "rpc.hpp"
#include "rpc_client.hpp"
#include "support/nvmuxd_process.hpp"
#include "support/test_scale.hpp"
#include "support/verifying_neighbour.hpp"

namespace nvmux::service {
namespace {

using nlohmann::json;
constexpr std::uint32_t kBlock = 4096;
constexpr std::uint64_t kSecondNs = 1'000'000'000ull;

std::size_t open_fds(pid_t pid) {
  std::size_t n = 0;
  DIR* dir = ::opendir(fmt::format("/proc/{}/fd", pid).c_str());
  if (dir == nullptr) return 0;
  while (dirent* e = ::readdir(dir)) n += e->d_name[0] != '.';
  ::closedir(dir);
  return n;
}

// What the admin socket says about sessions and device commands.
struct AdminView {
  std::size_t sessions = 0;
  std::uint64_t queues = 0;
  std::uint64_t qpair_depth = 0;  // command ids in use over every backend queue pair
  std::uint64_t regions = 0;      // client arenas registered with the controller
  bool ok = false;
  // The baseline: the neighbour's session, its one queue and arena, and on the device at most its
  // single request.
  bool at_baseline() const { return ok && sessions == 1 && queues == 1 && regions == 1 && qpair_depth <= 1; }
};

AdminView admin_view(const std::string& socket) {
  AdminView v;
  auto sessions = rpc::call(rpc::rpc_socket_beside(socket), "session_get_list", json::object(), 5000);
  auto qpairs = rpc::call(rpc::rpc_socket_beside(socket), "qpair_get_stats", json::object(), 5000);
  auto daemon = rpc::call(rpc::rpc_socket_beside(socket), "nvmuxd_get_stats", json::object(), 5000);
  for (const auto* answer : {&sessions, &qpairs, &daemon}) {
    if (!answer->ok() || !(*answer)->contains("result")) return v;
  }
  v.sessions = (*sessions)["result"].size();
  for (const json& s : (*sessions)["result"]) v.queues += s["queues"].get<std::uint64_t>();
  for (const json& q : (*qpairs)["result"]) v.qpair_depth += q["depth"].get<std::uint64_t>();
  v.regions = (*daemon)["result"]["registered_regions"].get<std::uint64_t>();
  v.ok = true;
  return v;
}

// A client that keeps 32 writes and reads in flight in the lower half of namespace 1 until killed.
[[noreturn]] void busy_client(const std::string& socket, int seed) {
  auto client = Client::connect(socket);
  if (!client.ok()) _exit(3);
  auto q = (*client)->create_queue(32);
  if (!q.ok()) _exit(4);
  auto* bufs = static_cast<std::byte*>((*client)->buf_alloc(32 * kBlock));
  const std::uint64_t half = (*client)->namespace_info(1).value().blocks / 2;
  std::mt19937_64 rng(static_cast<std::uint64_t>(seed));
  auto cb = [](void*, const nvmux_cpl*) {};
  while (true) {
    for (std::uint32_t i = 0; (*q)->in_flight() < 32 && i < 32; ++i) {
      const bool write = rng() % 2 == 0;
      std::byte* buf = bufs + (rng() % 32) * kBlock;
      (void)(write ? (*q)->write(1, rng() % half, 1, buf, cb, nullptr)
                   : (*q)->read(1, rng() % half, 1, buf, cb, nullptr));
    }
    if (!(*q)->poll().ok()) _exit(5);
  }
}

TEST(ServiceCrash, ClientsKilledMidIoLeaveTheDaemonAtItsBaseline) {
  const std::string socket = fmt::format("/tmp/nvmux-crash-{}.sock", ::getpid());
  test::NvmuxdProcess daemon(NVMUXD_BINARY, socket,
                             {"--ns", "ram:size=64M", "--cores", "0", "--max-qpairs", "2", "--log-level", "error"});
  ASSERT_TRUE(daemon.ready()) << daemon.output();
  {  // both owners exist before the baseline: owners live as long as the daemon
    auto warm_up = Client::connect(socket).value();
    auto q1 = warm_up->create_queue(1).value();
    auto q2 = warm_up->create_queue(1).value();
  }
  test::VerifyingNeighbour neighbour;
  std::thread verifying([&] { neighbour.run(socket); });
  // Baseline: the neighbour's session and queue, nothing else.
  AdminView baseline;
  for (std::uint64_t t0 = monotonic_ns(); monotonic_ns() - t0 < 10 * kSecondNs;) {
    baseline = admin_view(socket);
    if (baseline.at_baseline()) break;
  }
  ASSERT_TRUE(baseline.at_baseline()) << baseline.sessions << " sessions, " << baseline.regions << " arenas";
  const std::size_t baseline_fds = open_fds(daemon.pid());

  const int kills = static_cast<int>(test::stress_count(200, 20));
  std::uint64_t worst_cleanup_ns = 0;
  int not_settled = 0;
  for (int k = 0; k < kills; ++k) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) busy_client(socket, k);
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + (k % 8) * 5));
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    const std::uint64_t t0 = monotonic_ns();
    AdminView v;
    do {
      v = admin_view(socket);
    } while (!v.at_baseline() && monotonic_ns() - t0 < 10 * kSecondNs);
    worst_cleanup_ns = std::max(worst_cleanup_ns, monotonic_ns() - t0);
    if (!v.at_baseline()) {
      ++not_settled;
      ADD_FAILURE() << "after kill " << k << ": " << v.sessions << " sessions, " << v.queues << " queues, " << v.regions
                    << " registered arenas, " << v.qpair_depth << " device commands";
      break;
    }
  }
  neighbour.stop = true;
  verifying.join();
  std::printf(
      "%d clients killed mid-I/O; worst time back to the baseline %.1f ms; the neighbour verified %llu blocks\n", kills,
      static_cast<double>(worst_cleanup_ns) / 1e6, static_cast<unsigned long long>(neighbour.verified));
  EXPECT_EQ(not_settled, 0);
  EXPECT_EQ(neighbour.errors, 0u) << neighbour.first_problem;
  EXPECT_EQ(neighbour.mismatches, 0u) << neighbour.first_problem;
  EXPECT_GT(neighbour.verified, 0u);
  std::size_t fds = 0;
  for (std::uint64_t t0 = monotonic_ns(); monotonic_ns() - t0 < 10 * kSecondNs;) {
    if ((fds = open_fds(daemon.pid())) <= baseline_fds) break;
  }
  EXPECT_LE(fds, baseline_fds) << "the daemon keeps descriptors of dead sessions";
  EXPECT_EQ(daemon.stop(), 0);
}

// Block layout: [0] LBA, [1] generation, [2..] a function of both. Generation 0: never written.
void stamp(std::byte* block, std::uint64_t lba, std::uint64_t generation) {
  auto* w = reinterpret_cast<std::uint64_t*>(block);
  w[0] = lba;
  w[1] = generation;
  for (std::size_t i = 2; i < kBlock / 8; ++i)
    w[i] = (lba * 0x9e3779b97f4a7c15ull) ^ (generation * 0xff51afd7ed558ccdull) ^ i;
}

// The generation a block holds, or nullopt when it is not one whole stamped block (all zero: 0).
std::optional<std::uint64_t> generation_of(const std::byte* block, std::uint64_t lba) {
  const auto* w = reinterpret_cast<const std::uint64_t*>(block);
  bool zero = true;
  for (std::size_t i = 0; i < kBlock / 8 && zero; ++i) zero = w[i] == 0;
  if (zero) return 0;
  std::vector<std::byte> expect(kBlock);
  stamp(expect.data(), lba, w[1]);
  if (w[0] != lba || std::memcmp(block, expect.data(), kBlock) != 0) return std::nullopt;
  return w[1];
}

TEST(ServiceCrash, ADaemonKilledMidIoLosesNoFlushedWrite) {
  constexpr std::uint64_t kLbas = 256;
  constexpr std::uint32_t kDepth = 16;
  const std::string socket = fmt::format("/tmp/nvmux-crash-d-{}.sock", ::getpid());
  const std::string image = (std::filesystem::current_path() / fmt::format("crash-{}.img", ::getpid())).string();
  struct RemoveAtEnd {  // on every way out, a failed assertion included
    std::string path;
    ~RemoveAtEnd() { std::filesystem::remove(path); }
  } remove_at_end{image};
  const std::vector<std::string> args{"--backend", "uring", "--ns",        "file:" + image + ",size=16M",
                                      "--cores",   "0",     "--log-level", "error"};
  std::vector<std::uint64_t> durable(kLbas, 0), submitted(kLbas, 0);
  std::uint64_t generation = 0, writes_durable = 0, checked = 0;
  std::uint64_t worst_detect_ns = 0;
  std::mt19937_64 rng(11);
  const int kills = static_cast<int>(test::stress_count(50, 5));
  for (int round = 0; round <= kills; ++round) {
    test::NvmuxdProcess daemon(NVMUXD_BINARY, socket, args);
    ASSERT_TRUE(daemon.ready()) << "round " << round << ": " << daemon.output();
    auto client = Client::connect(socket).value();
    auto q = client->create_queue(kDepth).value();
    auto* bufs = static_cast<std::byte*>(client->buf_alloc(kDepth * kBlock));
    struct Slot {
      bool busy = false, done = false, write = false;
      int status = 0;
      std::uint64_t lba = 0, generation = 0;
    };
    std::vector<Slot> slots(kDepth);
    auto cb = [](void* ctx, const nvmux_cpl* c) {
      static_cast<Slot*>(ctx)->done = true;
      static_cast<Slot*>(ctx)->status = c->status;
    };
    // Everything a restarted daemon serves must lie between what was flushed and what was sent.
    for (std::uint64_t lba = 0; lba < kLbas; ++lba) {
      Slot& s = slots[0];
      s = Slot{};
      ASSERT_TRUE(q->read(1, lba, 1, bufs, cb, &s).ok());
      for (std::uint64_t t0 = monotonic_ns(); !s.done && monotonic_ns() - t0 < 10 * kSecondNs;) (void)q->wait(100);
      ASSERT_TRUE(s.done && s.status == 0) << "round " << round << " LBA " << lba << ": " << s.status;
      const auto g = generation_of(bufs, lba);
      ASSERT_TRUE(g.has_value()) << "round " << round << ": LBA " << lba << " holds a torn or foreign block";
      ASSERT_GE(*g, durable[lba]) << "round " << round << ": LBA " << lba << " lost a flushed write";
      ASSERT_LE(*g, submitted[lba]) << "round " << round << ": LBA " << lba << " holds a write never sent";
      ++checked;
    }
    if (round == kills) break;
    // Writes, and a flush after every 8 completed ones; kill the daemon after 20..80 ms.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> completed_writes, covered_by_flush;
    Slot flush;
    bool flushing = false;
    std::vector<bool> lba_busy(kLbas, false);
    const std::uint64_t kill_at = monotonic_ns() + (20 + rng() % 60) * 1'000'000ull;
    bool killed = false;
    std::uint64_t killed_ns = 0;
    while (true) {
      if (!killed && monotonic_ns() >= kill_at) {
        ::kill(daemon.pid(), SIGKILL);
        killed = true;
        killed_ns = monotonic_ns();
      }
      for (std::uint32_t i = 0; i < kDepth && !killed; ++i) {
        Slot& s = slots[i];
        if (s.busy) continue;
        const std::uint64_t lba = rng() % kLbas;
        if (lba_busy[lba]) continue;
        s = Slot{true, false, true, 0, lba, ++generation};
        stamp(bufs + i * kBlock, lba, s.generation);
        if (!q->write(1, lba, 1, bufs + i * kBlock, cb, &s).ok()) {
          s.busy = false;
          break;
        }
        lba_busy[lba] = true;
        submitted[lba] = std::max(submitted[lba], s.generation);
      }
      if (!flushing && completed_writes.size() >= 8 && !killed) {
        flush = Slot{};
        if (q->flush(1, cb, &flush).ok()) {
          flushing = true;
          covered_by_flush.swap(completed_writes);
          completed_writes.clear();
        }
      }
      const auto polled = q->poll();
      for (Slot& s : slots) {
        if (!s.busy || !s.done) continue;
        s.busy = false;
        lba_busy[s.lba] = false;
        if (s.status == 0) completed_writes.emplace_back(s.lba, s.generation);
      }
      if (flushing && flush.done) {
        flushing = false;
        if (flush.status == 0) {
          for (const auto& [lba, g] : covered_by_flush) durable[lba] = std::max(durable[lba], g);
          writes_durable += covered_by_flush.size();
        }
        covered_by_flush.clear();
      }
      if (!polled.ok()) {
        ASSERT_TRUE(killed) << "round " << round << ": " << polled.status().to_string();
        EXPECT_EQ(polled.status().to_errno(), -ENOTCONN);
        worst_detect_ns = std::max(worst_detect_ns, monotonic_ns() - killed_ns);
        break;
      }
      ASSERT_LT(monotonic_ns(), kill_at + 5 * kSecondNs) << "the client never saw the daemon die";
    }
    for (const Slot& s : slots) EXPECT_FALSE(s.busy && !s.done) << "a request never got its -ECANCELED";
    daemon.stop(SIGKILL);
  }
  std::printf(
      "%d daemon kills mid-I/O: %llu writes flushed and %llu blocks checked after restarts, 0 lost; "
      "worst time for a client to see the daemon gone %.1f ms\n",
      kills, static_cast<unsigned long long>(writes_durable), static_cast<unsigned long long>(checked),
      static_cast<double>(worst_detect_ns) / 1e6);
  EXPECT_LT(worst_detect_ns, kSecondNs);
  EXPECT_GT(writes_durable, 0u);
}

}  // namespace
}  // namespace nvmux::service
