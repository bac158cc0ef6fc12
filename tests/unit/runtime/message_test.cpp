// The lane slot layout and the compile-time limit on message captures.
#include <gtest/gtest.h>

#include <array>
#include <functional>
#include <memory>
#include <string>

#include "nvmux/runtime/message.hpp"

namespace nvmux {
namespace {

TEST(Message, SlotIsOneCacheLine) {
  EXPECT_EQ(sizeof(detail::Message), 64u);
  EXPECT_EQ(alignof(detail::Message), 64u);
  EXPECT_EQ(kMaxMsgCaptureBytes, 48u);
}

TEST(Message, CaptureLimitIsAtCompileTime) {
  std::array<char, 40> forty{};
  int* p = nullptr;
  auto fits = [forty, p] {
    (void)forty;
    (void)p;
  };  // 48 bytes
  std::array<char, 48> big{};
  auto too_big = [big, p] {
    (void)big;
    (void)p;
  };  // 56 bytes
  static_assert(sizeof(fits) == 48);
  static_assert(detail::kFitsInMessage<decltype(fits)>);
  static_assert(!detail::kFitsInMessage<decltype(too_big)>, "a 56-byte capture must not compile with send_msg");
  struct alignas(32) Overaligned {
    void operator()() {}
  };
  static_assert(!detail::kFitsInMessage<Overaligned>);
  static_assert(!detail::kFitsInMessage<int>, "not invocable");
}

TEST(Message, RunsRelocatesAndDropsExactlyOnce) {
  auto token = std::make_shared<int>(0);
  alignas(64) std::byte a[sizeof(detail::Message)];
  alignas(64) std::byte b[sizeof(detail::Message)];
  auto* first = new (a)
      detail::Message(std::in_place_type<std::function<void()>>, 7, std::function<void()>([token] { ++*token; }));
  EXPECT_EQ(token.use_count(), 2);
  auto* second = new (b) detail::Message(detail::RelocateTag{}, *first);
  EXPECT_EQ(second->enqueue_tsc, 7u);
  EXPECT_EQ(token.use_count(), 2) << "relocation moves the capture, it does not copy it";
  second->run();
  EXPECT_EQ(*token, 1);
  EXPECT_EQ(token.use_count(), 1) << "run destroys the capture";

  auto* third = new (a)
      detail::Message(std::in_place_type<std::function<void()>>, 0, std::function<void()>([token] { ++*token; }));
  third->drop();
  EXPECT_EQ(*token, 1) << "drop must not run the message";
  EXPECT_EQ(token.use_count(), 1);
}

}  // namespace
}  // namespace nvmux
