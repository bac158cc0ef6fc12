// The daemon's pure checks of client input (src/service/validate.hpp), one row of
// docs/service.md "Validation" (and of the control protocol's refusals) at a time, without a
// daemon. tests/integration/service_test.cpp walks the same table through a real nvmuxd.
#include "validate.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <vector>

namespace nvmux::service {
namespace {

constexpr std::uint64_t kArena = std::uint64_t{1} << 20;

class ValidateDescriptor : public ::testing::Test {
 protected:
  ValidateDescriptor() {
    grant_.namespaces.push_back({1, true, {}});
    grant_.namespaces.push_back({2, false, {{100, 199}, {UINT64_MAX - 9, UINT64_MAX}}});
  }
  int check(std::uint8_t opcode, std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks,
            std::uint64_t arena_offset = 0) const {
    IoDescriptor d{};
    d.opcode = opcode;
    d.nsid = nsid;
    d.lba = lba;
    d.blocks = blocks;
    d.arena_offset = arena_offset;
    return validate_descriptor(d, ValidationContext{namespaces_, grant_, kArena, 64 * 1024});
  }

  // nsid 3 exists but is not granted.
  std::vector<nvme::NamespaceInfo> namespaces_{{1, 1000, 4096}, {2, UINT64_MAX, 512}, {3, 8, 4096}};
  Grant grant_;
};

constexpr std::uint8_t kRead = 1, kWrite = 2, kFlush = 3, kWriteZeroes = 4, kDeallocate = 5;

TEST_F(ValidateDescriptor, AcceptsEachOpcodeInsideItsLimits) {
  EXPECT_EQ(check(kRead, 1, 0, 16), 0);
  EXPECT_EQ(check(kWrite, 1, 999, 1, kArena - 4096), 0);
  EXPECT_EQ(check(kFlush, 2, 0, 0), 0);  // read-only grant: flush is not a write
  EXPECT_EQ(check(kWriteZeroes, 1, 0, 1000), 0);
  EXPECT_EQ(check(kDeallocate, 1, 500, 500), 0);
  EXPECT_EQ(check(kRead, 2, UINT64_MAX - 9, 9), 0);  // the namespace's last block is UINT64_MAX - 1
}

TEST_F(ValidateDescriptor, RefusesInTheDocumentedOrder) {
  EXPECT_EQ(check(0, 1, 0, 1), -EINVAL);
  EXPECT_EQ(check(6, 1, 0, 1), -EINVAL);
  EXPECT_EQ(check(kRead, 0, 0, 1), -ENOENT);
  EXPECT_EQ(check(kRead, 4, 0, 1), -ENOENT);
  EXPECT_EQ(check(kRead, 3, 0, 1), -EACCES);                  // not granted
  EXPECT_EQ(check(kWrite, 2, 100, 1), -EACCES);               // read-only grant
  EXPECT_EQ(check(kDeallocate, 2, 100, 1), -EACCES);          // read-only grant
  EXPECT_EQ(check(kRead, 1, 0, 0), -EINVAL);                  // no blocks
  EXPECT_EQ(check(kWriteZeroes, 1, 0, 65537), -EINVAL);       // above 16-bit NLB, before the range
  EXPECT_EQ(check(kRead, 1, 1000, 1), -ERANGE);               // lba at the end
  EXPECT_EQ(check(kRead, 1, 999, 2), -ERANGE);                // runs past the end
  EXPECT_EQ(check(kRead, 2, UINT64_MAX - 1, 2), -ERANGE);     // would wrap
  EXPECT_EQ(check(kRead, 2, 150, 100), -EACCES);              // leaves the granted range
  EXPECT_EQ(check(kRead, 2, 50, 1), -EACCES);                 // between ranges
  EXPECT_EQ(check(kRead, 1, 0, 17), -EINVAL);                 // 68 KiB above the 64 KiB transfer limit
  EXPECT_EQ(check(kRead, 1, 0, 1, 2), -EINVAL);               // arena offset not dword aligned
  EXPECT_EQ(check(kRead, 1, 0, 1, kArena - 4092), -EINVAL);   // past the arena's end
  EXPECT_EQ(check(kRead, 1, 0, 1, UINT64_MAX - 3), -EINVAL);  // offset + bytes would wrap
  EXPECT_EQ(check(kWriteZeroes, 1, 0, 1, 2), 0);              // no data: the arena offset is ignored
}

ControlMessage message(ControlType type) {
  ControlMessage m{};
  m.magic = kControlMagic;
  m.version = kProtocolVersion;
  m.type = static_cast<std::uint16_t>(type);
  return m;
}

TEST(AdmitControlMessage, HelloFirstThenTheOthers) {
  auto hello = admit_control_message(message(ControlType::kHello), sizeof(ControlMessage), false);
  ASSERT_TRUE(hello.ok()) << hello.status().to_string();
  EXPECT_EQ(*hello, ControlType::kHello);
  for (auto t : {ControlType::kNamespaceInfo, ControlType::kQueueCreate, ControlType::kQueueDestroy,
                 ControlType::kDaemonStats}) {
    auto before = admit_control_message(message(t), sizeof(ControlMessage), false);
    ASSERT_FALSE(before.ok());
    EXPECT_NE(before.status().message().find("before hello"), std::string::npos) << before.status().message();
    auto after = admit_control_message(message(t), sizeof(ControlMessage), true);
    ASSERT_TRUE(after.ok()) << after.status().to_string();
    EXPECT_EQ(*after, t);
  }
  auto second = admit_control_message(message(ControlType::kHello), sizeof(ControlMessage), true);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().message(), "a second hello");
}

TEST(AdmitControlMessage, RefusesMalformedAndUnknownMessages) {
  ControlMessage m = message(ControlType::kDaemonStats);
  auto short_message = admit_control_message(m, sizeof(m) - 1, true);
  ASSERT_FALSE(short_message.ok());
  EXPECT_EQ(short_message.status().code(), StatusCode::kCorruption);
  EXPECT_EQ(short_message.status().message().rfind("bad control message: ", 0), 0u);
  m.version = 1;
  EXPECT_EQ(admit_control_message(m, sizeof(m), true).status().code(), StatusCode::kCorruption);
  m = message(ControlType::kDaemonStats);
  m.type = 6;
  auto unknown = admit_control_message(m, sizeof(m), true);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().message(), "unknown control message type 6");
}

TEST(SessionArenaBytes, RoundsUpToAPageWithinBothLimits) {
  EXPECT_EQ(*session_arena_bytes(0, kMaxArenaBytes), kDefaultArenaBytes);
  EXPECT_EQ(*session_arena_bytes(1, kMaxArenaBytes), kPageBytes);
  EXPECT_EQ(*session_arena_bytes(kMaxArenaBytes, kMaxArenaBytes), kMaxArenaBytes);
  EXPECT_EQ(session_arena_bytes(kMaxArenaBytes + 1, UINT64_MAX).status().code(), StatusCode::kInvalidArgument);
  // A request whose rounding would wrap is refused, not turned into a tiny arena.
  EXPECT_EQ(session_arena_bytes(UINT64_MAX, UINT64_MAX).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(session_arena_bytes(8192, 4096).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(session_arena_bytes(4097, 4096).status().code(), StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace nvmux::service
