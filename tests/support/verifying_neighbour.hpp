#pragma once
// A well-behaved nvmuxd client for stress tests: on its own thread, writes stamped blocks into the
// upper half of namespace 1 and reads each back, one request at a time, until told to stop;
// counts every error and every mismatch, and keeps the first problem's description.

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "nvmux/common/cpu.hpp"
#include "nvmux/service/client.hpp"

namespace nvmux::test {

struct VerifyingNeighbour {
  static constexpr std::uint32_t kBlock = 4096;
  static constexpr std::uint64_t kDeadlineNs = 30'000'000'000ull;

  std::atomic<bool> stop{false};
  std::uint64_t verified = 0;
  std::uint64_t errors = 0;
  std::uint64_t mismatches = 0;
  std::string first_problem;

  void note(std::string what) {
    if (first_problem.empty()) first_problem = std::move(what);
  }

  bool one(service::Queue& q, bool write, std::uint64_t lba, std::byte* buf) {
    struct Done {
      bool done = false;
      int status = 0;
    } d;
    auto cb = [](void* ctx, const nvmux_cpl* c) {
      static_cast<Done*>(ctx)->done = true;
      static_cast<Done*>(ctx)->status = c->status;
    };
    Status s = write ? q.write(1, lba, 1, buf, cb, &d) : q.read(1, lba, 1, buf, cb, &d);
    if (!s.ok()) {
      ++errors;
      note("submit: " + s.to_string());
      return false;
    }
    const std::uint64_t deadline = monotonic_ns() + kDeadlineNs;
    while (!d.done && monotonic_ns() < deadline) {
      if (!q.wait(100).ok()) break;
    }
    if (!d.done || d.status != 0) {
      ++errors;
      note(fmt::format("{} of LBA {}: {}", write ? "write" : "read", lba, d.done ? d.status : -ETIMEDOUT));
      return false;
    }
    return true;
  }

  void run(const std::string& socket) {
    auto client = service::Client::connect(socket);
    if (!client.ok()) {
      ++errors;
      return note("connect: " + client.status().to_string());
    }
    auto ns = (*client)->namespace_info(1).value();
    auto q = (*client)->create_queue(4).value();
    auto* buf = static_cast<std::byte*>((*client)->buf_alloc(kBlock));
    std::vector<std::byte> expect(kBlock);
    std::mt19937_64 rng(7);
    const std::uint64_t half = ns.blocks / 2;
    for (std::uint64_t generation = 1; !stop.load(std::memory_order_relaxed); ++generation) {
      const std::uint64_t lba = half + rng() % (ns.blocks - half);
      for (std::size_t i = 0; i < kBlock / 8; ++i) {
        const std::uint64_t w = lba * 0x9e3779b97f4a7c15ull ^ generation ^ i;
        std::memcpy(buf + i * 8, &w, 8);
      }
      std::memcpy(expect.data(), buf, kBlock);
      if (!one(*q, true, lba, buf)) continue;
      std::memset(buf, 0, kBlock);
      if (!one(*q, false, lba, buf)) continue;
      if (std::memcmp(buf, expect.data(), kBlock) != 0) {
        ++mismatches;
        note(fmt::format("LBA {} generation {} read back different data", lba, generation));
      }
      ++verified;
    }
  }
};

}  // namespace nvmux::test
