// The emulated controller's admin command set, error case by error case, as a real controller
// answers them. Manual engine: admin_command steps the device itself.
#include "nvmux/nvme/emu.hpp"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "nvme_test_util.hpp"

namespace nvmux::nvme {
namespace {

using test::make_emu;
using test::manual_options;

class EmuAdmin : public ::testing::Test {
 protected:
  void SetUp() override {
    auto o = manual_options();
    o.max_io_queues = 4;
    o.max_queue_entries = 64;
    ctrl_ = make_emu(o);
    ASSERT_TRUE(ctrl_);
    page_ = ctrl_->dma_alloc(kPageBytes).value();
    sq_mem_ = ctrl_->dma_alloc(64 * 64).value();
    cq_mem_ = ctrl_->dma_alloc(64 * 16).value();
  }

  CompletionEntry admin(AdminOpcode op, std::uint32_t cdw10, std::uint32_t cdw11 = 0, std::uint64_t prp1 = 0,
                        std::uint32_t nsid = 0, IoVec data = {}) {
    SubmissionEntry c{};
    c.opcode = static_cast<std::uint8_t>(op);
    c.nsid = nsid;
    c.cdw10 = cdw10;
    c.cdw11 = cdw11;
    auto cpl = ctrl_->admin_command(c, data);
    EXPECT_TRUE(cpl.ok()) << cpl.status().to_string();
    if (!cpl.ok()) return {};
    CompletionEntry e = *cpl;
    if (prp1 != 0) {  // queue creation takes its base address raw in PRP1
      ADD_FAILURE() << "use create_cq/create_sq";
    }
    return e;
  }
  CompletionEntry create_cq(std::uint16_t qid, std::uint32_t entries, std::uint64_t base, bool contiguous = true) {
    SubmissionEntry c{};
    c.opcode = static_cast<std::uint8_t>(AdminOpcode::kCreateIoCq);
    c.prp1 = base;
    c.cdw10 = qid | ((entries - 1) << 16);
    c.cdw11 = contiguous ? kQueuePhysicallyContiguous : 0;
    return ctrl_->admin_command(c, {}).value();
  }
  CompletionEntry create_sq(std::uint16_t qid, std::uint32_t entries, std::uint16_t cqid, std::uint64_t base) {
    SubmissionEntry c{};
    c.opcode = static_cast<std::uint8_t>(AdminOpcode::kCreateIoSq);
    c.prp1 = base;
    c.cdw10 = qid | ((entries - 1) << 16);
    c.cdw11 = kQueuePhysicallyContiguous | (std::uint32_t{cqid} << 16);
    return ctrl_->admin_command(c, {}).value();
  }
  static void expect(const CompletionEntry& e, CommandSpecificStatus sc) {
    EXPECT_EQ(e.sct(), 1);
    EXPECT_EQ(e.sc(), static_cast<std::uint8_t>(sc)) << describe_status(e.sct(), e.sc());
    EXPECT_TRUE(e.dnr());
  }
  static void expect(const CompletionEntry& e, GenericStatus sc) {
    EXPECT_EQ(e.sct(), 0);
    EXPECT_EQ(e.sc(), static_cast<std::uint8_t>(sc)) << describe_status(e.sct(), e.sc());
    if (sc != GenericStatus::kSuccess) {
      EXPECT_TRUE(e.dnr());
    }
  }

  std::unique_ptr<EmuController> ctrl_;
  DmaBuffer page_, sq_mem_, cq_mem_;
};

TEST_F(EmuAdmin, IdentifyControllerFieldsAtTheirOffsets) {
  auto e = admin(AdminOpcode::kIdentify, static_cast<std::uint32_t>(IdentifyCns::kController), 0, 0, 0, page_.whole());
  expect(e, GenericStatus::kSuccess);
  const auto* id = reinterpret_cast<const IdentifyController*>(page_.data());
  EXPECT_EQ(id->nn, 1u);
  EXPECT_EQ(id->mdts, 8);  // 1 MiB = 4 KiB << 8
  EXPECT_EQ(id->sqes, 0x66);
  EXPECT_EQ(id->cqes, 0x44);
  EXPECT_EQ(id->maxcmd, 63);
  EXPECT_EQ(std::string(id->mn, 5), "nvmux");
}

TEST_F(EmuAdmin, IdentifyErrors) {
  expect(admin(AdminOpcode::kIdentify, 0x55, 0, 0, 0, page_.whole()), GenericStatus::kInvalidField);
  expect(admin(AdminOpcode::kIdentify, 0, 0, 0, /*nsid=*/9, page_.whole()), GenericStatus::kInvalidNamespaceOrFormat);
  expect(admin(AdminOpcode::kIdentify, 0, 0, 0, /*nsid=*/0, page_.whole()), GenericStatus::kInvalidNamespaceOrFormat);
  expect(admin(AdminOpcode::kIdentify, 1, 0, 0, 0, IoVec{0x2000, 4096}), GenericStatus::kDataTransferError);
  auto e = admin(AdminOpcode::kIdentify, 0, 0, 0, 1, page_.whole());
  expect(e, GenericStatus::kSuccess);
  const auto* ns = reinterpret_cast<const IdentifyNamespace*>(page_.data());
  EXPECT_EQ(ns->nsze, 4096u);
  EXPECT_EQ(ns->lbaf[0].lbads, 9);
}

TEST_F(EmuAdmin, UnknownOpcodeIsInvalidOpcode) {
  expect(admin(static_cast<AdminOpcode>(0x7f), 0), GenericStatus::kInvalidOpcode);
  expect(admin(AdminOpcode::kAbort, 0), GenericStatus::kInvalidOpcode);
}

TEST_F(EmuAdmin, FeatureErrors) {
  auto e = admin(AdminOpcode::kGetFeatures, static_cast<std::uint32_t>(FeatureId::kNumberOfQueues));
  expect(e, GenericStatus::kSuccess);
  EXPECT_EQ(e.cdw0, 3u | (3u << 16));  // 4 granted, 0's based
  expect(admin(AdminOpcode::kSetFeatures, 0x42), GenericStatus::kInvalidField);
  expect(admin(AdminOpcode::kGetFeatures, 0x42), GenericStatus::kInvalidField);
  expect(admin(AdminOpcode::kSetFeatures, static_cast<std::uint32_t>(FeatureId::kNumberOfQueues), 0xffffu),
         GenericStatus::kInvalidField);
  expect(create_cq(1, 16, cq_mem_.iova()), GenericStatus::kSuccess);
  expect(admin(AdminOpcode::kSetFeatures, static_cast<std::uint32_t>(FeatureId::kNumberOfQueues), 0),
         GenericStatus::kCommandSequenceError);  // only before I/O queues exist
  expect(admin(AdminOpcode::kDeleteIoCq, 1), GenericStatus::kSuccess);
}

TEST_F(EmuAdmin, CreateCompletionQueueErrors) {
  expect(create_cq(0, 16, cq_mem_.iova()), CommandSpecificStatus::kInvalidQueueIdentifier);
  expect(create_cq(5, 16, cq_mem_.iova()), CommandSpecificStatus::kInvalidQueueIdentifier);  // 4 granted
  expect(create_cq(1, 1, cq_mem_.iova()), CommandSpecificStatus::kInvalidQueueSize);
  expect(create_cq(1, 65, cq_mem_.iova()), CommandSpecificStatus::kInvalidQueueSize);  // MQES + 1 = 64
  expect(create_cq(1, 16, cq_mem_.iova(), /*contiguous=*/false), GenericStatus::kInvalidField);
  expect(create_cq(1, 16, cq_mem_.iova() + 64), GenericStatus::kInvalidPrpOffset);
  expect(create_cq(1, 16, 0x7000), GenericStatus::kDataTransferError);
  expect(create_cq(1, 16, cq_mem_.iova()), GenericStatus::kSuccess);
  expect(create_cq(1, 16, cq_mem_.iova()), CommandSpecificStatus::kInvalidQueueIdentifier);  // exists
  expect(admin(AdminOpcode::kDeleteIoCq, 1), GenericStatus::kSuccess);
}

TEST_F(EmuAdmin, CreateSubmissionQueueErrors) {
  expect(create_sq(1, 16, 1, sq_mem_.iova()), CommandSpecificStatus::kCompletionQueueInvalid);  // no CQ 1
  expect(create_cq(1, 16, cq_mem_.iova()), GenericStatus::kSuccess);
  expect(create_sq(0, 16, 1, sq_mem_.iova()), CommandSpecificStatus::kInvalidQueueIdentifier);
  expect(create_sq(1, 16, 0, sq_mem_.iova()), CommandSpecificStatus::kCompletionQueueInvalid);
  expect(create_sq(1, 100, 1, sq_mem_.iova()), CommandSpecificStatus::kInvalidQueueSize);
  expect(create_sq(1, 16, 1, sq_mem_.iova() + 8), GenericStatus::kInvalidPrpOffset);
  expect(create_sq(1, 16, 1, sq_mem_.iova()), GenericStatus::kSuccess);
  expect(create_sq(1, 16, 1, sq_mem_.iova()), CommandSpecificStatus::kInvalidQueueIdentifier);  // exists
  // Deletion order: the CQ cannot go while its SQ exists.
  expect(admin(AdminOpcode::kDeleteIoCq, 1), CommandSpecificStatus::kInvalidQueueDeletion);
  expect(admin(AdminOpcode::kDeleteIoSq, 1), GenericStatus::kSuccess);
  expect(admin(AdminOpcode::kDeleteIoSq, 1), CommandSpecificStatus::kInvalidQueueIdentifier);
  expect(admin(AdminOpcode::kDeleteIoCq, 1), GenericStatus::kSuccess);
  expect(admin(AdminOpcode::kDeleteIoCq, 1), CommandSpecificStatus::kInvalidQueueIdentifier);
  expect(admin(AdminOpcode::kDeleteIoSq, 0), CommandSpecificStatus::kInvalidQueueIdentifier);
  expect(admin(AdminOpcode::kDeleteIoCq, 0), CommandSpecificStatus::kInvalidQueueIdentifier);
  expect(admin(AdminOpcode::kDeleteIoSq, 300), CommandSpecificStatus::kInvalidQueueIdentifier);
  expect(admin(AdminOpcode::kDeleteIoCq, 300), CommandSpecificStatus::kInvalidQueueIdentifier);
}

TEST_F(EmuAdmin, QpairCreationReportsTheDeviceRefusal) {
  QueuePairOptions o;
  o.sq_entries = 128;  // above MQES + 1 = 64
  auto qp = ctrl_->create_io_qpair(o);
  ASSERT_FALSE(qp.ok());
  EXPECT_EQ(qp.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(qp.status().message().find("invalid queue size"), std::string::npos) << qp.status().message();
  o.sq_entries = 64;
  EXPECT_TRUE(ctrl_->create_io_qpair(o).ok());  // the failed attempt released its qid and CQ
}

TEST_F(EmuAdmin, AdminFaultsReachTheCaller) {
  FaultRule rule;
  rule.qid = 0;
  rule.opcode = static_cast<int>(AdminOpcode::kCreateIoCq);
  rule.status = make_status(GenericStatus::kInternalDeviceError, true);
  ctrl_->inject_fault(rule);
  QueuePairOptions o;
  o.sq_entries = 16;
  auto qp = ctrl_->create_io_qpair(o);
  ASSERT_FALSE(qp.ok());
  EXPECT_NE(qp.status().message().find("internal device error"), std::string::npos) << qp.status().message();
  EXPECT_TRUE(ctrl_->create_io_qpair(o).ok());
}

TEST(EmuOptionsCheck, RejectsOutOfRangeOptions) {
  auto o = manual_options();
  o.namespaces[0].block_size = 1024;
  EXPECT_EQ(EmuController::create(o).status().code(), StatusCode::kInvalidArgument);
  o = manual_options();
  o.namespaces.clear();
  EXPECT_EQ(EmuController::create(o).status().code(), StatusCode::kInvalidArgument);
  o = manual_options();
  o.max_transfer_bytes = 3000;
  EXPECT_EQ(EmuController::create(o).status().code(), StatusCode::kInvalidArgument);
  o = manual_options();
  o.namespaces[0].backing = NamespaceBacking::kFile;  // without a path
  EXPECT_EQ(EmuController::create(o).status().code(), StatusCode::kInvalidArgument);
}

// More namespaces than Identify's active namespace list can name: an error, not a broken invariant.
TEST(EmuOptionsCheck, RefusesMoreNamespacesThanTheActiveListHolds) {
  auto o = manual_options(8);
  o.namespaces.assign(kMaxNamespaces + 1, o.namespaces[0]);
  auto c = EmuController::create(o);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(std::to_string(kMaxNamespaces)), std::string::npos) << c.status().message();
}

// A file namespace on a filesystem without room for it is refused when it is created.
TEST(EmuOptionsCheck, AFileNamespaceTheFilesystemCannotHoldIsAnErrorAtCreation) {
  const std::string dir = fmt::format("/tmp/nvmux-small-fs-{}", ::getpid());
  ::mkdir(dir.c_str(), 0700);
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=1m") != 0) {
    ::rmdir(dir.c_str());
    GTEST_SKIP() << "cannot mount a small tmpfs here (needs CAP_SYS_ADMIN): " << std::strerror(errno);
  }
  auto o = manual_options(16u << 20 >> 9);  // 16 MiB on a 1 MiB filesystem
  o.namespaces[0].backing = NamespaceBacking::kFile;
  o.namespaces[0].path = dir + "/ns.img";
  auto c = EmuController::create(o);
  ::umount(dir.c_str());
  ::rmdir(dir.c_str());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("no room"), std::string::npos) << c.status().message();
}

}  // namespace
}  // namespace nvmux::nvme
