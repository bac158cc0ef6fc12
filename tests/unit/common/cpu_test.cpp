#include "nvmux/common/cpu.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace nvmux {
namespace {

TEST(Cpu, PinMovesTheThreadAndUnpinRestores) {
  std::thread t([] {
    ASSERT_TRUE(pin_current_thread(0).ok());
    EXPECT_EQ(current_thread_affinity(), std::vector<int>{0});
    ASSERT_TRUE(unpin_current_thread().ok());
    EXPECT_EQ(static_cast<int>(current_thread_affinity().size()), online_cores());
  });
  t.join();
}

TEST(Cpu, CoreListsParse) {
  EXPECT_EQ(parse_core_list("0", "--cores").value(), std::vector<int>{0});
  if (online_cores() >= 2) {
    EXPECT_EQ(parse_core_list("0,1", "--cores").value(), (std::vector<int>{0, 1}));
    EXPECT_EQ(parse_core_list("0-1", "--cores").value(), (std::vector<int>{0, 1}));
    EXPECT_EQ(parse_core_list("1,0", "--cores").value(), (std::vector<int>{1, 0}));
  }
}

TEST(Cpu, BadCoreListsAreClearErrors) {
  struct Case {
    const char* text;
    const char* words;
  };
  for (const Case& c : {Case{"", "empty"}, Case{"a", "'a' is not a core number"}, Case{"1a", "'1a' is not"},
                        Case{"3-1", "runs backwards"}, Case{"0-1-5", "'0-1-5' is not"}, Case{"0,", "'' is not"},
                        Case{"0-2147483647", "not a core number"}, Case{"0,0", "listed twice"},
                        Case{"99", "core 99 does not exist"}, Case{"-1", "is not a core number"}}) {
    auto r = parse_core_list(c.text, "--cores");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("--cores"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(c.words), std::string::npos) << c.text << ": " << r.status().message();
  }
}

TEST(Cpu, PinToMissingCoreIsAClearError) {
  Status s = pin_current_thread(online_cores() + 5);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("this machine has cores 0.."), std::string::npos) << s.message();
  EXPECT_EQ(pin_current_thread(-1).code(), StatusCode::kInvalidArgument);
}

TEST(Cpu, TscCalibrationAgreesWithTheMonotonicClock) {
  EXPECT_GT(tsc_hz(), 100'000'000u);  // any machine nvmux runs on ticks faster than 100 MHz
  std::uint64_t ns0 = monotonic_ns();
  std::uint64_t t0 = read_tsc();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::uint64_t dns = monotonic_ns() - ns0;
  std::uint64_t dtsc_ns = tsc_to_ns(read_tsc() - t0);
  // Generous: sleeping threads on a loaded machine still agree within 10%.
  EXPECT_NEAR(static_cast<double>(dtsc_ns), static_cast<double>(dns), 0.1 * static_cast<double>(dns));
  EXPECT_NEAR(static_cast<double>(tsc_to_ns(ns_to_tsc(1'000'000))), 1e6, 1e3);
}

TEST(Cpu, ThreadLabelCarriesTidAndName) {
  set_current_thread_name("nvmux-label");
  std::string label = current_thread_label();
  EXPECT_NE(label.find(std::to_string(current_tid())), std::string::npos);
  EXPECT_NE(label.find("nvmux-label"), std::string::npos);
}

}  // namespace
}  // namespace nvmux
