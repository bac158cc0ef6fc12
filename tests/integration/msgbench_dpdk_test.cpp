// The DPDK modes (spdk, spdk-rts) deliver every message: real EAL, real rte_mempool and rte_ring.
// Each test runs in its own process under CTest, which starts and cleans up its own EAL.

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "msgbench.hpp"

namespace mb = nvmux::msgbench;

namespace {

class ReleaseDpdkAtExit : public ::testing::Environment {
 public:
  void TearDown() override { mb::release_environment(); }
};
[[maybe_unused]] auto* const g_release = ::testing::AddGlobalTestEnvironment(new ReleaseDpdkAtExit);

mb::PointOptions short_point() {
  mb::PointOptions o;
  o.duration_s = 0.3;
  o.warmup_s = 0.05;
  return o;
}

void expect_complete(const mb::PointResult& r) {
  SCOPED_TRACE(r.mode + " P=" + std::to_string(r.producers) + " C=" + std::to_string(r.consumers) + " " +
               r.stall_reason);
  EXPECT_GT(r.sent, 0u);
  EXPECT_EQ(r.executed, r.sent) << "every sent message must run exactly once";
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.out_of_order, 0u);
  EXPECT_EQ(r.unbalanced_pairs, 0u);
}

class DpdkDelivery : public ::testing::TestWithParam<std::string> {};

TEST_P(DpdkDelivery, OneProducerTwoConsumersEveryMessageOnceInOrder) {
  auto r = mb::run_point(GetParam(), 1, 2, short_point());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  expect_complete(*r);
  // Not asserted: !stalled. The two consumers return messages to the pool through one
  // multi-producer ring, so a preempted consumer can hold up the other on a loaded machine.
}

// With more producers than cores the MP ring may collapse (that is what the benchmark shows), but
// whatever was sent must still arrive, and the point must end within its bounds.
TEST_P(DpdkDelivery, ThreeProducersOneConsumerDeliverEverythingEvenWhenCollapsing) {
  auto r = mb::run_point(GetParam(), 3, 1, short_point());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  expect_complete(*r);
}

TEST_P(DpdkDelivery, RepeatedPointsReuseOneEalAndFreeTheirPools) {
  for (int i = 0; i < 3; ++i) {
    auto r = mb::run_point(GetParam(), 1, 1, short_point());
    ASSERT_TRUE(r.ok()) << "point " << i << ": " << r.status().to_string();
    expect_complete(*r);
    // One producer and one consumer: no ring or pool operation has a second thread to wait for.
    EXPECT_FALSE(r->stalled) << "point " << i << ": " << r->stall_reason;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, DpdkDelivery, ::testing::Values("spdk", "spdk-rts"), [](const auto& info) {
  std::string n = info.param;
  for (char& ch : n) ch = (ch == '-') ? '_' : ch;
  return n;
});

// The EAL cannot start again after cleanup, so this runs in a freshly executed child process.
void release_in_fresh_process() {
  auto r = mb::run_point("spdk", 1, 1, short_point());
  if (!r.ok()) {
    std::fprintf(stderr, "point failed: %s\n", r.status().to_string().c_str());
    std::exit(1);
  }
  mb::release_environment();
  std::string prefix = "nvmux-msgbench-" + std::to_string(getpid());
  for (const char* base : {"/var/run/dpdk", "/tmp/dpdk"}) {
    if (std::filesystem::exists(std::string(base) + "/" + prefix)) {
      std::fprintf(stderr, "%s/%s left behind\n", base, prefix.c_str());
      std::exit(2);
    }
  }
  auto again = mb::run_point("spdk", 1, 1, short_point());
  if (again.status().code() != nvmux::StatusCode::kUnavailable) {
    std::fprintf(stderr, "a second EAL start did not fail cleanly: %s\n", again.status().to_string().c_str());
    std::exit(3);
  }
  std::exit(0);
}

TEST(DpdkEnvironment, ReleaseLeavesNoRuntimeDirectoryAndRefusesARestart) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(release_in_fresh_process(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
