// Real threads on the NVMe layer: four owners driving four qpairs at once with every byte
// verified, and the misuse from spdk/spdk#3557 (two threads sharing one qpair), with the owner
// rule on and with it switched off under a forced interleaving. Every wait has a deadline.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "nvmux/common/cpu.hpp"
#include "nvmux/nvme/emu.hpp"
#include "support/test_scale.hpp"
#include "unit/nvme/nvme_test_util.hpp"

namespace nvmux::nvme {
namespace {

using test::Recorder;
using test::stamp;

constexpr std::uint64_t kDeadlineNs = 90'000'000'000ull;
constexpr auto kWaitLimit = std::chrono::seconds(30);

TEST(NvmeStress, FourQpairsDrivenByFourThreadsVerifyEveryByte) {
  constexpr int kThreads = 4;
  constexpr std::uint32_t kBlocksPerThread = 2048;  // 4 KiB blocks: 8 MiB per thread
  constexpr std::uint32_t kDepth = 32;
  const std::uint64_t ios_per_thread = ::nvmux::test::stress_count(8000, 300);
  EmuOptions o;
  o.name = "stress";
  o.engine = EmuEngine::kThread;
  o.dma_arena_bytes = 64u << 20;
  o.namespaces.push_back(NamespaceSpec{kBlocksPerThread * kThreads, 4096, NamespaceBacking::kRam, ""});
  auto ctrl = EmuController::create(o).value();

  std::atomic<int> failures{0};
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  const std::uint64_t deadline = monotonic_ns() + kDeadlineNs;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto fail = [&](std::string why) {
        errors[t] = std::move(why);
        failures.fetch_add(1, std::memory_order_relaxed);
      };
      QueuePairOptions qo;
      qo.sq_entries = 64;
      qo.delayed_doorbell = (t % 2) == 0;
      auto qp_or = ctrl->create_io_qpair(qo);  // owned by this thread
      if (!qp_or.ok()) return fail(qp_or.status().to_string());
      auto qp = std::move(qp_or).value();
      // Each slot: one write buffer and one read buffer of up to 8 blocks.
      constexpr std::size_t kSlotBytes = 8 * 4096;
      auto mem = ctrl->dma_alloc(2 * kDepth * kSlotBytes).value();
      struct Slot {
        std::uint64_t lba = 0;
        std::uint32_t blocks = 0;
        std::uint64_t stamp_value = 0;
        int phase = 0;  // 0 free, 1 writing, 2 reading
        bool done = false;
        Status status;
      };
      std::vector<Slot> slots(kDepth);
      auto on_done = [](void* ctx, const IoCompletion& c) {
        auto* s = static_cast<Slot*>(ctx);
        s->done = true;
        s->status = c.status;
      };
      const std::uint64_t base_lba = std::uint64_t{kBlocksPerThread} * t;
      std::uint64_t issued = 0, verified = 0;
      std::vector<std::byte> expect(kSlotBytes);
      while (verified < ios_per_thread) {
        if (monotonic_ns() > deadline)
          return fail(fmt::format("deadline: {} of {} verified", verified, ios_per_thread));
        for (std::uint32_t i = 0; i < kDepth; ++i) {
          Slot& s = slots[i];
          std::byte* wbuf = mem.data() + (2 * i) * kSlotBytes;
          std::byte* rbuf = mem.data() + (2 * i + 1) * kSlotBytes;
          if (s.phase != 0 && !s.done) continue;
          if (s.phase != 0 && !s.status.ok()) return fail(s.status.to_string());
          if (s.phase == 1) {  // write finished: read it back
            std::memset(rbuf, 0, s.blocks * 4096);
            s.phase = 2;
            s.done = false;
            Status st = qp->read(1, s.lba, s.blocks, mem.slice((2 * i + 1) * kSlotBytes, s.blocks * 4096), on_done, &s);
            if (!st.ok()) return fail(st.to_string());
            continue;
          }
          if (s.phase == 2) {
            stamp(expect.data(), s.blocks * 4096, s.stamp_value, s.lba, 4096);
            if (std::memcmp(rbuf, expect.data(), s.blocks * 4096) != 0) {
              return fail(fmt::format("thread {} lba {} blocks {}: data mismatch", t, s.lba, s.blocks));
            }
            ++verified;
            s.phase = 0;
          }
          if (issued >= ios_per_thread) continue;
          // Slot i owns LBAs [i * 64, i * 64 + 64) of this thread's range: no two in-flight
          // commands ever overlap, so every read must return the slot's own last write.
          s.blocks = 1 + static_cast<std::uint32_t>(issued % 8);
          s.lba = base_lba + i * 64 + (issued * 7) % (64 - 8);
          s.stamp_value = (std::uint64_t(t) << 32) | issued;
          stamp(wbuf, s.blocks * 4096, s.stamp_value, s.lba, 4096);
          s.phase = 1;
          s.done = false;
          Status st = qp->write(1, s.lba, s.blocks, mem.slice(2 * i * kSlotBytes, s.blocks * 4096), on_done, &s);
          if (!st.ok()) return fail(st.to_string());
          ++issued;
        }
        auto r = qp->process_completions();
        if (!r.ok()) return fail(r.status().to_string());
        // Five busy threads share two cores here: give the device thread the core when idle.
        if (*r == 0) std::this_thread::yield();
      }
      if (qp->stats().device_errors != 0) fail("device errors");
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_TRUE(errors[t].empty()) << "thread " << t << ": " << errors[t];
  EXPECT_EQ(failures.load(), 0);
}

TEST(NvmeStress, OwnerRuleRefusesASecondThreadAtOnce) {
  EmuOptions o = test::manual_options();
  auto ctrl = EmuController::create(o).value();
  QueuePairOptions qo;
  qo.name = "shared-by-mistake";
  qo.sq_entries = 8;
  auto qp = ctrl->create_io_qpair(qo).value();
  auto buf = ctrl->dma_alloc(512).value();
  Recorder rec;
  ASSERT_TRUE(qp->read(1, 0, 1, buf.whole(), Recorder::callback, &rec).ok());
  Status submit_status, poll_status, reset_status;
  std::thread intruder([&] {
    set_current_thread_name("intruder");
    submit_status = qp->read(1, 1, 1, buf.whole(), Recorder::callback, &rec);
    poll_status = qp->process_completions().status();
    reset_status = qp->reset();
  });
  intruder.join();
  for (const Status* s : {&submit_status, &poll_status, &reset_status}) {
    EXPECT_EQ(s->code(), StatusCode::kWrongThread) << s->to_string();
    EXPECT_NE(s->message().find("qpair 'shared-by-mistake'"), std::string::npos) << s->message();
    EXPECT_NE(s->message().find("is owned by tid " + std::to_string(current_tid())), std::string::npos) << s->message();
    EXPECT_NE(s->message().find("'intruder'"), std::string::npos) << s->message();
  }
  EXPECT_NE(poll_status.message().find("process_completions was called from"), std::string::npos);
  // The intruder changed nothing: the owner still completes its command.
  EXPECT_EQ(qp->stats().submitted, 1u);
  test::drive(*ctrl, *qp, rec, 1);
  EXPECT_EQ(rec.ok_count(), 1u);
}

// Two drivers of one queue read the same completion entry before either moves the head: the
// interleaving a qpair shared across processes hits. The second to match it finds its command id
// no longer outstanding and must fail the qpair with the diagnostic, not crash or hang.
struct Interleaving {
  std::mutex mutex;
  std::condition_variable cv;
  std::thread::id first_poller;
  bool first_paused = false;
  bool intruder_done = false;
  bool timed_out = false;
  static void after_cqe_read(void* arg) {
    auto* self = static_cast<Interleaving*>(arg);
    std::unique_lock lock(self->mutex);
    if (std::this_thread::get_id() != self->first_poller || self->first_paused) return;
    self->first_paused = true;
    self->cv.notify_all();
    // Hold the entry we just read until the intruder has completed the very same one.
    if (!self->cv.wait_for(lock, kWaitLimit, [self] { return self->intruder_done; })) self->timed_out = true;
  }
};

TEST(NvmeStress, SharedQpairWithoutOwnerRuleFailsWithDiagnosticInsteadOfCrashing) {
  EmuOptions o = test::manual_options();
  auto ctrl = EmuController::create(o).value();
  Interleaving il;
  il.first_poller = std::this_thread::get_id();
  QueuePairOptions qo;
  qo.name = "shared";
  qo.sq_entries = 8;
  qo.access = QueuePairAccess::kCallerSerialised;  // a broken promise: let the misuse through
  qo.test_after_cqe_read = &Interleaving::after_cqe_read;
  qo.test_hook_arg = &il;
  auto qp = ctrl->create_io_qpair(qo).value();
  auto buf = ctrl->dma_alloc(1024).value();
  std::mutex rec_mutex;  // callbacks run on both threads here
  struct Shared {
    std::mutex* m;
    Recorder rec;
  } shared{&rec_mutex, {}};
  auto cb = [](void* ctx, const IoCompletion& c) {
    auto* s = static_cast<Shared*>(ctx);
    std::lock_guard lock(*s->m);
    s->rec.results.push_back(c);
  };
  ASSERT_TRUE(qp->read(1, 0, 1, buf.slice(0, 512), cb, &shared).ok());    // cid 0
  ASSERT_TRUE(qp->read(1, 1, 1, buf.slice(512, 512), cb, &shared).ok());  // cid 1
  ctrl->step();                                                           // both completions are now in the CQ

  Status intruder_status;
  std::thread intruder([&] {
    {
      std::unique_lock lock(il.mutex);
      if (!il.cv.wait_for(lock, kWaitLimit, [&] { return il.first_paused; })) {
        il.timed_out = true;
        return;
      }
    }
    auto r = qp->process_completions(1);  // completes cid 0 and moves the head
    intruder_status = r.status();
    std::lock_guard lock(il.mutex);
    il.intruder_done = true;
    il.cv.notify_all();
  });
  auto r = qp->process_completions(1);  // reads cid 0, pauses, then matches it after the intruder
  intruder.join();
  ASSERT_FALSE(il.timed_out) << "the forced interleaving did not happen";
  EXPECT_TRUE(intruder_status.ok()) << intruder_status.to_string();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kAborted);
  const std::string& why = qp->failure().message();
  EXPECT_NE(why.find("qpair 'shared' (qid 1) failed: completion does not map to an outstanding command"),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("cid 0 (not outstanding)"), std::string::npos) << why;
  EXPECT_NE(why.find("SQ head 1"), std::string::npos) << why;
  EXPECT_NE(why.find("1 commands outstanding"), std::string::npos) << why;
  EXPECT_EQ(qp->state(), QueuePair::State::kFailed);
  std::lock_guard lock(rec_mutex);
  ASSERT_EQ(shared.rec.results.size(), 2u);  // cid 0 once (by the intruder), cid 1 aborted
  EXPECT_TRUE(shared.rec.results[0].status.ok());
  EXPECT_EQ(shared.rec.results[1].cid, 1);
  EXPECT_EQ(shared.rec.results[1].status.code(), StatusCode::kAborted);
}

}  // namespace
}  // namespace nvmux::nvme
