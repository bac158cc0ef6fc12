#include "nvmux/nvme/spec.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace nvmux::nvme {
namespace {

TEST(NvmeSpec, CompletionStatusFieldsDecodeFromTheirBits) {
  CompletionEntry cqe{};
  cqe.status = static_cast<std::uint16_t>(make_status(GenericStatus::kLbaOutOfRange, /*dnr=*/true) | 1u);
  EXPECT_TRUE(cqe.phase());
  EXPECT_EQ(cqe.sct(), 0);
  EXPECT_EQ(cqe.sc(), 0x80);
  EXPECT_TRUE(cqe.dnr());
  EXPECT_FALSE(cqe.more());
  EXPECT_FALSE(cqe.success());

  cqe.status = make_status(StatusCodeType::kMediaError, 0x81, false, true);
  EXPECT_FALSE(cqe.phase());
  EXPECT_EQ(cqe.sct(), 2);
  EXPECT_EQ(cqe.sc(), 0x81);
  EXPECT_FALSE(cqe.dnr());
  EXPECT_TRUE(cqe.more());

  cqe.status = 1;  // phase only
  EXPECT_TRUE(cqe.success());
}

TEST(NvmeSpec, CompletionEntryBytesMatchTheWireLayout) {
  // DW3 = status (31:16) | cid (15:0); the phase tag is bit 16 of DW3.
  CompletionEntry cqe{};
  cqe.cid = 0x1234;
  cqe.status = 0x0001;
  std::uint32_t dw3 = 0;
  std::memcpy(&dw3, reinterpret_cast<const std::byte*>(&cqe) + 12, 4);
  EXPECT_EQ(dw3, 0x00011234u);
}

TEST(NvmeSpec, SubmissionDword0PacksOpcodeAndCommandId) {
  SubmissionEntry sqe{};
  sqe.opcode = static_cast<std::uint8_t>(NvmOpcode::kRead);
  sqe.cid = 0xbeef;
  std::uint32_t dw0 = 0;
  std::memcpy(&dw0, &sqe, 4);
  EXPECT_EQ(dw0, 0xbeef0002u);
}

TEST(NvmeSpec, DescribeStatusNamesTheCode) {
  EXPECT_EQ(describe_status(0, 0x80), "SCT 0x0 SC 0x80 (LBA out of range)");
  EXPECT_EQ(describe_status(1, 0x0c), "SCT 0x1 SC 0x0c (invalid queue deletion)");
  EXPECT_NE(describe_status(7, 0xc0).find("vendor"), std::string::npos);
}

TEST(NvmeSpec, DoorbellOffsetsFollowTheStride) {
  EXPECT_EQ(sq_tail_doorbell_offset(0), 0x1000u);
  EXPECT_EQ(cq_head_doorbell_offset(0), 0x1004u);
  EXPECT_EQ(sq_tail_doorbell_offset(2, 5), 0x1000u + 4u * 128u);
}

}  // namespace
}  // namespace nvmux::nvme
