#pragma once
// Helpers shared by the nvme tests: completion recorders, a manual clock, stamped patterns.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "nvmux/nvme/emu.hpp"
#include "nvmux/nvme/qpair.hpp"

namespace nvmux::nvme::test {

// Records every completion delivered to it (owner thread only, like the qpair).
struct Recorder {
  std::vector<IoCompletion> results;
  static void callback(void* ctx, const IoCompletion& c) { static_cast<Recorder*>(ctx)->results.push_back(c); }
  std::size_t ok_count() const {
    std::size_t n = 0;
    for (const auto& r : results) n += r.status.ok() ? 1 : 0;
    return n;
  }
};

// A clock tests move by hand; shared by the device and the qpair.
struct ManualClock {
  std::shared_ptr<std::atomic<std::uint64_t>> now = std::make_shared<std::atomic<std::uint64_t>>(1'000'000);
  std::function<std::uint64_t()> fn() const {
    auto n = now;
    return [n] { return n->load(std::memory_order_relaxed); };
  }
  void advance_us(std::uint64_t us) { now->fetch_add(us * 1000, std::memory_order_relaxed); }
};

inline EmuOptions manual_options(std::uint64_t blocks = 4096, std::uint32_t block_size = 512) {
  EmuOptions o;
  o.name = "emu-test";
  o.engine = EmuEngine::kManual;
  o.dma_arena_bytes = 64u << 20;
  o.namespaces.push_back(NamespaceSpec{blocks, block_size, NamespaceBacking::kRam, ""});
  return o;
}

inline std::unique_ptr<EmuController> make_emu(EmuOptions o) {
  auto c = EmuController::create(std::move(o));
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  if (!c.ok()) return nullptr;
  return std::move(c).value();
}

// Fills `bytes` with a pattern naming (stamp, lba, byte offset) so misplaced data is caught.
inline void stamp(std::byte* p, std::size_t bytes, std::uint64_t stamp_value, std::uint64_t lba, std::uint32_t bs) {
  for (std::size_t off = 0; off < bytes; off += 8) {
    std::uint64_t v = (stamp_value << 40) ^ ((lba + off / bs) << 16) ^ (off % bs);
    std::memcpy(p + off, &v, std::min<std::size_t>(8, bytes - off));
  }
}

// Runs step + poll until `rec` holds `n` results or `max_rounds` pass (manual engine).
inline void drive(EmuController& ctrl, QueuePair& qp, const Recorder& rec, std::size_t n, int max_rounds = 10000) {
  for (int i = 0; i < max_rounds && rec.results.size() < n; ++i) {
    ctrl.step();
    (void)qp.process_completions();
  }
}

}  // namespace nvmux::nvme::test
