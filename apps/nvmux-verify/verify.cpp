#include "verify.hpp"

#include <cstring>
#include <random>
#include <vector>

#include "nvmux/common/cpu.hpp"
#include "nvmux/service/client.hpp"

namespace nvmux::verify {

namespace {

constexpr std::uint64_t kStuckNs = 30'000'000'000ull;  // no completion for this long: give up

void stamp(std::byte* block, std::uint32_t block_size, std::uint64_t lba, std::uint64_t generation,
           std::uint64_t seed) {
  auto* words = reinterpret_cast<std::uint64_t*>(block);
  for (std::size_t i = 0; i < block_size / 8; ++i)
    words[i] = (lba * 0x9e3779b97f4a7c15ull) ^ (generation << 20) ^ seed ^ i;
  words[0] = lba;
  words[1] = generation;
}

struct Slot {
  std::byte* buf = nullptr;
  std::uint64_t lba = 0;
  bool write = false;
  bool busy = false;
  std::uint64_t generation = 0;  // written (write) or expected (read)
  struct Run* run = nullptr;
};

struct Run {
  const VerifyParams* params = nullptr;
  std::uint32_t block_size = 0;
  std::vector<std::uint64_t> generation;  // per block of the partition: last completed write
  std::vector<bool> busy;                 // per I/O unit: a request is in flight on it
  std::vector<std::byte> expect;
  VerifyReport report;
};

void on_done(void* ctx, const nvmux_cpl* cpl) {
  auto* s = static_cast<Slot*>(ctx);
  Run& run = *s->run;
  s->busy = false;
  const std::uint64_t unit = (s->lba - run.report.first_lba) / run.params->io_blocks;
  run.busy[unit] = false;
  if (cpl->status != 0) {
    ++run.report.io_errors;
    if (run.report.first_error.empty()) {
      run.report.first_error = fmt::format("{} at LBA {}: {} (nvme status {:#x})", s->write ? "write" : "read", s->lba,
                                           nvmux_strerror(cpl->status), cpl->nvme_status);
    }
    return;
  }
  for (std::uint32_t b = 0; b < run.params->io_blocks; ++b) {
    std::uint64_t index = s->lba - run.report.first_lba + b;
    if (s->write) {
      run.generation[index] = s->generation;
      continue;
    }
    std::uint64_t gen = run.generation[index];
    std::byte* got = s->buf + std::size_t{b} * run.block_size;
    if (gen == 0) continue;  // never written by this run: anything goes
    stamp(run.expect.data(), run.block_size, s->lba + b, gen, run.params->seed);
    if (std::memcmp(got, run.expect.data(), run.block_size) != 0) {
      ++run.report.mismatches;
      if (run.report.first_error.empty()) {
        std::uint64_t found_lba, found_gen;
        std::memcpy(&found_lba, got, 8);
        std::memcpy(&found_gen, got + 8, 8);
        run.report.first_error =
            fmt::format("LBA {}: expected generation {}, found a block stamped LBA {} generation {}", s->lba + b, gen,
                        found_lba, found_gen);
      }
    }
  }
  ++(s->write ? run.report.writes : run.report.reads);
}

}  // namespace

Result<VerifyReport> run_verify(const VerifyParams& p, const std::function<void(double)>& progress) {
  if (p.depth == 0 || p.depth > service::kMaxQueueDepth) {
    return Status::error(StatusCode::kInvalidArgument, "-q {}: 1..{}", p.depth, service::kMaxQueueDepth);
  }
  if (p.io_blocks == 0 || p.io_blocks > 256) {
    return Status::error(StatusCode::kInvalidArgument, "--io-blocks {}: 1..256", p.io_blocks);
  }
  if (!(p.seconds > 0 && p.seconds <= 86400)) {
    return Status::error(StatusCode::kInvalidArgument, "-t {}: seconds in (0, 86400]", p.seconds);
  }
  if (p.write_percent < 0 || p.write_percent > 100) {
    return Status::error(StatusCode::kInvalidArgument, "--write-percent {}: 0..100", p.write_percent);
  }
  auto client = service::Client::connect(p.socket);
  if (!client.ok()) return client.status();
  auto ns = (*client)->namespace_info(p.nsid);
  if (!ns.ok()) return ns.status();
  if (ns->read_only && p.write_percent > 0) {
    return Status::error(StatusCode::kPermissionDenied, "namespace {} is read-only for this client", p.nsid);
  }
  Run run;
  run.params = &p;
  run.block_size = ns->block_size;
  const PartitionUnits range = partition_units(p.partition, ns->blocks, p.io_blocks);
  if (range.units < p.depth) {
    return Status::error(StatusCode::kInvalidArgument,
                         "partition {}/{} of {} blocks is too small for -q {} x {} blocks", p.partition.index,
                         p.partition.count, ns->blocks, p.depth, p.io_blocks);
  }
  const std::uint64_t per_partition = range.units * p.io_blocks;
  run.report.first_lba = range.first_unit * p.io_blocks;
  run.report.lbas = per_partition;
  run.report.session_id = (*client)->session_id();
  run.generation.assign(per_partition, 0);
  run.busy.assign(per_partition / p.io_blocks, false);
  run.expect.resize(ns->block_size);
  auto queue = (*client)->create_queue(p.depth);
  if (!queue.ok()) return queue.status();
  service::Queue& q = **queue;
  const std::size_t io_bytes = std::size_t{p.io_blocks} * ns->block_size;
  std::vector<Slot> slots(p.depth);
  for (Slot& s : slots) {
    s.buf = static_cast<std::byte*>((*client)->buf_alloc(io_bytes));
    if (s.buf == nullptr)
      return Status::error(StatusCode::kUnavailable, "the session arena cannot hold -q {} buffers", p.depth);
    s.run = &run;
  }
  std::mt19937_64 rng(p.seed * 7919 + p.partition.index);
  const std::uint64_t units = run.busy.size();
  const std::uint64_t start = monotonic_ns();
  const std::uint64_t end = start + static_cast<std::uint64_t>(p.seconds * 1e9);
  std::uint64_t generation = 0, last_progress = start, last_completion = start;
  Status failure;
  while (true) {
    std::uint64_t now = monotonic_ns();
    bool running = now < end;
    for (Slot& s : slots) {
      if (!running || s.busy) continue;
      std::uint64_t unit = rng() % units;
      if (run.busy[unit]) continue;  // someone else is on it; try again next round
      s.lba = run.report.first_lba + unit * p.io_blocks;
      s.write = static_cast<int>(rng() % 100) < p.write_percent;
      Status st;
      if (s.write) {
        s.generation = ++generation;
        for (std::uint32_t b = 0; b < p.io_blocks; ++b) {
          stamp(s.buf + std::size_t{b} * ns->block_size, ns->block_size, s.lba + b, s.generation, p.seed);
        }
        st = q.write(p.nsid, s.lba, p.io_blocks, s.buf, on_done, &s);
      } else {
        st = q.read(p.nsid, s.lba, p.io_blocks, s.buf, on_done, &s);
      }
      if (!st.ok()) {
        failure = st;
        break;
      }
      s.busy = true;
      run.busy[unit] = true;
    }
    if (!failure.ok()) break;
    auto polled = q.poll();
    if (!polled.ok()) {
      failure = polled.status();
      break;
    }
    if (*polled != 0) last_completion = now;
    if (q.in_flight() == 0 && !running) break;
    if (q.in_flight() != 0 && now - last_completion > kStuckNs) {
      failure = Status::error(StatusCode::kTimeout, "{} requests made no progress for {} s", q.in_flight(),
                              kStuckNs / 1'000'000'000);
      break;
    }
    if (progress && now - last_progress >= 1'000'000'000) {
      progress(static_cast<double>(now - start) / 1e9);
      last_progress = now;
    }
  }
  run.report.seconds = static_cast<double>(monotonic_ns() - start) / 1e9;
  if (!failure.ok()) return failure;
  return run.report;
}

}  // namespace nvmux::verify
