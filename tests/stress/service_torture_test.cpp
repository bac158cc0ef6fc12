// nvmuxd under attack: nvmux-torture (a hostile client, in its own process) attacks a real daemon
// while this process verifies its own data through the same daemon. Pass: the torture tool finds
// no failure, this process sees 0 errors and 0 mismatches throughout, and afterwards the daemon
// is back to its baseline (sessions, queues, requests in flight, open file descriptors).
//
// Counts scale with NVMUX_STRESS_SCALE (and down under the sanitizers): NVMUX_STRESS_SCALE=5 is
// the full run, 8000 rounds (1000 of each attack, garbage included) and 10^6 hostile descriptors.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "nvmux/common/cpu.hpp"
#include "nvmux/service/client.hpp"
#include "support/nvmuxd_process.hpp"
#include "support/test_scale.hpp"
#include "support/verifying_neighbour.hpp"

namespace nvmux::service {
namespace {

constexpr std::uint64_t kDeadlineNs = 30'000'000'000ull;

std::size_t open_fds(pid_t pid) {
  std::size_t n = 0;
  DIR* dir = ::opendir(fmt::format("/proc/{}/fd", pid).c_str());
  if (dir == nullptr) return 0;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

// Runs `cmd` and returns its exit status, its output in `out`.
int run(const std::string& cmd, std::string& out) {
  FILE* pipe = ::popen((cmd + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  while (std::fgets(buf, sizeof(buf), pipe) != nullptr) out += buf;
  return ::pclose(pipe);
}

TEST(ServiceTorture, AHostileClientNeitherTakesTheDaemonDownNorTouchesItsNeighbour) {
  const std::string socket = fmt::format("/tmp/nvmux-torture-{}.sock", ::getpid());
  // Two owners at most, both created before the baseline is taken: owners (a thread and its
  // descriptors each) live as long as the daemon, so later ones would look like a leak.
  test::NvmuxdProcess daemon(NVMUXD_BINARY, socket,
                             {"--ns", "ram:size=64M", "--cores", "0", "--max-qpairs", "2", "--log-level", "error"});
  ASSERT_TRUE(daemon.ready()) << daemon.output();
  {
    auto warm_up = Client::connect(socket).value();
    auto q1 = warm_up->create_queue(1).value();
    auto q2 = warm_up->create_queue(1).value();
  }
  auto watcher = Client::connect(socket).value();
  DaemonStats baseline;
  const std::uint64_t settle = monotonic_ns() + kDeadlineNs;
  do {
    baseline = watcher->daemon_stats().value();
  } while (baseline.sessions != 1 && monotonic_ns() < settle);
  const std::size_t baseline_fds = open_fds(daemon.pid());

  test::VerifyingNeighbour verifier;
  std::thread neighbour([&] { verifier.run(socket); });
  // make test: 200 rounds of each attack and 2 * 10^5 descriptors (~25 s); NVMUX_STRESS_SCALE=5
  // gives the full counts (make bench runs it so).
  const std::uint64_t rounds = test::stress_count(1600, 80);
  const std::uint64_t descriptors = test::stress_count(200'000, 20'000);
  std::string out;
  const std::uint64_t t0 = monotonic_ns();
  const int status = run(fmt::format("{} --socket {} --rounds {} --descriptors {} --partition 0/2",
                                     NVMUX_TORTURE_BINARY, socket, rounds, descriptors),
                         out);
  const double seconds = static_cast<double>(monotonic_ns() - t0) / 1e9;
  verifier.stop = true;
  neighbour.join();
  std::printf("%s(%.1f s) the neighbour verified %llu blocks meanwhile\n", out.c_str(), seconds,
              static_cast<unsigned long long>(verifier.verified));

  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  EXPECT_NE(out.find("the daemon held: 0 failures"), std::string::npos) << out;
  EXPECT_EQ(verifier.errors, 0u) << verifier.first_problem;
  EXPECT_EQ(verifier.mismatches, 0u) << verifier.first_problem;
  EXPECT_GT(verifier.verified, 0u);

  // Back to the baseline: only the watcher's session, nothing in flight, no descriptor kept.
  DaemonStats after;
  const std::uint64_t deadline = monotonic_ns() + kDeadlineNs;
  do {
    after = watcher->daemon_stats().value();
  } while ((after.sessions != baseline.sessions || after.in_flight != 0) && monotonic_ns() < deadline);
  EXPECT_EQ(after.sessions, baseline.sessions);
  EXPECT_EQ(after.queues, baseline.queues);
  EXPECT_EQ(after.in_flight, 0u);
  EXPECT_EQ(open_fds(daemon.pid()), baseline_fds) << "the daemon keeps descriptors it was sent or gave out";
  EXPECT_EQ(daemon.stop(), 0) << "nvmuxd did not stop cleanly after the attack";
}

// A client that fills its SQ and stops reading its CQ leaves descriptors the owner has no CQ room
// for: they are not work, so the owner goes back to sleep instead of spinning on them for as long
// as the client holds out, and it drains them once the client reads its CQ again. The daemon's
// CPU is sampled over one second in the middle of a 2.5 s hold (filling takes milliseconds).
TEST(ServiceTorture, AClientThatStopsReadingItsCqDoesNotKeepTheOwnerSpinning) {
  const std::string socket = fmt::format("/tmp/nvmux-unread-{}.sock", ::getpid());
  test::NvmuxdProcess daemon(NVMUXD_BINARY, socket, {"--ns", "ram:size=64M", "--cores", "0", "--log-level", "error"});
  ASSERT_TRUE(daemon.ready()) << daemon.output();
  std::string out;
  int status = -1;
  std::thread hostile([&] {
    status = run(
        fmt::format("{} --socket {} --attacks unread --rounds 1 --unread-hold-ms 2500", NVMUX_TORTURE_BINARY, socket),
        out);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  const double cpu_before = daemon.cpu_seconds();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const double cpu = daemon.cpu_seconds() - cpu_before;
  hostile.join();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  EXPECT_NE(out.find("the daemon held: 0 failures"), std::string::npos) << out;
  // Spinning costs the daemon a core (a fifth of one on a machine busy with two compilers).
  EXPECT_LT(cpu, 0.05) << "the daemon used " << cpu << " s of CPU in 1 s while the client's CQ stayed full";
  std::printf("with the client's CQ full, the daemon used %.3f s of CPU in 1 s\n", cpu);
}

}  // namespace
}  // namespace nvmux::service
