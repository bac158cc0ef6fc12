// nvmux-perf's engine end to end: every pattern moves data with --verify on both backends (and
// on a loop block device when the machine allows one), the report carries every JSON field, bad
// parameters name their flag, and --verify catches data that someone else corrupted underneath it.
#include "perf_engine.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "support/loop_device.hpp"
#include "support/nvmuxd_process.hpp"

namespace nvmux::perf {
namespace {

PerfParams emu_params(const char* ns = "ram:size=16M") {
  PerfParams p;
  p.backend.namespaces = {*nvme::parse_namespace_arg(ns)};
  p.backend.emu_inline_engine = true;  // deterministic, no extra thread
  p.seconds = 0.3;
  p.queue_depth = 8;
  p.verify = true;
  return p;
}

std::string scratch(const std::string& name) {
  return (std::filesystem::current_path() / fmt::format("perf-test-{}-{}", ::getpid(), name)).string();
}

// A verified run on the uring backend over a scratch file of `size` at `path`.
PerfParams uring_params(const std::string& path, const std::string& size, Pattern pattern, double seconds) {
  PerfParams p;
  p.backend.backend = nvme::Backend::kUring;
  p.backend.namespaces = {*nvme::parse_namespace_arg("file:" + path + ",size=" + size)};
  p.pattern = pattern;
  p.queue_depth = 4;
  p.seconds = seconds;
  p.verify = true;
  return p;
}

TEST(Perf, EveryPatternVerifiesOnEmu) {
  for (Pattern pattern :
       {Pattern::kRead, Pattern::kWrite, Pattern::kRandRead, Pattern::kRandWrite, Pattern::kRw, Pattern::kRandRw}) {
    PerfParams p = emu_params();
    p.pattern = pattern;
    auto r = run_perf(p);
    ASSERT_TRUE(r.ok()) << to_string(pattern) << ": " << r.status().to_string();
    EXPECT_GT(r->total.ios, 0u) << to_string(pattern);
    EXPECT_EQ(r->total.io_errors, 0u);
    EXPECT_EQ(r->total.verify_errors, 0u) << to_string(pattern);
    if (pattern == Pattern::kRead || pattern == Pattern::kRandRead) {
      EXPECT_EQ(r->total.writes, 0u);
    }
  }
}

TEST(Perf, TwoQueuePairsOnTheirOwnThreadsVerifyOnUring) {
  std::string path = scratch("uring.img");
  PerfParams p = uring_params(path, "8M", Pattern::kRandRw, 0.5);
  p.qpairs = 2;
  auto r = run_perf(p);
  std::filesystem::remove(path);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->qpairs.size(), 2u);
  for (const auto& q : r->qpairs) EXPECT_GT(q.ios, 0u) << q.name;
  EXPECT_GT(r->total.reads, 0u);
  EXPECT_EQ(r->total.verify_errors, 0u);
}

TEST(Perf, VerifiesOnABlockDevice) {
  auto loop = nvmux::test::LoopDevice::attach(scratch("bdev.img"), 8u << 20);
  if (!loop.ok()) GTEST_SKIP() << "no loop device here: " << loop.status().to_string();
  PerfParams p;
  p.backend.backend = nvme::Backend::kUring;
  auto ns = nvme::parse_namespace_arg("bdev:" + loop->path());  // --ns bdev:/dev/loopN
  ASSERT_TRUE(ns.ok()) << ns.status().to_string();
  p.backend.namespaces = {*ns};
  p.pattern = Pattern::kRandRw;
  p.queue_depth = 8;
  p.seconds = 0.5;
  p.verify = true;
  auto r = run_perf(p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_GT(r->total.reads, 0u);
  EXPECT_GT(r->total.writes, 0u);
  EXPECT_EQ(r->total.io_errors, 0u);
  EXPECT_EQ(r->total.verify_errors, 0u);
}

TEST(Perf, JsonHasEveryField) {
  PerfParams p = emu_params();
  p.latency_percentiles = true;
  auto r = run_perf(p);
  ASSERT_TRUE(r.ok());
  auto j = report_to_json(*r);
  for (const char* key : {"params", "qpairs", "total", "verify_errors"}) EXPECT_TRUE(j.contains(key)) << key;
  for (const char* key : {"iops", "mib_per_sec", "latency_us"}) EXPECT_TRUE(j["total"].contains(key)) << key;
  for (const char* key : {"avg", "min", "max", "p50", "p99", "p999"})
    EXPECT_TRUE(j["total"]["latency_us"].contains(key)) << key;
  EXPECT_GT(j["total"]["iops"].get<double>(), 0);
  EXPECT_EQ(j["qpairs"].size(), 1u);
  std::string table = format_report(*r);
  EXPECT_NE(table.find("Total"), std::string::npos);
  EXPECT_NE(table.find("p99.99"), std::string::npos);
}

TEST(Perf, JsonHistogramHoldsEveryMeasuredIoAndItsPercentiles) {
  auto r = run_perf(emu_params());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  auto j = report_to_json(*r);
  const auto& buckets = j["total"]["latency_histogram_us"];
  ASSERT_FALSE(buckets.empty());
  std::uint64_t count = 0;
  double previous_to = 0;
  for (const auto& b : buckets) {
    double from = b[0].get<double>(), to = b[1].get<double>();
    EXPECT_LT(from, to);
    EXPECT_GE(from, previous_to) << "buckets ascend and do not overlap";
    previous_to = to;
    count += b[2].get<std::uint64_t>();
  }
  EXPECT_EQ(count, j["total"]["ios"].get<std::uint64_t>());
  // The reported median lies in the bucket where the cumulative count reaches half.
  std::uint64_t seen = 0;
  for (const auto& b : buckets) {
    seen += b[2].get<std::uint64_t>();
    if (2 * seen >= count) {
      double p50 = j["total"]["latency_us"]["p50"].get<double>();
      EXPECT_GE(p50, b[0].get<double>() - 0.001);
      EXPECT_LE(p50, b[1].get<double>() + 0.001);
      break;
    }
  }
}

TEST(Perf, IodepthLowRefillsOnlyAnEmptiedQueue) {
  PerfParams p = emu_params();
  p.pattern = Pattern::kRandRw;
  p.backend.emu_inline_engine = false;  // completions arrive one by one from the device thread
  p.iodepth_low = 0;                    // wait until all 8 are back, then submit 8
  auto r = run_perf(p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_GT(r->total.refills, 0u);
  EXPECT_EQ(r->total.submitted, r->total.refills * p.queue_depth) << "every refill fills the whole queue";
  EXPECT_EQ(r->total.verify_errors, 0u);
  EXPECT_EQ(report_to_json(*r)["params"]["iodepth_low"], 0);
  EXPECT_DOUBLE_EQ(report_to_json(*r)["total"]["avg_submit_batch"].get<double>(), 8.0);
}

TEST(Perf, OneCompletionPerPollRefillsOneSlotAtATime) {
  PerfParams p = emu_params();
  p.verify = false;                     // every unit pick succeeds, so each refill is exact
  p.backend.emu_inline_engine = false;  // completions arrive in bursts from the device thread
  p.max_completions_per_poll = 1;       // -C 1
  auto r = run_perf(p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_GT(r->total.refills, 1u);
  // The first refill fills the empty queue; every later one replaces the one completion handled.
  EXPECT_EQ(r->total.submitted, r->total.refills + p.queue_depth - 1);
  EXPECT_EQ(report_to_json(*r)["params"]["max_completions_per_poll"], 1);

  p.max_completions_per_poll = 0;  // all the poll finds: bursts come back as bigger refills
  auto all = run_perf(p);
  ASSERT_TRUE(all.ok()) << all.status().to_string();
  EXPECT_GT(all->total.submitted, all->total.refills + p.queue_depth - 1);
}

TEST(Perf, BadParametersNameTheirFlag) {
  auto expect = [](PerfParams p, const char* words) {
    auto r = run_perf(p);
    ASSERT_FALSE(r.ok()) << words;
    EXPECT_NE(r.status().message().find(words), std::string::npos) << r.status().message();
  };
  PerfParams p = emu_params();
  p.queue_depth = 0;
  expect(p, "-q 0");
  p = emu_params();
  p.iodepth_low = 9;
  expect(p, "--iodepth-low 9: must be at most -q 8");
  p = emu_params();
  p.io_bytes = 1000;
  expect(p, "-o 1000");
  p = emu_params();
  p.read_percent = 30;  // randread
  expect(p, "-M applies to -w rw and randrw only");
  p = emu_params("ram:size=32K");
  expect(p, "fewer than twice -q 8");
  p = emu_params();
  p.cores = {999};
  expect(p, "core 999 does not exist");
}

TEST(Perf, VerifyCatchesBlocksCorruptedUnderneathIt) {
  std::string path = scratch("corrupt.img");
  PerfParams p = uring_params(path, "1M", Pattern::kRandRead, 1.0);
  std::atomic<bool> done{false};
  std::thread vandal([&] {
    // Another process's bug, simulated: scribble over the namespace file while perf reads it.
    std::vector<char> junk(4096, 'x');
    while (!done.load()) {
      int fd = ::open(path.c_str(), O_WRONLY);
      if (fd >= 0) {
        for (off_t off = 0; off < (1 << 20); off += 4096) (void)::pwrite(fd, junk.data(), junk.size(), off);
        ::close(fd);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  auto r = run_perf(p);
  done = true;
  vandal.join();
  std::filesystem::remove(path);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_GT(r->total.verify_errors, 0u) << "verify passed blocks that were overwritten with junk";
  ASSERT_FALSE(r->mismatches.empty());
  EXPECT_NE(r->mismatches[0].found.find("header lba"), std::string::npos) << r->mismatches[0].found;
}

// --backend service: the same engine through a real nvmuxd child process.
class PerfService : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = scratch("nvmuxd.sock");
    daemon_ = std::make_unique<test::NvmuxdProcess>(
        NVMUXD_BINARY, socket_,
        std::vector<std::string>{"--ns", "ram:size=64M", "--cores", "0", "--log-level", "warn"});
    ASSERT_TRUE(daemon_->ready()) << "nvmuxd did not start: " << daemon_->output();
  }
  PerfParams service_params() const {
    PerfParams p;
    p.service = true;
    p.socket = socket_;
    p.pattern = Pattern::kRandRw;
    p.queue_depth = 8;
    p.seconds = 0.3;
    p.verify = true;
    return p;
  }
  // Runs the nvmux-perf binary with `args`; returns its exit status and fills `out`.
  static int run_binary(const std::vector<std::string>& args, std::string& out) {
    std::string cmd = NVMUX_PERF_BINARY;
    for (const auto& a : args) cmd += " '" + a + "'";
    cmd += " 2>&1";
    FILE* pipe = popen(cmd.c_str(), "r");
    if (pipe == nullptr) return -1;
    char buf[4096];
    while (std::fgets(buf, sizeof(buf), pipe) != nullptr) out += buf;
    return pclose(pipe);
  }

  std::string socket_;
  std::unique_ptr<test::NvmuxdProcess> daemon_;
};

TEST_F(PerfService, VerifiesThroughNvmuxdWithTwoQueues) {
  PerfParams p = service_params();
  p.qpairs = 2;
  auto r = run_perf(p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->qpairs.size(), 2u);
  EXPECT_GT(r->total.reads, 0u);
  EXPECT_GT(r->total.writes, 0u);
  EXPECT_EQ(r->total.io_errors, 0u);
  EXPECT_EQ(r->total.verify_errors, 0u);
  EXPECT_NE(r->controller.find("nvmuxd " + socket_), std::string::npos) << r->controller;
  EXPECT_NE(r->qpairs[0].name.find("nvmuxd-s"), std::string::npos) << r->qpairs[0].name;
  auto j = report_to_json(*r);
  EXPECT_EQ(j["params"]["backend"], "service");
  EXPECT_EQ(j["params"]["socket"], socket_);
  EXPECT_EQ(j["params"]["nsid"], 1);
}

TEST_F(PerfService, WaitModeSleepsForCompletionsAndStillVerifies) {
  PerfParams p = service_params();
  p.queue_depth = 1;
  p.wait_for_completions = true;
  auto r = run_perf(p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_GT(r->total.ios, 0u);
  EXPECT_EQ(r->total.verify_errors, 0u);
  EXPECT_EQ(r->total.io_errors, 0u);
}

// Four processes verify one namespace side by side, each in its own --partition: a range that
// overlapped another's would show up as mismatches (each process expects only its own writes).
TEST_F(PerfService, FourVerifyingProcessesSharePartitionsOfOneNamespace) {
  std::vector<std::string> outputs(4);
  std::vector<int> statuses(4);
  std::vector<std::thread> runs;
  for (int k = 0; k < 4; ++k) {
    runs.emplace_back([&, k] {
      statuses[k] = run_binary({"--backend", "service", "--socket", socket_, "-w", "randrw", "-q", "8", "-t", "1",
                                "--verify", "--partition", fmt::format("{}/4", k)},
                               outputs[k]);
    });
  }
  for (auto& t : runs) t.join();
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(statuses[k], 0) << outputs[k];
    EXPECT_NE(outputs[k].find(fmt::format("partition {}/4", k)), std::string::npos) << outputs[k];
    EXPECT_NE(outputs[k].find(" 0 mismatching blocks"), std::string::npos) << outputs[k];
  }
}

TEST_F(PerfService, OptionsOfAnotherBackendAreNamed) {
  std::string out;
  EXPECT_EQ(WEXITSTATUS(run_binary({"--backend", "service", "--socket", socket_, "--ns", "ram:size=1M"}, out)), 2);
  EXPECT_NE(out.find("--ns: with --backend service the daemon's namespaces are used"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(WEXITSTATUS(run_binary({"--backend", "service", "--socket", socket_, "--emu-latency-us", "5"}, out)), 2);
  EXPECT_NE(out.find("--emu-latency-us does not apply"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(WEXITSTATUS(run_binary({"--backend", "emu", "--socket", socket_}, out)), 2);
  EXPECT_NE(out.find("--socket does not apply to --backend emu"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(WEXITSTATUS(run_binary({"--backend", "servce"}, out)), 2);
  EXPECT_NE(out.find("--backend servce: unknown backend (emu, uring, vfio or service)"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(WEXITSTATUS(run_binary({"--partition", "4/4"}, out)), 2);
  EXPECT_NE(out.find("--partition '4/4'"), std::string::npos) << out;

  PerfParams p = service_params();
  p.nsid = 7;
  auto r = run_perf(p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound) << r.status().to_string();
  p = service_params();
  p.socket = scratch("no-daemon.sock");
  r = run_perf(p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().to_string();
  p = emu_params();
  p.wait_for_completions = true;
  r = run_perf(p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--wait applies to --backend service only"), std::string::npos);
}

TEST(Perf, PartitionRunsOnlyInsideItsRange) {
  // An emu namespace of 64 units split in 4: partition 3/4 has 16 units, enough for -q 8 with
  // --verify (twice the depth); 5 partitions of the same namespace leave too few and say so.
  PerfParams p = emu_params("ram:size=256K");
  p.partition = {3, 4};
  auto r = run_perf(p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->total.verify_errors, 0u);
  p.partition = {0, 5};
  r = run_perf(p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("fewer than twice -q 8"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace nvmux::perf
