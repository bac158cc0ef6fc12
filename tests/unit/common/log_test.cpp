// NVMUX_LOG_LEVEL decides what the nvmux logger prints, debug included: NVMUX_LOG_DEBUG is not
// compiled out, so a user who asks for debug gets it.
#include "nvmux/common/log.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace nvmux {
namespace {

TEST(Log, DebugLevelFromTheEnvironmentShowsDebugMessages) {
  // The first init_logging of the process decides the level; this binary has no other test.
  ASSERT_EQ(::setenv("NVMUX_LOG_LEVEL", "debug", 1), 0);
  init_logging("warn");
  testing::internal::CaptureStderr();
  NVMUX_LOG_DEBUG("debug line {}", 42);
  NVMUX_LOG_INFO("info line {}", 7);
  spdlog::default_logger()->flush();
  std::string out = testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("debug line 42"), std::string::npos) << out;
  EXPECT_NE(out.find("info line 7"), std::string::npos) << out;

  spdlog::set_level(spdlog::level::info);
  testing::internal::CaptureStderr();
  NVMUX_LOG_DEBUG("hidden line");
  spdlog::default_logger()->flush();
  out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.find("hidden line"), std::string::npos) << "debug shown at level info: " << out;
}

}  // namespace
}  // namespace nvmux
