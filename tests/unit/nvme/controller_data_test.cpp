// The backend-neutral data-integrity and error suite. It talks only to the Controller interface
// through a ControllerFactory, so every backend runs the same tests: add a backend by adding one
// line to the INSTANTIATE_TEST_SUITE_P list at the bottom.
#include "nvmux/nvme/controller.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "nvme_test_util.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/shm.hpp"
#include "nvmux/nvme/emu.hpp"
#include "nvmux/nvme/uring.hpp"
#include "nvmux/nvme/vfio.hpp"
#include "support/loop_device.hpp"
#include "support/test_scale.hpp"

namespace nvmux::nvme {
namespace {

using test::Recorder;
using test::stamp;

struct Backend {
  std::string name;
  ControllerFactory factory;
  bool has_null_namespace = true;  // uring has none: there is no null file
  // Why this backend cannot run on this machine ("" when it can); empty function: it always can.
  std::function<std::string()> unavailable = {};
  bool has_file_namespace = true;  // vfio has none: a PCIe controller's namespaces are its own
  // A transfer to an unmapped IOVA completes with an error (emu, uring). Behind an IOMMU (vfio)
  // the IOMMU blocks it and the status is the device's choice.
  bool reports_unmapped_dma = true;
};
// Test names and failure messages show the backend's name, not the struct's bytes.
void PrintTo(const Backend& b, std::ostream* os) { *os << b.name; }

constexpr std::uint64_t kTestDeadlineNs = 60'000'000'000ull;  // a data test that takes longer has hung

class ControllerData : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (!GetParam().unavailable) return;
    // Asked once per backend: the answer does not change within a run.
    static std::map<std::string, std::string> reasons;
    auto [it, inserted] = reasons.try_emplace(GetParam().name);
    if (inserted) it->second = GetParam().unavailable();
    if (!it->second.empty()) GTEST_SKIP() << GetParam().name << " cannot run here: " << it->second;
  }

  std::unique_ptr<Controller> make(std::vector<NamespaceSpec> namespaces) {
    ControllerSpec spec;
    spec.name = "data-" + GetParam().name;
    spec.namespaces = std::move(namespaces);
    auto c = GetParam().factory(spec);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  // Polls until `rec` holds `n` results; fails (never hangs) past the deadline.
  static void wait_for(QueuePair& qp, const Recorder& rec, std::size_t n) {
    std::uint64_t deadline = monotonic_ns() + kTestDeadlineNs;
    while (rec.results.size() < n) {
      auto r = qp.process_completions();
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      ASSERT_LT(monotonic_ns(), deadline) << "completions stopped at " << rec.results.size() << " of " << n;
    }
  }
  // Submits with `submit` (returns Status), polling while the queue is full.
  template <class F>
  static void submit_retrying(QueuePair& qp, F submit) {
    std::uint64_t deadline = monotonic_ns() + kTestDeadlineNs;
    while (true) {
      Status s = submit();
      if (s.ok()) return;
      ASSERT_EQ(s.code(), StatusCode::kQueueFull) << s.to_string();
      ASSERT_TRUE(qp.process_completions().ok());
      ASSERT_LT(monotonic_ns(), deadline);
    }
  }

  // One command's completion, for tests that must know *which* command finished: devices (and
  // the uring backend) may complete commands out of submission order.
  struct Tracked {
    bool done = false;
    IoCompletion result;
    static void callback(void* ctx, const IoCompletion& c) {
      auto* t = static_cast<Tracked*>(ctx);
      t->done = true;
      t->result = c;
    }
  };
  // Polls until command `t` completed; fails (never hangs) past the deadline.
  static void wait_done(QueuePair& qp, const Tracked& t) {
    std::uint64_t deadline = monotonic_ns() + kTestDeadlineNs;
    while (!t.done) {
      auto r = qp.process_completions();
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      ASSERT_LT(monotonic_ns(), deadline) << "a command never completed";
    }
  }

  // Writes stamped data at `depth` commands in flight, reads it back and compares every byte. A
  // buffer slot is reused only after the command that used it completed, in whatever order the
  // device finishes them.
  void write_read_verify(Controller& ctrl, QueuePair& qp, std::uint32_t nsid, std::uint32_t blocks_per_io,
                         std::uint32_t depth, std::size_t buffer_offset, std::uint64_t stamp_value) {
    const NamespaceInfo& ns = ctrl.namespaces().at(nsid - 1);
    const std::size_t io_bytes = std::size_t{blocks_per_io} * ns.block_size;
    auto mem = ctrl.dma_alloc(depth * (io_bytes + buffer_offset) + kPageBytes).value();
    const std::uint64_t ios = std::min<std::uint64_t>(ns.blocks / blocks_per_io, depth * 3);
    auto buf_of = [&](std::uint64_t i) { return (i % depth) * (io_bytes + buffer_offset) + buffer_offset; };
    std::vector<Tracked> writes(ios), reads(ios);
    // Every command must be finished before `writes`/`reads` go away, even when an assertion
    // returns early: drain on the way out.
    struct Drain {
      QueuePair& qp;
      std::vector<Tracked>& a;
      std::vector<Tracked>& b;
      ~Drain() {
        for (auto* v : {&a, &b}) {
          for (auto& t : *v) {
            std::uint64_t deadline = monotonic_ns() + kTestDeadlineNs;
            while (!t.done && qp.outstanding() != 0 && qp.process_completions().ok() && monotonic_ns() < deadline) {
            }
          }
        }
      }
    } drain{qp, writes, reads};
    for (std::uint64_t i = 0; i < ios; ++i) {
      if (i >= depth) wait_done(qp, writes[i - depth]);  // its buffer slot is free again
      std::uint64_t lba = i * blocks_per_io;
      stamp(mem.data() + buf_of(i), io_bytes, stamp_value, lba, ns.block_size);
      ASSERT_TRUE(
          qp.write(nsid, lba, blocks_per_io, mem.slice(buf_of(i), io_bytes), Tracked::callback, &writes[i]).ok());
    }
    for (auto& w : writes) {
      wait_done(qp, w);
      ASSERT_TRUE(w.result.status.ok()) << w.result.status.to_string();
    }
    std::memset(mem.data(), 0xee, mem.size());
    std::vector<std::byte> expect(io_bytes);
    std::uint64_t verified = 0;
    auto verify = [&](std::uint64_t j) {
      wait_done(qp, reads[j]);
      ASSERT_TRUE(reads[j].result.status.ok()) << "read " << j << ": " << reads[j].result.status.to_string();
      stamp(expect.data(), io_bytes, stamp_value, j * blocks_per_io, ns.block_size);
      ASSERT_EQ(std::memcmp(mem.data() + buf_of(j), expect.data(), io_bytes), 0) << "read " << j;
      ++verified;
    };
    for (std::uint64_t i = 0; i < ios; ++i) {
      if (i >= depth) {
        verify(i - depth);  // the read that used this slot, before the slot is reused
        if (HasFatalFailure()) return;
      }
      ASSERT_TRUE(
          qp.read(nsid, i * blocks_per_io, blocks_per_io, mem.slice(buf_of(i), io_bytes), Tracked::callback, &reads[i])
              .ok());
    }
    for (std::uint64_t j = ios > depth ? ios - depth : 0; j < ios; ++j) {
      verify(j);
      if (HasFatalFailure()) return;
    }
    EXPECT_EQ(verified, ios);
  }
};

TEST_P(ControllerData, StampedPatternsSurviveEveryDepthAndTransferSize) {
  auto ctrl = make(
      {NamespaceSpec{8192, 512, NamespaceBacking::kRam, ""}, NamespaceSpec{2048, 4096, NamespaceBacking::kRam, ""}});
  ASSERT_TRUE(ctrl);
  QueuePairOptions o;
  o.sq_entries = 256;
  o.delayed_doorbell = true;
  auto qp = ctrl->create_io_qpair(o).value();
  std::uint64_t stamp_value = 1;
  // Sanitizer builds (stress_factor < 1) run a thinner sweep; every transfer size is kept.
  std::vector<std::uint32_t> depths = ::nvmux::test::stress_factor() < 1.0 ? std::vector<std::uint32_t>{1, 32}
                                                                           : std::vector<std::uint32_t>{1, 4, 32, 128};
  for (std::uint32_t depth : depths) {
    // Blocks per command: one block, under a page, exactly two pages, three pages (first PRP
    // list), 257 x 512 (33 pages, a list with a non-page-multiple length), 128 KiB.
    for (std::uint32_t blocks : {1u, 7u, 16u, 24u, 257u, 256u}) {
      for (std::size_t offset : {std::size_t{0}, std::size_t{512}}) {
        SCOPED_TRACE(fmt::format("ns1 depth {} blocks {} offset {}", depth, blocks, offset));
        write_read_verify(*ctrl, *qp, 1, blocks, depth, offset, stamp_value++);
        if (HasFatalFailure()) return;
      }
    }
    for (std::uint32_t blocks : {1u, 3u, 32u}) {
      SCOPED_TRACE(fmt::format("ns2 depth {} blocks {}", depth, blocks));
      write_read_verify(*ctrl, *qp, 2, blocks, depth, 2048, stamp_value++);
      if (HasFatalFailure()) return;
    }
  }
  EXPECT_EQ(qp->stats().device_errors, 0u);
}

// A client arena shared with nvmuxd lives in a memfd the controller never allocated: registered,
// the device moves data straight into it (no copy through the controller's own DMA arena).
TEST_P(ControllerData, RegisteredForeignMemoryIsAnIoTargetUntilUnregistered) {
  auto ctrl = make({NamespaceSpec{1024, 4096, NamespaceBacking::kRam, ""}});
  ASSERT_TRUE(ctrl);
  auto qp = ctrl->create_io_qpair(QueuePairOptions{}).value();
  auto shm = SharedMemory::create("foreign", 16 * 4096).value();
  auto region = ctrl->register_memory(shm.bytes());
  ASSERT_TRUE(region.ok()) << region.status().to_string();
  stamp(shm.data(), 8 * 4096, 77, 10, 4096);
  Tracked w;
  ASSERT_TRUE(qp->write(1, 10, 8, region->slice(0, 8 * 4096), Tracked::callback, &w).ok());
  wait_done(*qp, w);
  ASSERT_TRUE(w.result.status.ok()) << w.result.status.to_string();
  Tracked r;
  ASSERT_TRUE(qp->read(1, 10, 8, region->slice(8 * 4096, 8 * 4096), Tracked::callback, &r).ok());
  wait_done(*qp, r);
  ASSERT_TRUE(r.result.status.ok()) << r.result.status.to_string();
  EXPECT_EQ(std::memcmp(shm.data(), shm.data() + 8 * 4096, 8 * 4096), 0);
  // Unregistered, the same IOVA is a bad address to the device, never a host access: the memory
  // keeps what it held. The emulator and uring answer Data Transfer Error; behind an IOMMU the
  // device's answer is its own (QEMU's controller reports success for a transfer the IOMMU
  // blocked), so only the memory is checked there.
  IoVec stale = region->slice(0, 4096);
  region->reset();
  std::memset(shm.data(), 0x3c, 4096);
  Tracked bad;
  ASSERT_TRUE(qp->read(1, 10, 1, stale, Tracked::callback, &bad).ok());
  wait_done(*qp, bad);
  const std::vector<std::byte> untouched(4096, std::byte{0x3c});
  EXPECT_EQ(std::memcmp(shm.data(), untouched.data(), 4096), 0) << "a read reached unregistered memory";
  if (GetParam().reports_unmapped_dma) {
    EXPECT_EQ(bad.result.status.code(), StatusCode::kIoError) << bad.result.status.to_string();
  }
}

TEST_P(ControllerData, WriteZeroesAndDeallocateReadBackAsZeroes) {
  auto ctrl = make({NamespaceSpec{1024, 4096, NamespaceBacking::kRam, ""}});
  ASSERT_TRUE(ctrl);
  QueuePairOptions o;
  o.sq_entries = 32;
  auto qp = ctrl->create_io_qpair(o).value();
  auto buf = ctrl->dma_alloc(64 * 4096).value();
  stamp(buf.data(), buf.size(), 7, 0, 4096);
  Recorder rec;
  ASSERT_TRUE(qp->write(1, 0, 64, buf.whole(), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 1);
  ASSERT_TRUE(qp->write_zeroes(1, 4, 8, Recorder::callback, &rec).ok());  // blocks 4..11
  const DsmRange ranges[] = {{0, 2, 20}, {0, 5, 40}};                     // blocks 20..21, 40..44
  ASSERT_TRUE(qp->deallocate(1, ranges, Recorder::callback, &rec).ok());
  ASSERT_TRUE(qp->flush(1, Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 4);
  ASSERT_EQ(rec.ok_count(), 4u);
  std::memset(buf.data(), 0xee, buf.size());
  ASSERT_TRUE(qp->read(1, 0, 64, buf.whole(), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 5);
  ASSERT_TRUE(rec.results.back().status.ok());
  std::vector<std::byte> expect(4096);
  const std::vector<std::byte> zero(4096);
  for (std::uint64_t lba = 0; lba < 64; ++lba) {
    bool zeroed = (lba >= 4 && lba < 12) || (lba >= 20 && lba < 22) || (lba >= 40 && lba < 45);
    stamp(expect.data(), 4096, 7, lba, 4096);
    const auto& want = zeroed ? zero : expect;
    ASSERT_EQ(std::memcmp(buf.data() + lba * 4096, want.data(), 4096), 0) << "lba " << lba;
  }
}

// Each command crosses the namespace's end (a backend with fixed namespaces may have more than 100
// blocks: the end is what Identify reports). Read and Write Zeroes must fail with LBA Out of Range.
// Dataset Management is advisory in the specification ("a compliant controller may choose to take
// no action"): QEMU's controller skips a range beyond the end and succeeds, nvmux's emulator and
// uring refuse it; either answer is allowed, any other is not.
TEST_P(ControllerData, ErrorsComeBackAsDeviceStatus) {
  auto ctrl = make({NamespaceSpec{100, 512, NamespaceBacking::kRam, ""}});
  ASSERT_TRUE(ctrl);
  QueuePairOptions o;
  o.sq_entries = 8;
  auto qp = ctrl->create_io_qpair(o).value();
  auto buf = ctrl->dma_alloc(4096).value();
  const std::uint64_t end = ctrl->namespaces().at(0).blocks;
  Tracked read, zeroes, dsm;
  ASSERT_TRUE(qp->read(1, end - 1, 2, buf.slice(0, 1024), Tracked::callback, &read).ok());
  ASSERT_TRUE(qp->write_zeroes(1, end, 1, Tracked::callback, &zeroes).ok());
  const DsmRange bad[] = {{0, 1, end}};
  ASSERT_TRUE(qp->deallocate(1, bad, Tracked::callback, &dsm).ok());
  for (const auto* t : {&read, &zeroes, &dsm}) {
    wait_done(*qp, *t);
    if (HasFatalFailure()) return;
  }
  for (const auto& [what, t] : {std::pair{"read", &read}, std::pair{"write zeroes", &zeroes}}) {
    EXPECT_EQ(t->result.status.code(), StatusCode::kIoError) << what << ": " << t->result.status.to_string();
    EXPECT_EQ(t->result.cqe.sct(), 0) << what;
    EXPECT_EQ(t->result.cqe.sc(), static_cast<std::uint8_t>(GenericStatus::kLbaOutOfRange)) << what;
  }
  if (!dsm.result.status.ok()) {
    EXPECT_EQ(dsm.result.status.code(), StatusCode::kIoError) << dsm.result.status.to_string();
    EXPECT_EQ(dsm.result.cqe.sct(), 0);
    EXPECT_EQ(dsm.result.cqe.sc(), static_cast<std::uint8_t>(GenericStatus::kLbaOutOfRange));
  }
  EXPECT_EQ(qp->stats().device_errors, dsm.result.status.ok() ? 2u : 3u);
}

TEST_P(ControllerData, NullNamespaceCompletesWithoutMovingData) {
  if (!GetParam().has_null_namespace) GTEST_SKIP() << GetParam().name << " has no null namespace";
  auto ctrl = make({NamespaceSpec{1u << 20, 4096, NamespaceBacking::kNull, ""}});
  ASSERT_TRUE(ctrl);
  QueuePairOptions o;
  o.sq_entries = 64;
  auto qp = ctrl->create_io_qpair(o).value();
  auto buf = ctrl->dma_alloc(4096).value();
  std::memset(buf.data(), 0x5a, 4096);
  Recorder rec;
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(qp->read(1, i * 1000, 1, buf.whole(), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 50);
  EXPECT_EQ(rec.ok_count(), 50u);
  EXPECT_EQ(buf.data()[100], std::byte{0x5a});
}

TEST_P(ControllerData, FileBackedNamespaceKeepsItsDataAcrossARestart) {
  if (!GetParam().has_file_namespace) GTEST_SKIP() << GetParam().name << " has no file namespace";
  std::string path =
      (std::filesystem::temp_directory_path() / fmt::format("nvmux-ns-{}-{}.img", ::getpid(), GetParam().name))
          .string();
  std::filesystem::remove(path);
  NamespaceSpec spec{256, 4096, NamespaceBacking::kFile, path};
  {
    auto ctrl = make({spec});
    ASSERT_TRUE(ctrl);
    QueuePairOptions o;
    o.sq_entries = 8;
    auto qp = ctrl->create_io_qpair(o).value();
    auto buf = ctrl->dma_alloc(16 * 4096).value();
    stamp(buf.data(), buf.size(), 42, 100, 4096);
    Recorder rec;
    ASSERT_TRUE(qp->write(1, 100, 16, buf.whole(), Recorder::callback, &rec).ok());
    ASSERT_TRUE(qp->flush(1, Recorder::callback, &rec).ok());
    wait_for(*qp, rec, 2);
    ASSERT_EQ(rec.ok_count(), 2u);
  }
  {
    auto ctrl = make({spec});
    ASSERT_TRUE(ctrl);
    QueuePairOptions o;
    o.sq_entries = 8;
    auto qp = ctrl->create_io_qpair(o).value();
    auto buf = ctrl->dma_alloc(16 * 4096).value();
    Recorder rec;
    ASSERT_TRUE(qp->read(1, 100, 16, buf.whole(), Recorder::callback, &rec).ok());
    wait_for(*qp, rec, 1);
    ASSERT_TRUE(rec.results[0].status.ok());
    std::vector<std::byte> expect(16 * 4096);
    stamp(expect.data(), expect.size(), 42, 100, 4096);
    EXPECT_EQ(std::memcmp(buf.data(), expect.data(), expect.size()), 0);
  }
  std::filesystem::remove(path);
}

// A file another process truncates under a running controller: reads past its new end fail with
// an I/O error carrying the errno (CDW0), and the process lives on (a mapped file would SIGBUS).
TEST_P(ControllerData, AFileTruncatedUnderneathFailsReadsInsteadOfKillingTheProcess) {
  if (!GetParam().has_file_namespace) GTEST_SKIP() << GetParam().name << " has no file namespace";
  std::string path =
      (std::filesystem::temp_directory_path() / fmt::format("nvmux-trunc-{}-{}.img", ::getpid(), GetParam().name))
          .string();
  std::filesystem::remove(path);
  auto ctrl = make({NamespaceSpec{256, 4096, NamespaceBacking::kFile, path}});
  ASSERT_TRUE(ctrl);
  auto qp = ctrl->create_io_qpair(QueuePairOptions{}).value();
  auto buf = ctrl->dma_alloc(4 * 4096).value();
  Recorder rec;
  ASSERT_TRUE(qp->write(1, 200, 4, buf.whole(), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 1);
  ASSERT_TRUE(rec.results[0].status.ok()) << rec.results[0].status.to_string();
  std::filesystem::resize_file(path, 0);  // "another process"
  ASSERT_TRUE(qp->read(1, 200, 4, buf.whole(), Recorder::callback, &rec).ok());
  wait_for(*qp, rec, 2);
  EXPECT_EQ(rec.results[1].status.code(), StatusCode::kIoError) << rec.results[1].status.to_string();
  EXPECT_NE(rec.results[1].cqe.cdw0, 0u) << "the completion should carry the errno behind the failure";
  qp.reset();
  ctrl.reset();
  std::filesystem::remove(path);
}

EmuOptions emu_base(EmuEngine engine) {
  EmuOptions o;
  o.engine = engine;
  o.dma_arena_bytes = 128u << 20;
  return o;
}

// uring namespaces standing in for RAM ones are scratch files in the test's working directory (the
// build tree): O_DIRECT needs a real filesystem, which /tmp may not be.
UringOptions uring_base(bool direct) {
  UringOptions o;
  o.direct = direct;
  o.scratch_dir = std::filesystem::current_path().string();
  o.dma_arena_bytes = std::size_t{64} << 20;
  return o;
}

// uring on real block devices: each RAM namespace becomes a scratch file behind a loop device
// (direct I/O, detached by the kernel when the controller closes it), so reads, writes, flush,
// write zeroes and deallocate go through the bdev path: BLKGETSIZE64, fallocate on a device.
ControllerFactory uring_bdev_factory(UringOptions base) {
  return [base](const ControllerSpec& spec) -> Result<std::unique_ptr<Controller>> {
    UringOptions options = base;
    options.name = spec.name;
    options.namespaces.clear();
    std::vector<nvmux::test::LoopDevice> loops;  // held until the controller has opened them
    for (const NamespaceSpec& ns : spec.namespaces) {
      const std::uint64_t bytes = ns.blocks * ns.block_size;
      if (ns.backing == NamespaceBacking::kNull) {
        return Status::error(StatusCode::kUnsupported, "uring_bdev has no null namespace");
      }
      if (ns.backing == NamespaceBacking::kFile) {
        options.namespaces.push_back(UringNamespace{ns.path, bytes, ns.block_size});
        continue;
      }
      auto loop = nvmux::test::LoopDevice::attach(
          fmt::format("{}/nvmux-bdev-{}-{}-{}.img", base.scratch_dir, ::getpid(), spec.name, loops.size()), bytes);
      if (!loop.ok()) return loop.status();
      options.namespaces.push_back(UringNamespace{loop->path(), 0, ns.block_size});
      loops.push_back(std::move(loop).value());
    }
    auto ctrl = UringController::create(std::move(options));
    if (!ctrl.ok()) return ctrl.status();
    return std::unique_ptr<Controller>(std::move(ctrl).value());
  };
}

// A comma-separated list from the environment ("" items dropped).
std::vector<std::string> env_list(const char* name) {
  std::vector<std::string> out;
  const char* env = std::getenv(name);
  std::string list = env == nullptr ? "" : env;
  for (std::size_t start = 0; start < list.size();) {
    std::size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// uring on the kernel's NVMe block devices named by NVMUX_URING_NVME (the test guest's
// /dev/nvme0n1 of 512-byte blocks and /dev/nvme0n2 of 4 KiB blocks, on QEMU's controller): each RAM
// namespace of the spec takes the first unused device with its block size, so the suite drives a
// real NVMe block device through the kernel. Unset (the host), the instance is skipped.
ControllerFactory uring_nvme_factory(UringOptions base) {
  return [base](const ControllerSpec& spec) -> Result<std::unique_ptr<Controller>> {
    UringOptions options = base;
    options.name = spec.name;
    options.namespaces.clear();
    std::vector<std::string> devices = env_list("NVMUX_URING_NVME");
    for (const NamespaceSpec& ns : spec.namespaces) {
      if (ns.backing != NamespaceBacking::kRam) {
        return Status::error(StatusCode::kUnsupported, "uring_nvme: RAM namespaces only (they map onto devices)");
      }
      auto it = std::find_if(devices.begin(), devices.end(), [&](const std::string& d) {
        std::string name = std::filesystem::path(d).filename().string();
        std::FILE* f = std::fopen(("/sys/block/" + name + "/queue/logical_block_size").c_str(), "r");
        unsigned size = 0;
        if (f != nullptr) {
          if (std::fscanf(f, "%u", &size) != 1) size = 0;
          std::fclose(f);
        }
        return size == ns.block_size;
      });
      if (it == devices.end()) {
        return Status::error(StatusCode::kUnavailable, "uring_nvme: no unused device of {}-byte blocks", ns.block_size);
      }
      options.namespaces.push_back(UringNamespace{*it, 0, ns.block_size});
      devices.erase(it);
    }
    auto ctrl = UringController::create(std::move(options));
    if (!ctrl.ok()) return ctrl.status();
    return std::unique_ptr<Controller>(std::move(ctrl).value());
  };
}

std::string uring_nvme_unavailable() {
  return env_list("NVMUX_URING_NVME").empty()
             ? "NVMUX_URING_NVME names no NVMe block device (the vm tests run this inside the test guest)"
             : "";
}

// vfio: the PCIe controllers named by NVMUX_VFIO_PCI (comma-separated addresses, bound to
// vfio-pci): QEMU's NVMe controllers inside the test guest (tests/vm.cmake). Unset, as on the host,
// the instance is skipped with that reason.
std::vector<std::string> vfio_addresses() { return env_list("NVMUX_VFIO_PCI"); }
std::string vfio_unavailable() {
  return vfio_addresses().empty()
             ? "NVMUX_VFIO_PCI names no controller bound to vfio-pci (the vm tests run this inside the test guest)"
             : "";
}

INSTANTIATE_TEST_SUITE_P(
    Backends, ControllerData,
    ::testing::Values(Backend{"emu_thread", EmuController::factory(emu_base(EmuEngine::kThread))},
                      Backend{"emu_inline", EmuController::factory(emu_base(EmuEngine::kInline))},
                      Backend{"uring", UringController::factory(uring_base(true)), false},
                      Backend{"uring_buffered", UringController::factory(uring_base(false)), false},
                      Backend{"uring_bdev", uring_bdev_factory(uring_base(true)), false,
                              [] { return nvmux::test::LoopDevice::unavailable(uring_base(true).scratch_dir); }},
                      Backend{"uring_nvme", uring_nvme_factory(uring_base(true)), false, uring_nvme_unavailable, false},
                      Backend{"vfio", VfioController::factory(VfioOptions{}, vfio_addresses()), false, vfio_unavailable,
                              false, false}),
    [](const ::testing::TestParamInfo<Backend>& info) { return info.param.name; });

}  // namespace
}  // namespace nvmux::nvme
