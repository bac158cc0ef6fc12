// Deterministic QueuePair tests: the emu device is stepped by hand (EmuEngine::kManual), faults are
// injected at exact commands, and time is a manual clock.
#include "nvmux/nvme/qpair.hpp"

#include <gtest/gtest.h>

#include "nvme_test_util.hpp"

namespace nvmux::nvme {
namespace {

using test::drive;
using test::make_emu;
using test::manual_options;
using test::ManualClock;
using test::Recorder;

QueuePairOptions qp_options(std::uint32_t sq, std::uint32_t cq = 0) {
  QueuePairOptions o;
  o.sq_entries = sq;
  o.cq_entries = cq;
  return o;
}

TEST(QueuePair, BringUpIdentifiesTheControllerAndNamespaces) {
  auto o = manual_options(1000, 4096);
  o.namespaces.push_back(NamespaceSpec{77, 512, NamespaceBacking::kNull, ""});
  o.max_io_queues = 5;
  o.max_transfer_bytes = 128 * 1024;
  auto ctrl = make_emu(o);
  ASSERT_TRUE(ctrl);
  EXPECT_EQ(ctrl->info().model, "nvmux emulated NVMe controller");
  EXPECT_EQ(ctrl->info().max_transfer_bytes, 128u * 1024);
  EXPECT_EQ(ctrl->info().io_queues, 5);
  EXPECT_EQ(ctrl->info().max_queue_entries, 1024u);
  EXPECT_EQ(ctrl->info().version, kVersion2_0);
  EXPECT_TRUE(ctrl->info().oncs & kOncsWriteZeroes);
  ASSERT_EQ(ctrl->namespaces().size(), 2u);
  EXPECT_EQ(ctrl->namespaces()[0].blocks, 1000u);
  EXPECT_EQ(ctrl->namespaces()[0].block_size, 4096u);
  EXPECT_EQ(ctrl->namespaces()[1].nsid, 2u);
  EXPECT_EQ(ctrl->namespaces()[1].block_size, 512u);
}

TEST(QueuePair, SqAndCqWrapManyTimesWithPhaseFlips) {
  auto ctrl = make_emu(manual_options());
  auto qp = ctrl->create_io_qpair(qp_options(4)).value();  // 3 command ids, CQ of 4: a lap every 4 completions
  auto buf = ctrl->dma_alloc(512).value();
  Recorder rec;
  constexpr std::size_t kCommands = 1001;
  std::size_t submitted = 0;
  for (std::size_t round = 0; rec.results.size() < kCommands; ++round) {
    // Vary the batch (1, 2, 3) so the wrap falls at every position of a batch.
    std::size_t batch = 1 + round % 3;
    for (std::size_t i = 0; i < batch && submitted < kCommands; ++i) {
      ASSERT_TRUE(qp->write(1, submitted % 4096, 1, buf.whole(), Recorder::callback, &rec).ok());
      ++submitted;
    }
    ctrl->step();
    ASSERT_TRUE(qp->process_completions().ok());
  }
  EXPECT_EQ(rec.ok_count(), kCommands);
  EXPECT_EQ(qp->stats().completed, kCommands);
  EXPECT_EQ(qp->outstanding(), 0u);
  EXPECT_EQ(qp->stats().max_depth, 3u);
  EXPECT_GE(ctrl->device_stats().completions_posted, kCommands);
}

TEST(QueuePair, FullCqStallsTheDeviceUntilTheHeadDoorbellMoves) {
  auto ctrl = make_emu(manual_options());
  auto qp = ctrl->create_io_qpair(qp_options(16, 4)).value();  // CQ holds 3 entries
  auto buf = ctrl->dma_alloc(512).value();
  Recorder rec;
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(qp->read(1, i, 1, buf.whole(), Recorder::callback, &rec).ok());
  auto before = ctrl->device_stats();
  ctrl->step();
  auto after_first = ctrl->device_stats();
  EXPECT_EQ(after_first.completions_posted - before.completions_posted, 3u);
  EXPECT_GE(after_first.cq_full_stalls, before.cq_full_stalls + 1);
  ctrl->step();  // head has not moved: nothing more can be posted
  EXPECT_EQ(ctrl->device_stats().completions_posted, after_first.completions_posted);

  ASSERT_EQ(qp->process_completions(2).value(), 2u);  // frees two slots and writes the head doorbell
  ctrl->step();
  EXPECT_EQ(ctrl->device_stats().completions_posted - after_first.completions_posted, 2u);
  drive(*ctrl, *qp, rec, 12);
  EXPECT_EQ(rec.ok_count(), 12u);
}

TEST(QueuePair, FullQueueReturnsQueueFullAndRecovers) {
  auto ctrl = make_emu(manual_options());
  auto qp = ctrl->create_io_qpair(qp_options(4)).value();
  auto buf = ctrl->dma_alloc(512).value();
  Recorder rec;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(qp->read(1, i, 1, buf.whole(), Recorder::callback, &rec).ok());
  Status full = qp->read(1, 9, 1, buf.whole(), Recorder::callback, &rec);
  EXPECT_EQ(full.code(), StatusCode::kQueueFull);
  EXPECT_NE(full.message().find("all 3 command ids in use"), std::string::npos) << full.message();
  EXPECT_EQ(qp->stats().queue_full, 1u);
  drive(*ctrl, *qp, rec, 3);
  EXPECT_TRUE(qp->read(1, 9, 1, buf.whole(), Recorder::callback, &rec).ok());
  drive(*ctrl, *qp, rec, 4);
  EXPECT_EQ(rec.ok_count(), 4u);
}

TEST(QueuePair, DelayedDoorbellWritesOncePerPoll) {
  for (bool delayed : {false, true}) {
    SCOPED_TRACE(delayed ? "delayed" : "immediate");
    auto ctrl = make_emu(manual_options());
    auto o = qp_options(64);
    o.delayed_doorbell = delayed;
    auto qp = ctrl->create_io_qpair(o).value();
    auto buf = ctrl->dma_alloc(512).value();
    Recorder rec;
    for (int i = 0; i < 8; ++i) ASSERT_TRUE(qp->read(1, i, 1, buf.whole(), Recorder::callback, &rec).ok());
    EXPECT_EQ(qp->stats().sq_doorbell_writes, delayed ? 0u : 8u);
    ctrl->step();  // the device sees only what a doorbell announced
    EXPECT_EQ(qp->process_completions().value(), delayed ? 0u : 8u);
    if (delayed) {
      EXPECT_EQ(qp->stats().sq_doorbell_writes, 1u);  // the whole batch in one write
      ctrl->step();
      EXPECT_EQ(qp->process_completions().value(), 8u);
      EXPECT_EQ(qp->stats().cq_doorbell_writes, 1u);  // one head write for the whole poll
    } else {
      EXPECT_EQ(qp->stats().cq_doorbell_writes, 8u);
    }
    EXPECT_EQ(rec.ok_count(), 8u);
  }
}

TEST(QueuePair, DriverRejectsBadArgumentsBeforeTheDevice) {
  auto ctrl = make_emu(manual_options());
  auto qp = ctrl->create_io_qpair(qp_options(8)).value();
  auto buf = ctrl->dma_alloc(8192).value();
  Recorder rec;
  EXPECT_EQ(qp->read(0, 0, 1, buf.slice(0, 512), Recorder::callback, &rec).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(qp->read(2, 0, 1, buf.slice(0, 512), Recorder::callback, &rec).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(qp->read(1, 0, 0, buf.slice(0, 0), Recorder::callback, &rec).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(qp->read(1, 0, 2, buf.slice(0, 512), Recorder::callback, &rec).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(qp->read(1, 0, 1, buf.slice(2, 512), Recorder::callback, &rec).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(qp->write_zeroes(1, 0, 0, Recorder::callback, &rec).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(qp->deallocate(1, {}, Recorder::callback, &rec).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(qp->stats().submitted, 0u);
}

// Submits `cmd` raw and returns its completion (manual engine).
IoCompletion run_raw(EmuController& ctrl, QueuePair& qp, const SubmissionEntry& cmd, IoVec data) {
  Recorder rec;
  Status s = qp.submit_raw(cmd, data, Recorder::callback, &rec);
  EXPECT_TRUE(s.ok()) << s.to_string();
  drive(ctrl, qp, rec, 1);
  EXPECT_EQ(rec.results.size(), 1u);
  return rec.results.empty() ? IoCompletion{} : rec.results[0];
}

void expect_status(const IoCompletion& c, StatusCodeType sct, std::uint8_t sc) {
  EXPECT_EQ(c.status.code(), StatusCode::kIoError) << c.status.to_string();
  EXPECT_EQ(c.cqe.sct(), static_cast<std::uint8_t>(sct));
  EXPECT_EQ(c.cqe.sc(), sc) << c.status.to_string();
  EXPECT_TRUE(c.cqe.dnr());
}

TEST(QueuePair, DeviceRejectsCommandsOutsideItsLimits) {
  auto o = manual_options(1024, 512);
  o.max_transfer_bytes = 8192;
  auto ctrl = make_emu(o);
  auto qp = ctrl->create_io_qpair(qp_options(8)).value();
  auto buf = ctrl->dma_alloc(64 * 1024).value();
  EXPECT_EQ(qp->max_transfer_bytes(), 8192u);
  Recorder rec;
  // The driver refuses to build a transfer above MDTS...
  EXPECT_EQ(qp->read(1, 0, 32, buf.slice(0, 16384), Recorder::callback, &rec).code(), StatusCode::kInvalidArgument);

  SubmissionEntry read{};
  read.opcode = static_cast<std::uint8_t>(NvmOpcode::kRead);
  read.nsid = 1;
  read.cdw12 = 31;  // 32 blocks = 16 KiB: ...and the device answers invalid field when asked anyway
  expect_status(run_raw(*ctrl, *qp, read, buf.slice(0, 16384)), StatusCodeType::kGeneric, 0x02);

  read.cdw12 = 0;
  read.cdw10 = 1024;  // one past the end
  expect_status(run_raw(*ctrl, *qp, read, buf.slice(0, 512)), StatusCodeType::kGeneric, 0x80);
  read.cdw10 = 1020;
  read.cdw12 = 7;  // crosses the end
  expect_status(run_raw(*ctrl, *qp, read, buf.slice(0, 4096)), StatusCodeType::kGeneric, 0x80);
  read.cdw10 = 0;
  read.cdw11 = 1;  // LBA 2^32
  read.cdw12 = 0;
  expect_status(run_raw(*ctrl, *qp, read, buf.slice(0, 512)), StatusCodeType::kGeneric, 0x80);
  read.cdw11 = 0;

  SubmissionEntry bad_ns = read;
  bad_ns.nsid = 9;
  expect_status(run_raw(*ctrl, *qp, bad_ns, buf.slice(0, 512)), StatusCodeType::kGeneric, 0x0b);
  SubmissionEntry bad_op = read;
  bad_op.opcode = 0x7e;
  expect_status(run_raw(*ctrl, *qp, bad_op, buf.slice(0, 512)), StatusCodeType::kGeneric, 0x01);

  // A PRP outside DMA memory is a data transfer error, never a crash.
  expect_status(run_raw(*ctrl, *qp, read, IoVec{0x1000, 512}), StatusCodeType::kGeneric, 0x04);
  SubmissionEntry raw_prp = read;
  raw_prp.cdw12 = 7;  // 4 KiB starting mid-page: PRP1 with an offset, PRP2 the next page
  auto c = qp->submit_raw(raw_prp, buf.slice(512, 4096), Recorder::callback, &rec);
  ASSERT_TRUE(c.ok());
  drive(*ctrl, *qp, rec, 1);
  EXPECT_TRUE(rec.results.at(0).status.ok());  // the driver's own PRPs are valid
  EXPECT_EQ(qp->stats().errors_by_status.at(0x0080), 3u);
}

// submit_raw with no data keeps the caller's PRP1/PRP2, so a test can hand the device PRP shapes
// nvmux's own driver never builds.
TEST(QueuePair, DeviceFollowsChainedPrpListsAndRejectsBadOffsets) {
  auto ctrl = make_emu(manual_options(1024, 512));
  auto qp = ctrl->create_io_qpair(qp_options(8)).value();
  auto data = ctrl->dma_alloc(4 * kPageBytes).value();  // pages A, B, C, D
  auto lists = ctrl->dma_alloc(2 * kPageBytes).value();
  test::stamp(data.data(), data.size(), 99, 0, 512);
  // The first list starts 16 bytes before the end of its page: one data entry, then a pointer
  // to the second list, which holds the last two pages.
  auto* list1 = reinterpret_cast<std::uint64_t*>(lists.data() + kPageBytes - 16);
  auto* list2 = reinterpret_cast<std::uint64_t*>(lists.data() + kPageBytes);
  list1[0] = data.iova() + kPageBytes;
  list1[1] = lists.iova() + kPageBytes;
  list2[0] = data.iova() + 2 * kPageBytes;
  list2[1] = data.iova() + 3 * kPageBytes;
  SubmissionEntry write{};
  write.opcode = static_cast<std::uint8_t>(NvmOpcode::kWrite);
  write.nsid = 1;
  write.cdw12 = 31;  // 32 blocks = 16 KiB
  write.prp1 = data.iova();
  write.prp2 = lists.iova() + kPageBytes - 16;
  EXPECT_TRUE(run_raw(*ctrl, *qp, write, {}).status.ok());

  auto back = ctrl->dma_alloc(4 * kPageBytes).value();
  Recorder rec;
  ASSERT_TRUE(qp->read(1, 0, 32, back.whole(), Recorder::callback, &rec).ok());
  drive(*ctrl, *qp, rec, 1);
  ASSERT_TRUE(rec.results.at(0).status.ok());
  EXPECT_EQ(std::memcmp(back.data(), data.data(), data.size()), 0);

  SubmissionEntry two_pages = write;
  two_pages.cdw12 = 15;                           // 8 KiB: PRP2 names the second page itself...
  two_pages.prp2 = data.iova() + kPageBytes + 8;  // ...which must not carry an offset
  expect_status(run_raw(*ctrl, *qp, two_pages, {}), StatusCodeType::kGeneric, 0x13);
  SubmissionEntry bad_entry = write;
  list2[1] = data.iova() + 3 * kPageBytes + 512;  // a list entry with an offset
  expect_status(run_raw(*ctrl, *qp, bad_entry, {}), StatusCodeType::kGeneric, 0x13);
  list2[1] = 0x3000;  // a list entry outside DMA memory
  expect_status(run_raw(*ctrl, *qp, bad_entry, {}), StatusCodeType::kGeneric, 0x04);
  SubmissionEntry bad_list = write;
  bad_list.prp2 = 0x5000;  // the list itself outside DMA memory
  expect_status(run_raw(*ctrl, *qp, bad_list, {}), StatusCodeType::kGeneric, 0x04);
}

TEST(QueuePair, ErrorStatusWithDoNotRetryReachesTheCaller) {
  auto ctrl = make_emu(manual_options());
  auto o = qp_options(8);
  o.max_retries = 5;
  auto qp = ctrl->create_io_qpair(o).value();
  auto buf = ctrl->dma_alloc(512).value();
  FaultRule rule;
  rule.kind = FaultRule::Kind::kStatus;
  rule.opcode = static_cast<int>(NvmOpcode::kRead);
  rule.status = make_status(MediaStatus::kUnrecoveredReadError, /*dnr=*/true);
  ctrl->inject_fault(rule);
  Recorder rec;
  ASSERT_TRUE(qp->read(1, 0, 1, buf.whole(), Recorder::callback, &rec).ok());
  drive(*ctrl, *qp, rec, 1);
  ASSERT_EQ(rec.results.size(), 1u);
  expect_status(rec.results[0], StatusCodeType::kMediaError, 0x81);
  EXPECT_EQ(rec.results[0].attempts, 1u);
  EXPECT_NE(rec.results[0].status.message().find("unrecovered read error"), std::string::npos);
  EXPECT_EQ(qp->stats().retries, 0u);
  EXPECT_EQ(qp->stats().errors_by_status.at(0x0281), 1u);
  EXPECT_EQ(ctrl->device_stats().faults_injected, 1u);
}

TEST(QueuePair, RetryableErrorsAreRetriedUpToTheLimit) {
  for (std::uint32_t max_retries : {3u, 1u}) {
    SCOPED_TRACE(max_retries);
    auto ctrl = make_emu(manual_options());
    auto o = qp_options(8);
    o.max_retries = max_retries;
    auto qp = ctrl->create_io_qpair(o).value();
    auto buf = ctrl->dma_alloc(512).value();
    FaultRule rule;
    rule.kind = FaultRule::Kind::kStatus;
    rule.count = 2;  // the first two attempts fail, the third succeeds
    rule.status = make_status(GenericStatus::kInternalDeviceError, /*dnr=*/false);
    ctrl->inject_fault(rule);
    Recorder rec;
    ASSERT_TRUE(qp->write(1, 5, 1, buf.whole(), Recorder::callback, &rec).ok());
    drive(*ctrl, *qp, rec, 1);
    ASSERT_EQ(rec.results.size(), 1u);
    if (max_retries == 3) {
      EXPECT_TRUE(rec.results[0].status.ok()) << rec.results[0].status.to_string();
      EXPECT_EQ(rec.results[0].attempts, 3u);
      EXPECT_EQ(qp->stats().retries, 2u);
    } else {
      EXPECT_EQ(rec.results[0].status.code(), StatusCode::kIoError);
      EXPECT_FALSE(rec.results[0].cqe.dnr());
      EXPECT_EQ(rec.results[0].attempts, 2u);
      EXPECT_EQ(qp->stats().retries, 1u);
    }
  }
}

TEST(QueuePair, DelayedCompletionIsOvertakenAndArrivesLater) {
  ManualClock clock;
  auto o = manual_options();
  o.clock = clock.fn();
  auto ctrl = make_emu(o);
  auto qp = ctrl->create_io_qpair(qp_options(8)).value();
  auto buf = ctrl->dma_alloc(1024).value();
  FaultRule rule;
  rule.kind = FaultRule::Kind::kDelay;
  rule.delay_us = 100;
  ctrl->inject_fault(rule);  // hits the first I/O command only
  Recorder rec;
  ASSERT_TRUE(qp->read(1, 0, 1, buf.slice(0, 512), Recorder::callback, &rec).ok());
  ASSERT_TRUE(qp->read(1, 1, 1, buf.slice(512, 512), Recorder::callback, &rec).ok());
  drive(*ctrl, *qp, rec, 2, 50);
  ASSERT_EQ(rec.results.size(), 1u);
  EXPECT_EQ(rec.results[0].cid, 1);  // the second command overtook the delayed first
  clock.advance_us(99);
  drive(*ctrl, *qp, rec, 2, 50);
  EXPECT_EQ(rec.results.size(), 1u);
  clock.advance_us(1);
  drive(*ctrl, *qp, rec, 2, 50);
  ASSERT_EQ(rec.results.size(), 2u);
  EXPECT_EQ(rec.results[1].cid, 0);
  EXPECT_TRUE(rec.results[1].status.ok());
}

TEST(QueuePair, LatencyModelHoldsEveryCompletion) {
  ManualClock clock;
  auto o = manual_options();
  o.clock = clock.fn();
  o.latency_us = 50;
  auto ctrl = make_emu(o);  // admin commands have no latency, so bring-up needs no clock moves
  auto qp = ctrl->create_io_qpair(qp_options(8)).value();
  auto buf = ctrl->dma_alloc(512).value();
  Recorder rec;
  ASSERT_TRUE(qp->read(1, 0, 1, buf.whole(), Recorder::callback, &rec).ok());
  drive(*ctrl, *qp, rec, 1, 20);
  EXPECT_TRUE(rec.results.empty());
  clock.advance_us(50);
  drive(*ctrl, *qp, rec, 1, 20);
  EXPECT_EQ(rec.results.size(), 1u);
}

TEST(QueuePair, DroppedCompletionTimesOutAndKeepsItsIdReservedUntilReset) {
  ManualClock clock;
  auto o = manual_options();
  o.clock = clock.fn();
  auto ctrl = make_emu(o);
  auto qo = qp_options(4);  // 3 ids
  qo.timeout_us = 1000;
  qo.clock = clock.fn();
  auto qp = ctrl->create_io_qpair(qo).value();
  auto buf = ctrl->dma_alloc(512).value();
  FaultRule rule;
  rule.kind = FaultRule::Kind::kDrop;
  ctrl->inject_fault(rule);
  Recorder rec;
  ASSERT_TRUE(qp->read(1, 0, 1, buf.whole(), Recorder::callback, &rec).ok());
  drive(*ctrl, *qp, rec, 1, 20);
  EXPECT_TRUE(rec.results.empty());
  clock.advance_us(1000);
  ASSERT_TRUE(qp->process_completions().ok());
  ASSERT_EQ(rec.results.size(), 1u);
  EXPECT_EQ(rec.results[0].status.code(), StatusCode::kTimeout);
  EXPECT_NE(rec.results[0].status.message().find("stays reserved"), std::string::npos);
  EXPECT_EQ(qp->stats().timeouts, 1u);
  EXPECT_EQ(qp->outstanding(), 1u);  // the id is still reserved
  ASSERT_TRUE(qp->read(1, 1, 1, buf.whole(), Recorder::callback, &rec).ok());
  ASSERT_TRUE(qp->read(1, 2, 1, buf.whole(), Recorder::callback, &rec).ok());
  EXPECT_EQ(qp->read(1, 3, 1, buf.whole(), Recorder::callback, &rec).code(), StatusCode::kQueueFull);
  drive(*ctrl, *qp, rec, 3);
  EXPECT_EQ(rec.ok_count(), 2u);
  EXPECT_EQ(qp->outstanding(), 1u);
  ASSERT_TRUE(qp->reset().ok());
  EXPECT_EQ(qp->outstanding(), 0u);
  rec.results.clear();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(qp->read(1, i, 1, buf.whole(), Recorder::callback, &rec).ok());
  drive(*ctrl, *qp, rec, 3);
  EXPECT_EQ(rec.ok_count(), 3u);
}

TEST(QueuePair, LateCompletionIsNeverCreditedToAnotherCommand) {
  ManualClock clock;
  auto o = manual_options();
  o.clock = clock.fn();
  auto ctrl = make_emu(o);
  auto qo = qp_options(4);
  qo.timeout_us = 1000;
  qo.clock = clock.fn();
  auto qp = ctrl->create_io_qpair(qo).value();
  auto buf = ctrl->dma_alloc(512).value();
  FaultRule rule;
  rule.kind = FaultRule::Kind::kDelay;
  rule.delay_us = 5000;
  ctrl->inject_fault(rule);
  Recorder rec;
  ASSERT_TRUE(qp->read(1, 0, 1, buf.whole(), Recorder::callback, &rec).ok());  // cid 0, delayed
  drive(*ctrl, *qp, rec, 1, 20);
  clock.advance_us(1000);
  ASSERT_TRUE(qp->process_completions().ok());
  ASSERT_EQ(rec.results.size(), 1u);
  EXPECT_EQ(rec.results[0].status.code(), StatusCode::kTimeout);
  // New commands take other ids while cid 0 is reserved.
  ASSERT_TRUE(qp->read(1, 1, 1, buf.whole(), Recorder::callback, &rec).ok());
  ASSERT_TRUE(qp->read(1, 2, 1, buf.whole(), Recorder::callback, &rec).ok());
  clock.advance_us(5000);  // the late answer for cid 0 arrives; the new commands (cids 1, 2) also complete
  drive(*ctrl, *qp, rec, 3);
  ASSERT_EQ(rec.results.size(), 3u);
  EXPECT_NE(rec.results[1].cid, 0);
  EXPECT_NE(rec.results[2].cid, 0);
  EXPECT_TRUE(rec.results[1].status.ok());
  EXPECT_TRUE(rec.results[2].status.ok());
  for (int i = 0; i < 5 && qp->stats().late_completions == 0; ++i) {
    ctrl->step();
    ASSERT_TRUE(qp->process_completions().ok());
  }
  EXPECT_EQ(qp->stats().late_completions, 1u);
  EXPECT_EQ(qp->outstanding(), 0u);
  EXPECT_EQ(rec.results.size(), 3u);  // no second callback for cid 0
  EXPECT_EQ(qp->state(), QueuePair::State::kActive);
}

TEST(QueuePair, DuplicatedCompletionFailsTheQpairWithADiagnostic) {
  auto ctrl = make_emu(manual_options());
  auto qp = ctrl->create_io_qpair(qp_options(16)).value();
  auto buf = ctrl->dma_alloc(512).value();
  FaultRule rule;
  rule.kind = FaultRule::Kind::kDuplicate;
  ctrl->inject_fault(rule);  // the first command's completion is posted twice
  Recorder rec;
  ASSERT_TRUE(qp->read(1, 0, 1, buf.whole(), Recorder::callback, &rec).ok());
  ctrl->step();
  for (int i = 1; i < 4; ++i) ASSERT_TRUE(qp->read(1, i, 1, buf.whole(), Recorder::callback, &rec).ok());
  auto r = qp->process_completions();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kAborted);
  const std::string& why = qp->failure().message();
  EXPECT_NE(why.find("does not map to an outstanding command"), std::string::npos) << why;
  EXPECT_NE(why.find("cid 0 (not outstanding)"), std::string::npos) << why;
  EXPECT_NE(why.find("SQ head 1"), std::string::npos) << why;
  EXPECT_NE(why.find("3 commands outstanding"), std::string::npos) << why;
  EXPECT_EQ(qp->state(), QueuePair::State::kFailed);
  ASSERT_EQ(rec.results.size(), 4u);  // the first succeeded, the other three were aborted
  EXPECT_TRUE(rec.results[0].status.ok());
  for (int i = 1; i < 4; ++i) EXPECT_EQ(rec.results[i].status.code(), StatusCode::kAborted);
  EXPECT_EQ(qp->read(1, 0, 1, buf.whole(), Recorder::callback, &rec).code(), StatusCode::kAborted);
  EXPECT_EQ(qp->process_completions().status().code(), StatusCode::kAborted);

  ASSERT_TRUE(qp->reset().ok());
  rec.results.clear();
  ASSERT_TRUE(qp->read(1, 0, 1, buf.whole(), Recorder::callback, &rec).ok());
  drive(*ctrl, *qp, rec, 1);
  EXPECT_EQ(rec.ok_count(), 1u);
}

TEST(QueuePair, OutOfRangeCommandIdFailsTheQpairWithADiagnostic) {
  auto ctrl = make_emu(manual_options());
  auto qp = ctrl->create_io_qpair(qp_options(8)).value();
  auto buf = ctrl->dma_alloc(512).value();
  FaultRule rule;
  rule.kind = FaultRule::Kind::kBadCid;
  rule.skip = 1;  // the second command's completion names cid 500
  rule.bad_cid = 500;
  ctrl->inject_fault(rule);
  Recorder rec;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(qp->read(1, i, 1, buf.whole(), Recorder::callback, &rec).ok());
  ctrl->step();
  auto r = qp->process_completions();
  ASSERT_FALSE(r.ok());
  const std::string& why = qp->failure().message();
  EXPECT_NE(why.find("cid 500 (out of range)"), std::string::npos) << why;
  EXPECT_NE(why.find("2 commands outstanding of 7"), std::string::npos) << why;
  ASSERT_EQ(rec.results.size(), 3u);  // cid 0 completed, cids 1 and 2 aborted: nothing hangs
  EXPECT_TRUE(rec.results[0].status.ok());
  EXPECT_EQ(rec.results[1].status.code(), StatusCode::kAborted);
  EXPECT_EQ(rec.results[2].status.code(), StatusCode::kAborted);
  EXPECT_NE(rec.results[1].status.message().find("does not map"), std::string::npos);
}

// A controller in fatal status answers nothing more: the transport's health check (a CSTS read
// every 1024 polls) fails the qpair with the diagnostic, so no caller waits forever. Destroying the
// qpair afterwards (its Delete I/O SQ/CQ go to the dead admin queue) does not hang either.
TEST(QueuePair, ControllerFatalStatusFailsTheQpairInsteadOfHanging) {
  auto ctrl = make_emu(manual_options());
  auto qp = ctrl->create_io_qpair(qp_options(8)).value();
  auto buf = ctrl->dma_alloc(512).value();
  Recorder rec;
  ASSERT_TRUE(qp->read(1, 0, 1, buf.whole(), Recorder::callback, &rec).ok());
  drive(*ctrl, *qp, rec, 1);
  FaultRule rule;
  rule.kind = FaultRule::Kind::kControllerFatal;  // the next command stops the controller
  ctrl->inject_fault(rule);
  for (int i = 1; i < 3; ++i) ASSERT_TRUE(qp->read(1, i, 1, buf.whole(), Recorder::callback, &rec).ok());
  ctrl->step();
  int polls = 0;
  while (qp->process_completions().ok() && polls < 10'000) ++polls;
  ASSERT_EQ(qp->state(), QueuePair::State::kFailed) << "still active after " << polls << " polls";
  const std::string& why = qp->failure().message();
  EXPECT_NE(why.find("controller fatal status (CSTS 0x3)"), std::string::npos) << why;
  ASSERT_EQ(rec.results.size(), 3u);
  EXPECT_TRUE(rec.results[0].status.ok());
  EXPECT_EQ(rec.results[1].status.code(), StatusCode::kAborted);
  EXPECT_EQ(rec.results[2].status.code(), StatusCode::kAborted);
  auto retry = qp->read(1, 0, 1, buf.whole(), Recorder::callback, &rec);
  EXPECT_EQ(retry.code(), StatusCode::kAborted);
  qp.reset();  // bounded: the admin queue's own health check fails its commands too
}

TEST(QueuePair, DestroyingAQpairAbortsOutstandingCommandsAndDeletesItsQueues) {
  auto ctrl = make_emu(manual_options());
  Recorder rec;
  auto buf = ctrl->dma_alloc(512).value();
  {
    auto qp = ctrl->create_io_qpair(qp_options(8)).value();
    ASSERT_TRUE(qp->read(1, 0, 1, buf.whole(), Recorder::callback, &rec).ok());
  }
  ASSERT_EQ(rec.results.size(), 1u);
  EXPECT_EQ(rec.results[0].status.code(), StatusCode::kAborted);
  // The qid is free again: as many qpairs as the device granted can be created.
  std::vector<std::unique_ptr<QueuePair>> qps;
  for (int i = 0; i < ctrl->info().io_queues; ++i) qps.push_back(ctrl->create_io_qpair(qp_options(4)).value());
  auto extra = ctrl->create_io_qpair(qp_options(4));
  EXPECT_EQ(extra.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace nvmux::nvme
