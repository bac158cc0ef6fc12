// The uring backend's own behaviour: set-up errors, what it answers without the kernel, the
// errno -> NVMe status table, the bounce path for misaligned memory, and the kernel's single-issuer
// rule backing nvmux's owner rule. (Data integrity runs in the shared suite, controller_data_test.)
#include "nvmux/nvme/uring.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "nvme_test_util.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/shm.hpp"

namespace nvmux::nvme {
namespace {

using test::Recorder;

class UringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::current_path() / fmt::format("uring-test-{}", ::getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::unique_ptr<UringController> make(std::uint64_t bytes = 1 << 20, std::uint32_t bs = 4096, bool direct = true) {
    UringOptions o;
    o.name = "uring-test";
    o.direct = direct;
    o.namespaces.push_back(UringNamespace{path("ns1.img"), bytes, bs});
    auto c = UringController::create(o);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  static void wait_for(QueuePair& qp, const Recorder& rec, std::size_t n) {
    std::uint64_t deadline = monotonic_ns() + 30'000'000'000ull;
    while (rec.results.size() < n) {
      ASSERT_TRUE(qp.process_completions().ok());
      ASSERT_LT(monotonic_ns(), deadline) << "completions stopped at " << rec.results.size() << " of " << n;
    }
  }

  std::filesystem::path dir_;
};

TEST_F(UringTest, CreatesAMissingFileAtItsSize) {
  auto c = make(3 << 20, 512);
  ASSERT_TRUE(c);
  EXPECT_EQ(std::filesystem::file_size(path("ns1.img")), 3u << 20);
  ASSERT_EQ(c->namespaces().size(), 1u);
  EXPECT_EQ(c->namespaces()[0].blocks, (3u << 20) / 512);
  EXPECT_EQ(c->namespaces()[0].block_size, 512u);
}

void expect_create_error(UringOptions o, StatusCode code, const std::string& words) {
  auto c = UringController::create(std::move(o));
  ASSERT_FALSE(c.ok()) << "expected: " << words;
  EXPECT_EQ(c.status().code(), code) << c.status().to_string();
  EXPECT_NE(c.status().message().find(words), std::string::npos) << c.status().message();
}

TEST_F(UringTest, SetUpErrorsSayWhatIsWrong) {
  UringOptions o;
  expect_create_error(o, StatusCode::kInvalidArgument, "without namespaces");
  o.namespaces = {UringNamespace{path("missing.img"), 0, 4096}};
  expect_create_error(o, StatusCode::kInvalidArgument, "does not exist and no size was given");
  o.namespaces = {UringNamespace{path("a.img"), 1 << 20, 1024}};
  expect_create_error(o, StatusCode::kInvalidArgument, "block size 1024 is not 512 or 4096");
  o.namespaces = {UringNamespace{path("a.img"), 5000, 4096}};
  expect_create_error(o, StatusCode::kInvalidArgument, "size 5000 is not a multiple of 4096");
  o.namespaces = {UringNamespace{dir_.string(), 1 << 20, 4096}};
  expect_create_error(o, StatusCode::kInvalidArgument, "neither a regular file nor a block device");
  o.namespaces = {UringNamespace{"/nonexistent-dir/x.img", 1 << 20, 4096}};
  expect_create_error(o, StatusCode::kNotFound, "open /nonexistent-dir/x.img");
  o.namespaces = {UringNamespace{path("a.img"), 1 << 20, 4096}};
  o.max_transfer_bytes = 3000;
  expect_create_error(o, StatusCode::kInvalidArgument, "max_transfer_bytes 3000");
}

TEST_F(UringTest, FactoryRefusesANullNamespaceClearly) {
  ControllerSpec spec;
  spec.namespaces = {NamespaceSpec{1024, 4096, NamespaceBacking::kNull, ""}};
  auto c = UringController::factory(UringOptions{})(spec);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(c.status().message().find("no null namespace"), std::string::npos);
}

TEST_F(UringTest, OutOfRangeRequestsNeverReachTheKernel) {
  auto c = make(1 << 20, 4096);  // 256 blocks
  ASSERT_TRUE(c);
  QueuePairOptions qo;
  qo.sq_entries = 16;
  auto qp = c->create_io_qpair(qo).value();
  auto buf = c->dma_alloc(8192).value();
  Recorder rec;
  SubmissionEntry raw{};
  raw.opcode = static_cast<std::uint8_t>(NvmOpcode::kRead);
  raw.nsid = 1;
  raw.cdw10 = 255;  // LBA 255 + 2 blocks: one past the end
  raw.cdw12 = 1;
  ASSERT_TRUE(qp->submit_raw(raw, buf.whole(), Recorder::callback, &rec).ok());
  raw.nsid = 7;  // no such namespace
  raw.cdw10 = 0;
  ASSERT_TRUE(qp->submit_raw(raw, buf.whole(), Recorder::callback, &rec).ok());
  raw.nsid = 1;
  raw.opcode = 0x7f;  // no such opcode
  ASSERT_TRUE(qp->submit_raw(raw, buf.whole(), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 3);
  EXPECT_EQ(rec.results[0].cqe.sc(), static_cast<std::uint8_t>(GenericStatus::kLbaOutOfRange));
  EXPECT_EQ(rec.results[1].cqe.sc(), static_cast<std::uint8_t>(GenericStatus::kInvalidNamespaceOrFormat));
  EXPECT_EQ(rec.results[2].cqe.sc(), static_cast<std::uint8_t>(GenericStatus::kInvalidOpcode));
  for (const auto& r : rec.results) EXPECT_TRUE(r.cqe.dnr());
  UringStats s = c->stats();
  EXPECT_EQ(s.rejected, 3u);
  EXPECT_EQ(s.sqes, 0u) << "a rejected command reached the kernel";
}

TEST_F(UringTest, MisalignedMemoryIsBouncedAndDataSurvives) {
  auto c = make(1 << 20, 512);
  ASSERT_TRUE(c);
  QueuePairOptions qo;
  qo.sq_entries = 8;
  auto qp = c->create_io_qpair(qo).value();
  auto mem = c->dma_alloc(3 * 4096).value();
  // 1.5 KiB at an offset of 8 bytes: dword aligned for NVMe, not 512-aligned for O_DIRECT.
  test::stamp(mem.data() + 8, 1536, 7, 10, 512);
  Recorder rec;
  ASSERT_TRUE(qp->write(1, 10, 3, mem.slice(8, 1536), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 1);
  ASSERT_TRUE(rec.results[0].status.ok()) << rec.results[0].status.to_string();
  std::vector<std::byte> want(mem.data() + 8, mem.data() + 8 + 1536);
  std::memset(mem.data(), 0, mem.size());
  ASSERT_TRUE(qp->read(1, 10, 3, mem.slice(4100, 1536), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 2);
  ASSERT_TRUE(rec.results[1].status.ok());
  EXPECT_EQ(std::memcmp(mem.data() + 4100, want.data(), want.size()), 0);
  EXPECT_EQ(c->stats().bounced, 2u);
  // An aligned single-range transfer goes through the registered buffer instead.
  ASSERT_TRUE(qp->read(1, 0, 8, mem.slice(0, 4096), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 3);
  EXPECT_EQ(c->stats().fixed_rw, 1u);
}

// A client arena (foreign memory in a memfd, as nvmuxd maps it) becomes a registered buffer of
// the ring at its first transfer; a region mapped later into the same slot is registered anew
// (never served by the old pages), and an unregistered region leaves the table.
TEST_F(UringTest, ForeignMemoryIsRegisteredAtItsFirstTransferAndReplacedWhenItChanges) {
  auto c = make(1 << 20, 4096);
  ASSERT_TRUE(c);
  QueuePairOptions qo;
  qo.sq_entries = 8;
  auto qp = c->create_io_qpair(qo).value();
  auto first = SharedMemory::create("client-arena-1", 8 * 4096).value();
  auto region = c->register_memory(first.bytes()).value();
  EXPECT_EQ(c->registered_regions(), 1u);
  test::stamp(first.data(), 4 * 4096, 11, 0, 4096);
  Recorder rec;
  ASSERT_TRUE(qp->write(1, 0, 4, region.slice(0, 4 * 4096), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 1);  // the kernel may run two queued requests in either order
  ASSERT_TRUE(qp->read(1, 0, 4, region.slice(4 * 4096, 4 * 4096), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 2);
  for (const auto& r : rec.results) ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_EQ(std::memcmp(first.data(), first.data() + 4 * 4096, 4 * 4096), 0);
  UringStats s = c->stats();
  EXPECT_EQ(s.foreign_registrations, 1u);
  EXPECT_EQ(s.fixed_rw, 2u);
  EXPECT_EQ(s.vectored_rw, 0u);

  // The slot is freed and reused for other memory: the ring registers the new pages and the data
  // lands in the new memory, not in the old.
  const std::uint64_t first_iova = region.iova();
  region.reset();
  EXPECT_EQ(c->registered_regions(), 0u);
  auto second = SharedMemory::create("client-arena-2", 8 * 4096).value();
  auto again = c->register_memory(second.bytes()).value();
  ASSERT_EQ(again.iova(), first_iova) << "the test needs the slot reused";
  std::memset(first.data(), 0, first.size());
  ASSERT_TRUE(qp->read(1, 0, 4, again.slice(0, 4 * 4096), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 3);
  ASSERT_TRUE(rec.results[2].status.ok()) << rec.results[2].status.to_string();
  std::vector<std::byte> want(4 * 4096);
  test::stamp(want.data(), want.size(), 11, 0, 4096);
  EXPECT_EQ(std::memcmp(second.data(), want.data(), want.size()), 0) << "the read did not land in the new region";
  EXPECT_EQ(std::count(first.data(), first.data() + 4 * 4096, std::byte{0}), 4 * 4096)
      << "the read landed in the unregistered region's pages";
  s = c->stats();
  EXPECT_EQ(s.foreign_registrations, 2u);
  EXPECT_EQ(s.fixed_rw, 3u);
}

TEST_F(UringTest, ErrnoTableMapsKernelErrorsToNvmeStatuses) {
  auto read = static_cast<std::uint8_t>(NvmOpcode::kRead);
  auto write = static_cast<std::uint8_t>(NvmOpcode::kWrite);
  auto sc = [](std::uint16_t status) { return static_cast<std::uint8_t>((status >> 1) & 0xff); };
  auto sct = [](std::uint16_t status) { return static_cast<std::uint8_t>((status >> 9) & 0x7); };
  EXPECT_EQ(sct(errno_to_status(EIO, read)), 2);
  EXPECT_EQ(sc(errno_to_status(EIO, read)), static_cast<std::uint8_t>(MediaStatus::kUnrecoveredReadError));
  EXPECT_EQ(sc(errno_to_status(EIO, write)), static_cast<std::uint8_t>(MediaStatus::kWriteFault));
  EXPECT_EQ(sc(errno_to_status(ENOSPC, write)), static_cast<std::uint8_t>(GenericStatus::kCapacityExceeded));
  EXPECT_EQ(sc(errno_to_status(EOPNOTSUPP, write)), static_cast<std::uint8_t>(GenericStatus::kInvalidOpcode));
  EXPECT_EQ(sc(errno_to_status(EROFS, write)), static_cast<std::uint8_t>(GenericStatus::kNamespaceIsWriteProtected));
  EXPECT_EQ(sc(errno_to_status(EINVAL, read)), static_cast<std::uint8_t>(GenericStatus::kInvalidField));
  // Transient errors leave DNR clear so the qpair's retry policy applies.
  EXPECT_EQ(errno_to_status(EAGAIN, read) & (1u << 15), 0);
  EXPECT_NE(errno_to_status(EIO, read) & (1u << 15), 0);
}

TEST_F(UringTest, KernelErrorKeepsItsErrnoInTheCompletion) {
  auto c = make(1 << 20, 4096, false);
  ASSERT_TRUE(c);
  QueuePairOptions qo;
  qo.sq_entries = 8;
  auto qp = c->create_io_qpair(qo).value();
  // The file shrinks behind the controller's back: a read of its tail now ends early.
  ASSERT_EQ(::truncate(path("ns1.img").c_str(), 4096), 0);
  auto buf = c->dma_alloc(4096).value();
  Recorder rec;
  ASSERT_TRUE(qp->read(1, 100, 1, buf.whole(), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 1);
  EXPECT_EQ(rec.results[0].status.code(), StatusCode::kIoError);
  EXPECT_EQ(rec.results[0].cqe.sc(), static_cast<std::uint8_t>(GenericStatus::kDataTransferError));
  EXPECT_EQ(rec.results[0].cqe.cdw0, static_cast<std::uint32_t>(EIO)) << "the errno travels in cdw0";
}

TEST_F(UringTest, TheKernelRefusesASubmitFromAnotherThread) {
  auto c = make();
  ASSERT_TRUE(c);
  QueuePairOptions qo;
  qo.sq_entries = 8;
  qo.access = QueuePairAccess::kCallerSerialised;  // a broken promise: take nvmux's check away to see the kernel's
  auto qp = c->create_io_qpair(qo).value();
  auto buf = c->dma_alloc(4096).value();
  Recorder rec;
  std::thread intruder([&] {
    ASSERT_TRUE(qp->read(1, 0, 1, buf.whole(), Recorder::callback, &rec).ok());
    (void)qp->process_completions();  // its io_uring_submit is refused with -EEXIST
  });
  intruder.join();
  EXPECT_GE(c->stats().refused_submits, 1u);
  EXPECT_EQ(c->stats().sqes, 0u);
  wait_for(*qp, rec, 1);  // the owner's next poll submits what was left in the ring
  EXPECT_TRUE(rec.results[0].status.ok()) << rec.results[0].status.to_string();
}

TEST_F(UringTest, AdminIdentifyIsAnsweredOtherAdminCommandsAreNot) {
  auto c = make(1 << 20, 4096);
  ASSERT_TRUE(c);
  auto buf = c->dma_alloc(4096).value();
  SubmissionEntry id{};
  id.opcode = static_cast<std::uint8_t>(AdminOpcode::kIdentify);
  id.cdw10 = static_cast<std::uint32_t>(IdentifyCns::kController);
  auto done = c->admin_command(id, buf.whole());
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(done->success());
  const auto* ctrl = reinterpret_cast<const IdentifyController*>(buf.data());
  EXPECT_EQ(ctrl->nn, 1u);
  EXPECT_EQ(std::string(ctrl->mn, 14), "nvmux io_uring");
  id.cdw10 = static_cast<std::uint32_t>(IdentifyCns::kNamespace);
  id.nsid = 1;
  ASSERT_TRUE(c->admin_command(id, buf.whole()).ok());
  EXPECT_EQ(reinterpret_cast<const IdentifyNamespace*>(buf.data())->nsze, 256u);
  SubmissionEntry format{};
  format.opcode = static_cast<std::uint8_t>(AdminOpcode::kFormatNvm);
  auto refused = c->admin_command(format, buf.whole());
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->sc(), static_cast<std::uint8_t>(GenericStatus::kInvalidOpcode));
}

}  // namespace
}  // namespace nvmux::nvme
