// RuntimeStats and its JSON form.
#include "nvmux/runtime/stats.hpp"

#include <gtest/gtest.h>

#include "nvmux/runtime/runtime.hpp"

namespace nvmux {
namespace {

TEST(RuntimeStats, JsonHasEveryReactorThreadAndLane) {
  RuntimeOptions o;
  auto rt = Runtime::create(o).value();
  Thread* t = rt->create_thread("worker").value();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(send_msg(*t, [] {}).ok());
  while (rt->poll_thread(*t, 0).value()) {
  }
  nlohmann::json j = rt->stats().to_json();
  ASSERT_EQ(j["reactors"].size(), 1u);
  EXPECT_EQ(j["reactors"][0]["core"], 0);
  EXPECT_EQ(j["reactors"][0]["threads"][0], "worker");
  ASSERT_EQ(j["threads"].size(), 1u);
  EXPECT_EQ(j["threads"][0]["name"], "worker");
  EXPECT_EQ(j["threads"][0]["messages"], 100);
  EXPECT_EQ(j["threads"][0]["state"], "running");
  ASSERT_EQ(j["lanes"].size(), 1u);
  const auto& lane = j["lanes"][0];
  EXPECT_EQ(lane["target"], "worker");
  EXPECT_EQ(lane["messages"], 100);
  EXPECT_EQ(lane["sent"], 100);
  EXPECT_EQ(lane["depth"], 0);
  EXPECT_EQ(lane["high_water"], 100);
  EXPECT_EQ(lane["batch_size"]["count"], 4);  // 32 + 32 + 32 + 4
  EXPECT_EQ(lane["batch_size"]["max"], 32);
  EXPECT_TRUE(lane["latency_ns"].contains("p99_9"));
  EXPECT_EQ(j["lanes_created"], 1);
  // Round trip through text.
  EXPECT_EQ(nlohmann::json::parse(j.dump()), j);
}

}  // namespace
}  // namespace nvmux
