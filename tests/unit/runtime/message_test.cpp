// The lane slot layout and the compile-time limit on message captures.
#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "nvmux/runtime/message.hpp"

namespace nvmux {
namespace {

// The slot's size is pinned by static_asserts in message.hpp; this checks what they promise at run
// time: a capture of the full 48 bytes is stored inside the slot's one line (no allocation) and
// comes out of run() intact.
TEST(Message, AFullCaptureLivesInsideItsOneLineSlot) {
  struct Seen {
    const void* address = nullptr;
    std::array<std::uint8_t, 40> bytes{};
  };
  struct Probe {
    std::array<std::uint8_t, 40> bytes;
    Seen* seen;
    void operator()() {
      seen->address = bytes.data();
      seen->bytes = bytes;
    }
  };
  static_assert(sizeof(Probe) == kMaxMsgCaptureBytes);
  Probe probe{};
  for (std::size_t i = 0; i < probe.bytes.size(); ++i) probe.bytes[i] = static_cast<std::uint8_t>(i * 3 + 1);
  Seen seen;
  probe.seen = &seen;

  alignas(64) std::byte slot[sizeof(detail::Message)];
  auto* message = new (slot) detail::Message(std::in_place_type<Probe>, 0, probe);
  message->run();
  const auto* begin = reinterpret_cast<const std::uint8_t*>(slot);
  const auto* at = static_cast<const std::uint8_t*>(seen.address);
  ASSERT_NE(at, nullptr) << "run() did not call the capture";
  EXPECT_TRUE(at >= begin && at + probe.bytes.size() <= begin + 64) << "the capture lies outside the 64-byte slot";
  EXPECT_EQ(seen.bytes, probe.bytes);
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
