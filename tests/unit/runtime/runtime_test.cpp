// Runtime options, thread creation and the lifecycle, without reactors (manual mode).
#include "nvmux/runtime/runtime.hpp"

#include <gtest/gtest.h>

#include <memory>

namespace nvmux {
namespace {

Status create_status(RuntimeOptions options) { return Runtime::create(std::move(options)).status(); }

TEST(RuntimeOptions, BadValuesAreInvalidArgumentNamingTheField) {
  RuntimeOptions o;
  o.cores = {};
  Status s = create_status(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("cores"), std::string::npos) << s.message();

  o = RuntimeOptions{};
  o.cores = {0, 0};
  s = create_status(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("twice"), std::string::npos) << s.message();

  o = RuntimeOptions{};
  o.cores = {100000};
  EXPECT_EQ(create_status(o).code(), StatusCode::kInvalidArgument);

  o = RuntimeOptions{};
  o.lane_capacity = 1000;
  s = create_status(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("lane_capacity is 1000"), std::string::npos) << s.message();

  o = RuntimeOptions{};
  o.drain_batch = 0;
  s = create_status(o);
  EXPECT_NE(s.message().find("drain_batch"), std::string::npos) << s.message();

  o = RuntimeOptions{};
  o.dispatcher_core = -2;
  EXPECT_EQ(create_status(o).code(), StatusCode::kInvalidArgument);

  o = RuntimeOptions{};
  o.max_sleep_us = 0;
  EXPECT_EQ(create_status(o).code(), StatusCode::kInvalidArgument);

  o = RuntimeOptions{};
  o.busy_threshold = 1.5;
  EXPECT_EQ(create_status(o).code(), StatusCode::kInvalidArgument);

  EXPECT_TRUE(create_status(RuntimeOptions{}).ok());
}

TEST(Runtime, CreateThreadChecksNamesAndCores) {
  auto rt = Runtime::create({}).value();
  auto a = rt->create_thread("a");
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ((*a)->name(), "a");
  EXPECT_EQ(rt->create_thread("a").status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(rt->create_thread("").status().code(), StatusCode::kInvalidArgument);
  auto bad = rt->create_thread("b", 1234);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("1234"), std::string::npos);
  auto bound = rt->create_thread("c", 0);
  ASSERT_TRUE(bound.ok());
  EXPECT_EQ((*bound)->bound_core(), 0);
  EXPECT_EQ(rt->move_thread(**bound, 0).code(), StatusCode::kInvalidArgument) << "bound threads never move";
  EXPECT_NE((*a)->serial(), (*bound)->serial());
}

TEST(Runtime, DispatcherSchemeHasItsOwnReactorAndThread) {
  RuntimeOptions o;
  o.scheme = MessageScheme::kDispatcher;
  auto rt = Runtime::create(o).value();
  ASSERT_NE(rt->dispatcher_thread(), nullptr);
  EXPECT_TRUE(rt->dispatcher_thread()->is_dispatcher());
  EXPECT_EQ(rt->dispatcher_thread()->reactor_index(), rt->reactor_count());
  EXPECT_EQ(rt->stats().reactors.size(), 2u);
  EXPECT_TRUE(rt->stats().reactors.back().dispatcher);
}

TEST(Runtime, StopBeforeStartDropsAndReportsQueuedMessages) {
  auto rt = Runtime::create({}).value();
  Thread* t = rt->create_thread("t").value();
  auto token = std::make_shared<int>(0);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(send_msg(*t, [token] { ++*token; }).ok());
  EXPECT_EQ(token.use_count(), 4);
  Status s = rt->stop();
  EXPECT_EQ(s.code(), StatusCode::kAborted);
  EXPECT_NE(s.message().find("dropped 3"), std::string::npos) << s.message();
  EXPECT_EQ(*token, 0) << "dropped messages do not run";
  EXPECT_EQ(token.use_count(), 1) << "dropped messages are destroyed";
  EXPECT_TRUE(rt->stop().ok()) << "stop is idempotent";
  EXPECT_EQ(send_msg(*t, [] {}).code(), StatusCode::kUnavailable);
  EXPECT_EQ(rt->start().code(), StatusCode::kUnavailable) << "a stopped runtime does not restart";
  EXPECT_EQ(rt->stats().dropped_messages, 3u);
}

TEST(Runtime, PollThreadOnlyInManualMode) {
  auto rt = Runtime::create({}).value();
  Thread* t = rt->create_thread("t").value();
  EXPECT_TRUE(rt->poll_thread(*t, 0).ok());
  ASSERT_TRUE(rt->stop().ok());
  EXPECT_EQ(rt->poll_thread(*t, 0).status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace nvmux
