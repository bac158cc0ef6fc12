#include "perf_engine.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include "nvmux/common/cpu.hpp"
#include "nvmux/common/partition.hpp"
#include "nvmux/nvme/controller.hpp"
#include "nvmux/nvme/emu.hpp"
#include "nvmux/nvme/uring.hpp"
#include "nvmux/service/client.hpp"
#include "nvmux/service/protocol.hpp"

namespace nvmux::perf {

namespace {

constexpr std::uint64_t kStampMagic = 0x4652455058564d4eull;  // "NVMXPERF"
constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ull;
constexpr std::uint64_t kUnknownGeneration = UINT64_MAX;  // a write failed: contents undefined
constexpr int kMaxUnitPicks = 64;                         // random tries to find a unit not in flight
constexpr std::uint64_t kPrefillGeneration = 1;

std::uint64_t stamp_word(std::uint64_t lba, std::uint64_t generation, std::size_t word) {
  return (lba * kGolden) ^ (generation * 0xff51afd7ed558ccdull) ^ (word * 0xc4ceb9fe1a85ec53ull);
}

// Block layout: [0] LBA, [1] generation, [2] magic, [3..] stamp_word(lba, generation, i).
void stamp_block(std::byte* block, std::uint32_t block_size, std::uint64_t lba, std::uint64_t generation) {
  auto* w = reinterpret_cast<std::uint64_t*>(block);
  w[0] = lba;
  w[1] = generation;
  w[2] = kStampMagic;
  for (std::size_t i = 3; i < block_size / 8; ++i) w[i] = stamp_word(lba, generation, i);
}

// Empty string when the block holds what (lba, generation) wrote; otherwise what it holds.
std::string check_block(const std::byte* block, std::uint32_t block_size, std::uint64_t lba, std::uint64_t generation) {
  const auto* w = reinterpret_cast<const std::uint64_t*>(block);
  if (w[0] != lba || w[1] != generation || w[2] != kStampMagic) {
    return fmt::format("header lba {} generation {} magic {:#x}", w[0], w[1], w[2]);
  }
  for (std::size_t i = 3; i < block_size / 8; ++i) {
    if (w[i] != stamp_word(lba, generation, i)) return fmt::format("header ok, word {} of the block differs", i);
  }
  return {};
}

bool pattern_is_random(Pattern p) {
  return p == Pattern::kRandRead || p == Pattern::kRandWrite || p == Pattern::kRandRw;
}

struct Shared {
  std::atomic<bool> start{false};
  std::atomic<bool> stop{false};
  std::atomic<std::uint32_t> ready{0};
  std::atomic<std::uint32_t> prefilling{0};
};

// What a run drives: a controller (emu, uring) or a session with nvmuxd (service). Opened once by
// run_perf; each worker then opens its own queue on it.
struct Target {
  std::unique_ptr<nvme::Controller> controller;
  std::unique_ptr<service::Client> client;
  std::vector<nvme::NamespaceInfo> namespaces;  // queue pair i works on namespaces[i % size]
  std::uint32_t max_transfer_bytes = 0;         // 0: no limit
  std::string name;
};

// The queue a Worker drives. Two implementations with the same members, chosen at compile time
// (Worker is a template over them), so the per-I/O path has no virtual call:
//   QpairIo    an nvme::QueuePair that the worker's thread creates and owns (emu, uring)
//   ServiceIo  one queue of the run's nvmuxd session (--backend service)
// open() runs on the worker's thread; submit() returns kQueueFull when the queue has no room;
// every completion calls sink->on_complete(status) on the worker's thread, inside poll().
class QpairIo {
 public:
  static Result<QpairIo> open(Target& target, const PerfParams& params) {
    QpairIo io;
    nvme::QueuePairOptions qo;
    qo.sq_entries = std::max<std::uint32_t>(params.queue_depth + 1, 2);
    auto qp = target.controller->create_io_qpair(qo);  // this thread owns it
    if (!qp.ok()) return qp.status();
    io.qp_ = std::move(*qp);
    auto mem = target.controller->dma_alloc(std::size_t{params.queue_depth} * params.io_bytes);
    if (!mem.ok()) return mem.status();
    io.buffers_ = std::move(*mem);
    io.io_bytes_ = params.io_bytes;
    return io;
  }

  std::string name() const { return qp_->name(); }
  std::byte* buffer(std::uint32_t slot) const { return buffers_.data() + std::size_t{slot} * io_bytes_; }

  template <class Sink>
  Status submit(bool read, std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, std::uint32_t slot,
                Sink* sink) {
    auto done = [](void* ctx, const nvme::IoCompletion& c) {
      static_cast<Sink*>(ctx)->on_complete(c.status, c.status.ok() ? std::string() : error_kind(c));
    };
    nvme::IoVec io{buffers_.iova() + std::size_t{slot} * io_bytes_, io_bytes_};
    return read ? qp_->read(nsid, lba, blocks, io, done, sink) : qp_->write(nsid, lba, blocks, io, done, sink);
  }

  Result<std::uint32_t> poll(std::uint32_t max) { return qp_->process_completions(max); }

 private:
  // What went wrong, without the parts that differ per command: the NVMe status and, when the
  // backend put one in CDW0 (emu files, uring), the errno behind it.
  static std::string error_kind(const nvme::IoCompletion& c) {
    if (c.cqe.status == 0) return std::string(to_string(c.status.code()));  // timed out, aborted: no entry
    std::string kind = nvme::describe_status(c.cqe.sct(), c.cqe.sc());
    if (c.cqe.cdw0 != 0 && c.cqe.cdw0 < 4096) kind += fmt::format(": {}", std::strerror(static_cast<int>(c.cqe.cdw0)));
    return kind;
  }

  std::unique_ptr<nvme::QueuePair> qp_;
  nvme::DmaBuffer buffers_;
  std::uint32_t io_bytes_ = 0;
};

class ServiceIo {
 public:
  ServiceIo() = default;
  ServiceIo(ServiceIo&& other) noexcept { *this = std::move(other); }
  ServiceIo& operator=(ServiceIo&& other) noexcept {
    std::swap(client_, other.client_);
    std::swap(queue_, other.queue_);
    std::swap(buffers_, other.buffers_);
    std::swap(io_bytes_, other.io_bytes_);
    std::swap(wait_, other.wait_);
    return *this;
  }
  ~ServiceIo() {
    queue_.reset();  // the daemon drains the queue first: only then may the buffers be reused
    if (buffers_ != nullptr) client_->buf_free(buffers_);
  }

  static Result<ServiceIo> open(Target& target, const PerfParams& params) {
    ServiceIo io;
    io.client_ = target.client.get();
    io.io_bytes_ = params.io_bytes;
    io.wait_ = params.wait_for_completions;
    auto queue = io.client_->create_queue(params.queue_depth);
    if (!queue.ok()) return queue.status();
    io.queue_ = std::move(*queue);
    io.buffers_ = static_cast<std::byte*>(io.client_->buf_alloc(std::size_t{params.queue_depth} * params.io_bytes));
    if (io.buffers_ == nullptr) {
      return Status::error(StatusCode::kResourceExhausted, "the session's {}-byte arena cannot hold -q {} x -o {}",
                           io.client_->arena_bytes(), params.queue_depth, params.io_bytes);
    }
    return io;
  }

  std::string name() const { return fmt::format("nvmuxd-s{}-q{}", client_->session_id(), queue_->index()); }
  std::byte* buffer(std::uint32_t slot) const { return buffers_ + std::size_t{slot} * io_bytes_; }

  template <class Sink>
  Status submit(bool read, std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, std::uint32_t slot,
                Sink* sink) {
    auto done = [](void* ctx, const service::Completion* c) {
      static_cast<Sink*>(ctx)->on_complete(completion_status(*c),
                                           c->status == 0 ? std::string() : std::strerror(-c->status));
    };
    Status s = read ? queue_->read(nsid, lba, blocks, buffer(slot), done, sink)
                    : queue_->write(nsid, lba, blocks, buffer(slot), done, sink);
    if (s.code() == StatusCode::kWouldBlock) return Status(StatusCode::kQueueFull, s.message());
    return s;
  }

  // --wait: with requests in flight and none ready, sleep until one is (a bounded sleep, so the
  // worker still sees the end of the run).
  Result<std::uint32_t> poll(std::uint32_t max) {
    auto ran = queue_->poll(max);
    if (wait_ && ran.ok() && *ran == 0 && queue_->in_flight() != 0) return queue_->wait(kWaitSliceMs);
    return ran;
  }

 private:
  static constexpr int kWaitSliceMs = 100;

  static Status completion_status(const service::Completion& c) {
    if (c.status == 0) return {};
    return Status::from_errno(-c.status, fmt::format("nvmuxd completion (NVMe status {:#x})", c.nvme_status));
  }

  service::Client* client_ = nullptr;
  std::unique_ptr<service::Queue> queue_;
  std::byte* buffers_ = nullptr;
  std::uint32_t io_bytes_ = 0;
  bool wait_ = false;
};

// What run_perf sees of a worker, whatever queue it drives.
class WorkerBase {
 public:
  virtual ~WorkerBase() = default;
  virtual void run() = 0;  // the whole life of the queue, on the worker's (its owner) thread
  virtual const Status& status() const = 0;
  virtual QpairResult& result() = 0;
  virtual std::vector<Mismatch>& mismatches() = 0;
  virtual std::uint64_t progress_ios() const = 0;
};

template <class Io>
class Worker final : public WorkerBase {
 public:
  Worker(std::uint32_t index, const PerfParams& params, int read_percent, Target& target, const nvme::NamespaceInfo& ns,
         std::uint64_t first_unit, std::uint64_t units, int core, Shared& shared)
      : index_(index), params_(params), read_percent_(read_percent), target_(target), ns_(ns), first_unit_(first_unit),
        units_(units), core_(core), shared_(shared), rng_(params.seed * 1000003u + index),
        blocks_per_io_(params.io_bytes / ns.block_size) {}

  void run() override {
    run_on_owner();
    io_.reset();  // destroyed on its owner thread, whatever path run_on_owner took
  }

  const Status& status() const override { return status_; }
  QpairResult& result() override { return result_; }
  std::vector<Mismatch>& mismatches() override { return mismatches_; }
  std::uint64_t progress_ios() const override { return progress_ios_.load(std::memory_order_relaxed); }

 private:
  struct Task {
    Worker* worker = nullptr;
    std::uint32_t slot = 0;
    std::uint64_t unit = 0;
    std::uint64_t generation = 0;
    std::uint64_t submit_tsc = 0;
    bool read = false;
    void on_complete(const Status& status, const std::string& kind) { worker->complete(*this, status, kind); }
  };

  void run_on_owner() {
    if (core_ >= 0) {
      Status pinned = pin_current_thread(core_);
      if (!pinned.ok()) return fail(pinned);
    }
    set_current_thread_name(fmt::format("perf-q{}", index_));
    auto io = Io::open(target_, params_);
    if (!io.ok()) return fail(io.status());
    io_.emplace(std::move(*io));
    result_.name = io_->name();
    result_.core = core_;
    result_.nsid = ns_.nsid;
    tasks_.resize(params_.queue_depth);
    for (std::uint32_t i = 0; i < params_.queue_depth; ++i) {
      tasks_[i].worker = this;
      tasks_[i].slot = i;
      free_slots_.push_back(i);
    }
    if (params_.verify) {
      committed_.assign(units_, 0);
      busy_.assign(units_, false);
      if (read_percent_ > 0) {
        shared_.prefilling.fetch_add(1, std::memory_order_relaxed);  // progress only
        prefill();
        shared_.prefilling.fetch_sub(1, std::memory_order_relaxed);
        if (!status_.ok()) return signal_ready();
      }
    }
    signal_ready();
    while (!shared_.start.load(std::memory_order_acquire)) {  // the main thread's go, after every prefill
      if (shared_.stop.load(std::memory_order_relaxed)) return;
      std::this_thread::yield();
    }
    measuring_ = true;
    std::uint64_t t0 = read_tsc();
    loop();
    result_.seconds = static_cast<double>(tsc_to_ns(stop_tsc_ - t0)) / 1e9;
  }

  void fail(Status s) {
    if (status_.ok()) status_ = std::move(s);
    signal_ready();
  }
  void signal_ready() {
    if (!signalled_) shared_.ready.fetch_add(1, std::memory_order_release);  // publishes status_ to the joiner
    signalled_ = true;
  }

  // Writes every unit once. An interrupted run stops submitting and drains what is in flight.
  void prefill() {
    std::uint64_t next = 0, done = 0;
    while (done < units_ && status_.ok()) {
      const bool stopping = shared_.stop.load(std::memory_order_relaxed);  // a flag; the join orders the rest
      if (stopping && in_flight() == 0) return;
      while (!stopping && next < units_ && !free_slots_.empty()) {
        if (!submit(next, /*read=*/false)) break;
        ++next;
      }
      auto r = io_->poll(0);
      if (!r.ok()) return fail(r.status());
      done = prefill_done_;
    }
    if (result_.io_errors != 0 && status_.ok()) {
      fail(Status::error(StatusCode::kIoError, "{}: {} writes failed while prefilling for --verify ({})", result_.name,
                         result_.io_errors, first_error_.to_string()));
    }
  }

  void loop() {
    while (true) {
      bool stopping = shared_.stop.load(std::memory_order_relaxed);
      if (stopping && measuring_) {
        measuring_ = false;
        stop_tsc_ = read_tsc();
      }
      if (!stopping) {
        // --iodepth-low: refill only once the queue has drained that far, then fill it up.
        if (in_flight() <= refill_at_) refill();
      } else if (free_slots_.size() == params_.queue_depth) {
        return;
      }
      auto r = io_->poll(params_.max_completions_per_poll);
      if (!r.ok()) {
        fail(r.status());
        if (measuring_) stop_tsc_ = read_tsc();
        return;
      }
    }
  }

  // Submits on every free slot (or until the queue is full).
  void refill() {
    const std::size_t before = free_slots_.size();
    while (!free_slots_.empty() && status_.ok()) {
      bool read = read_percent_ == 100 || (read_percent_ > 0 && static_cast<int>(rng_() % 100) < read_percent_);
      auto unit = pick_unit();
      if (!unit || !submit(*unit, read)) break;
    }
    if (measuring_ && free_slots_.size() != before) {
      result_.submitted += before - free_slots_.size();
      ++result_.refills;
    }
  }

  std::uint32_t in_flight() const { return params_.queue_depth - static_cast<std::uint32_t>(free_slots_.size()); }

  std::optional<std::uint64_t> pick_unit() {
    for (int tries = 0; tries < kMaxUnitPicks; ++tries) {
      std::uint64_t unit = pattern_is_random(params_.pattern) ? rng_() % units_ : next_unit_++ % units_;
      if (!params_.verify || !busy_[unit]) return unit;
    }
    return std::nullopt;  // every pick was in flight: poll first
  }

  // Submits one I/O on a free slot; false when the queue is full (nothing submitted).
  bool submit(std::uint64_t unit, bool read) {
    std::uint32_t slot = free_slots_.back();
    Task& t = tasks_[slot];
    t.unit = unit;
    t.read = read;
    const std::uint64_t lba = (first_unit_ + unit) * blocks_per_io_;
    if (!read && params_.verify) {
      std::uint64_t current = committed_[unit];
      t.generation = current == kUnknownGeneration ? kPrefillGeneration + 1 : current + 1;
      for (std::uint32_t b = 0; b < blocks_per_io_; ++b) {
        stamp_block(io_->buffer(slot) + std::size_t{b} * ns_.block_size, ns_.block_size, lba + b, t.generation);
      }
    }
    t.submit_tsc = read_tsc();
    Status s = io_->submit(read, ns_.nsid, lba, blocks_per_io_, slot, &t);
    if (s.code() == StatusCode::kQueueFull) return false;
    if (!s.ok()) {
      fail(s);
      return false;
    }
    free_slots_.pop_back();
    if (params_.verify) busy_[unit] = true;
    return true;
  }

  void complete(Task& t, const Status& status, const std::string& kind) {
    const std::uint64_t latency = read_tsc() - t.submit_tsc;
    const bool ok = status.ok();
    if (!ok) {
      ++result_.io_errors;
      ++result_.errors_by_kind[kind];
      if (first_error_.ok()) {
        first_error_ = status;
        result_.first_error =
            fmt::format("{} of {} block(s) at LBA {} on namespace {}: {} ({})", t.read ? "read" : "write",
                        blocks_per_io_, (first_unit_ + t.unit) * blocks_per_io_, ns_.nsid, kind, status.message());
      }
    }
    if (params_.verify) {
      if (!t.read) {
        committed_[t.unit] = ok ? t.generation : kUnknownGeneration;
      } else if (ok && committed_[t.unit] != 0 && committed_[t.unit] != kUnknownGeneration) {
        verify_read(t);
      }
      busy_[t.unit] = false;
    }
    if (measuring_) {
      ++result_.ios;
      result_.bytes += params_.io_bytes;
      ++(t.read ? result_.reads : result_.writes);
      result_.latency_ticks.record(latency);  // TSC ticks here; converted when reported
      progress_ios_.store(result_.ios, std::memory_order_relaxed);
    } else if (!shared_.start.load(std::memory_order_relaxed)) {
      ++prefill_done_;
    }
    free_slots_.push_back(t.slot);
  }

  void verify_read(const Task& t) {
    const std::uint64_t lba = (first_unit_ + t.unit) * blocks_per_io_;
    for (std::uint32_t b = 0; b < blocks_per_io_; ++b) {
      std::string found = check_block(io_->buffer(t.slot) + std::size_t{b} * ns_.block_size, ns_.block_size, lba + b,
                                      committed_[t.unit]);
      ++result_.checked_blocks;
      if (found.empty()) continue;
      ++result_.verify_errors;
      if (mismatches_.size() < params_.max_reported_mismatches) {
        mismatches_.push_back(Mismatch{index_, ns_.nsid, lba + b, committed_[t.unit], std::move(found)});
      }
    }
  }

  const std::uint32_t index_;
  const PerfParams& params_;
  const int read_percent_;
  const std::uint32_t refill_at_ = params_.iodepth_low.value_or(params_.queue_depth);  // in flight
  Target& target_;
  const nvme::NamespaceInfo ns_;
  const std::uint64_t first_unit_;
  const std::uint64_t units_;
  const int core_;
  Shared& shared_;
  std::mt19937_64 rng_;
  const std::uint32_t blocks_per_io_;

  std::optional<Io> io_;
  std::vector<Task> tasks_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::uint64_t> committed_;  // generation last written per unit (0 = never)
  std::vector<bool> busy_;                // unit has an I/O in flight
  std::uint64_t next_unit_ = 0;
  std::uint64_t prefill_done_ = 0;
  bool measuring_ = false;
  bool signalled_ = false;
  std::uint64_t stop_tsc_ = 0;
  Status status_;
  Status first_error_;
  QpairResult result_;
  std::vector<Mismatch> mismatches_;
  std::atomic<std::uint64_t> progress_ios_{0};
};

double ticks_to_us(std::uint64_t ticks) { return static_cast<double>(tsc_to_ns(ticks)) / 1000.0; }

nlohmann::json latency_json(const Histogram& h) {
  return {{"avg", h.count() ? ticks_to_us(static_cast<std::uint64_t>(h.mean())) : 0.0},
          {"min", ticks_to_us(h.min())},
          {"max", ticks_to_us(h.max())},
          {"p50", ticks_to_us(h.percentile(50))},
          {"p90", ticks_to_us(h.percentile(90))},
          {"p99", ticks_to_us(h.percentile(99))},
          {"p999", ticks_to_us(h.percentile(99.9))},
          {"p9999", ticks_to_us(h.percentile(99.99))}};
}

// The whole distribution, to merge runs or plot it: [from_us, to_us, count] per non-empty bucket,
// each bucket holding latencies in [from_us, to_us).
nlohmann::json histogram_json(const Histogram& h) {
  nlohmann::json buckets = nlohmann::json::array();
  h.for_each_bucket([&](std::uint64_t lo, std::uint64_t hi, std::uint64_t n) {
    buckets.push_back({ticks_to_us(lo), ticks_to_us(hi + 1), n});
  });
  return buckets;
}

double avg_submit_batch(const QpairResult& r) {
  return r.refills > 0 ? static_cast<double>(r.submitted) / static_cast<double>(r.refills) : 0;
}

double iops_of(const QpairResult& r) { return r.seconds > 0 ? static_cast<double>(r.ios) / r.seconds : 0; }
double mib_of(const QpairResult& r) { return r.seconds > 0 ? static_cast<double>(r.bytes) / r.seconds / 1048576.0 : 0; }

}  // namespace

Result<Pattern> parse_pattern(std::string_view name) {
  if (name == "read") return Pattern::kRead;
  if (name == "write") return Pattern::kWrite;
  if (name == "randread") return Pattern::kRandRead;
  if (name == "randwrite") return Pattern::kRandWrite;
  if (name == "rw") return Pattern::kRw;
  if (name == "randrw") return Pattern::kRandRw;
  return Status::error(StatusCode::kInvalidArgument,
                       "-w {}: unknown pattern (read, write, randread, randwrite, rw, randrw)", name);
}

std::string_view to_string(Pattern pattern) {
  switch (pattern) {
    case Pattern::kRead: return "read";
    case Pattern::kWrite: return "write";
    case Pattern::kRandRead: return "randread";
    case Pattern::kRandWrite: return "randwrite";
    case Pattern::kRw: return "rw";
    case Pattern::kRandRw: return "randrw";
  }
  return "?";
}

namespace {

// The checks that need no device. Returns the read percentage the pattern and -M give.
Result<int> check_params(const PerfParams& params) {
  if (params.queue_depth == 0 || params.queue_depth > max_queue_depth(params)) {
    return Status::error(StatusCode::kInvalidArgument, "-q {}: queue depth must be 1..{} with --backend {}",
                         params.queue_depth, max_queue_depth(params), backend_name(params));
  }
  if (params.iodepth_low && *params.iodepth_low > params.queue_depth) {
    return Status::error(StatusCode::kInvalidArgument, "--iodepth-low {}: must be at most -q {}", *params.iodepth_low,
                         params.queue_depth);
  }
  if (params.io_bytes == 0 || params.io_bytes % 512 != 0) {
    return Status::error(StatusCode::kInvalidArgument, "-o {}: I/O size must be a positive multiple of 512",
                         params.io_bytes);
  }
  if (params.io_bytes > nvme::QueuePair::kMaxTransferBytesLimit) {
    return Status::error(StatusCode::kInvalidArgument, "-o {}: I/O size must be at most {}", params.io_bytes,
                         nvme::QueuePair::kMaxTransferBytesLimit);
  }
  if (!(params.seconds > 0) || !(params.seconds <= kMaxSeconds)) {
    return Status::error(StatusCode::kInvalidArgument, "-t {}: time must be in (0, {}] seconds", params.seconds,
                         kMaxSeconds);
  }
  if (params.qpairs == 0 || params.qpairs > kMaxQpairs) {
    return Status::error(StatusCode::kInvalidArgument, "--qpairs {}: must be 1..{}", params.qpairs, kMaxQpairs);
  }
  if (params.backend.emu_latency_us > kMaxEmuLatencyUs) {
    return Status::error(StatusCode::kInvalidArgument, "--emu-latency-us {}: must be 0..{}",
                         params.backend.emu_latency_us, kMaxEmuLatencyUs);
  }
  if (params.backend.namespaces.size() > nvme::kMaxNamespaces) {
    return Status::error(StatusCode::kInvalidArgument, "--ns given {} times: a controller holds at most {} namespaces",
                         params.backend.namespaces.size(), nvme::kMaxNamespaces);
  }
  for (const auto& ns : params.backend.namespaces) {
    if (params.verify && ns.kind == nvme::NamespaceArg::Kind::kNull) {
      return Status::error(StatusCode::kInvalidArgument,
                           "--verify: namespace '{}' stores nothing (null), so its reads cannot be checked; use ram: "
                           "or file:",
                           ns.text);
    }
  }
  if (params.partition.count == 0 || params.partition.index >= params.partition.count) {
    return Status::error(StatusCode::kInvalidArgument, "--partition {}/{}: expected K/N with 0 <= K < N",
                         params.partition.index, params.partition.count);
  }
  if (params.service && !params.backend.namespaces.empty()) {
    return Status::error(StatusCode::kInvalidArgument,
                         "--ns: with --backend service the daemon's namespaces are used; pick one with --nsid");
  }
  if (!params.service && params.wait_for_completions) {
    return Status::error(StatusCode::kInvalidArgument, "--wait applies to --backend service only");
  }
  const bool mixed = params.pattern == Pattern::kRw || params.pattern == Pattern::kRandRw;
  int read_percent = params.read_percent;
  if (read_percent >= 0 && !mixed) {
    return Status::error(StatusCode::kInvalidArgument, "-M applies to -w rw and randrw only (got -w {})",
                         to_string(params.pattern));
  }
  if (params.read_percent < -1 || read_percent > 100)
    return Status::error(StatusCode::kInvalidArgument, "-M {}: a percentage 0..100", read_percent);
  for (int core : params.cores) {
    if (core < 0 || core >= online_cores()) {
      return Status::error(StatusCode::kInvalidArgument, "--cores: core {} does not exist (this machine has 0..{})",
                           core, online_cores() - 1);
    }
  }
  if (read_percent >= 0) return read_percent;
  return mixed ? 50 : (params.pattern == Pattern::kRead || params.pattern == Pattern::kRandRead) ? 100 : 0;
}

Result<Target> open_controller_target(const PerfParams& params) {
  // DMA memory: the I/O buffers plus each queue's SQ, CQ and PRP pages, with room to spare.
  nvme::BackendOptions backend = params.backend;
  const std::size_t per_qpair = std::size_t{params.queue_depth} * params.io_bytes +
                                std::size_t{params.queue_depth + 1} * (nvme::kPageBytes + 64 + 16) + (1u << 20);
  backend.dma_arena_bytes = std::max<std::size_t>(backend.dma_arena_bytes, per_qpair * params.qpairs + (8u << 20));
  backend.max_io_queues = static_cast<std::uint16_t>(std::max<std::uint32_t>(backend.max_io_queues, params.qpairs));
  auto ctrl = nvme::open_controller(backend);
  if (!ctrl.ok()) return ctrl.status();
  Target target;
  target.controller = std::move(*ctrl);
  target.name = target.controller->name();
  target.namespaces = target.controller->namespaces();
  target.max_transfer_bytes = target.controller->info().max_transfer_bytes;
  return target;
}

Result<Target> open_service_target(const PerfParams& params) {
  // The arena holds every queue's buffers, with room to spare; the daemon's policy may cap it.
  const std::size_t buffers = std::size_t{params.queue_depth} * params.io_bytes * params.qpairs;
  const std::size_t arena = std::max(service::kDefaultArenaBytes, buffers + (1u << 20));
  if (arena > service::kMaxArenaBytes) {
    return Status::error(StatusCode::kInvalidArgument, "-q {} x -o {} x --qpairs {}: above the {}-byte session arena",
                         params.queue_depth, params.io_bytes, params.qpairs, service::kMaxArenaBytes);
  }
  auto client = service::Client::connect(params.socket, arena);
  if (!client.ok()) return client.status();
  auto ns = (*client)->namespace_info(params.nsid);
  if (!ns.ok()) return ns.status();
  if (ns->read_only && params.pattern != Pattern::kRead && params.pattern != Pattern::kRandRead) {
    return Status::error(StatusCode::kPermissionDenied, "--nsid {}: read-only for this client; use -w read or randread",
                         params.nsid);
  }
  Target target;
  target.name =
      fmt::format("nvmuxd {} session {}", params.socket.empty() ? service::default_socket_path() : params.socket,
                  (*client)->session_id());
  target.namespaces.push_back(nvme::NamespaceInfo{ns->nsid, ns->blocks, ns->block_size});
  target.max_transfer_bytes = ns->max_transfer_bytes;
  target.client = std::move(*client);
  return target;
}

// One worker per queue pair, each with its range of I/O units: the run's --partition of its
// namespace, split further between the queue pairs sharing that namespace when verifying.
Result<std::vector<std::unique_ptr<WorkerBase>>> plan_workers(const PerfParams& params, int read_percent,
                                                              Target& target, Shared& shared) {
  const auto& namespaces = target.namespaces;
  if (params.io_bytes > target.max_transfer_bytes && target.max_transfer_bytes != 0) {
    return Status::error(StatusCode::kInvalidArgument, "-o {}: above the device's {}-byte transfer limit",
                         params.io_bytes, target.max_transfer_bytes);
  }
  std::vector<std::uint32_t> sharing(namespaces.size(), 0);
  for (std::uint32_t i = 0; i < params.qpairs; ++i) ++sharing[i % namespaces.size()];
  std::vector<std::uint32_t> seen(namespaces.size(), 0);
  std::vector<std::unique_ptr<WorkerBase>> workers;
  for (std::uint32_t i = 0; i < params.qpairs; ++i) {
    const nvme::NamespaceInfo& ns = namespaces[i % namespaces.size()];
    if (params.io_bytes % ns.block_size != 0) {
      return Status::error(StatusCode::kInvalidArgument, "-o {}: not a multiple of namespace {}'s {}-byte blocks",
                           params.io_bytes, ns.nsid, ns.block_size);
    }
    const PartitionUnits part = partition_units(params.partition, ns.blocks, params.io_bytes / ns.block_size);
    std::uint64_t first = part.first_unit, units = part.units;
    if (params.verify) {
      const std::uint32_t k = seen[i % namespaces.size()]++;
      const std::uint32_t m = sharing[i % namespaces.size()];
      first = part.first_unit + part.units * k / m;
      units = part.first_unit + part.units * (k + 1) / m - first;
      if (units < 2ull * params.queue_depth) {
        return Status::error(StatusCode::kInvalidArgument,
                             "--verify: namespace {} gives each queue pair {} I/O units, fewer than twice -q {}; use a "
                             "larger namespace, a smaller -q, fewer --qpairs or fewer --partition ranges",
                             ns.nsid, units, params.queue_depth);
      }
    } else if (units == 0) {
      return Status::error(StatusCode::kInvalidArgument, "-o {}: larger than namespace {}{}", params.io_bytes, ns.nsid,
                           params.partition.count > 1 ? " / --partition's range" : "");
    }
    const int core = params.cores.empty() ? -1 : params.cores[i % params.cores.size()];
    if (params.service) {
      workers.push_back(
          std::make_unique<Worker<ServiceIo>>(i, params, read_percent, target, ns, first, units, core, shared));
    } else {
      workers.push_back(
          std::make_unique<Worker<QpairIo>>(i, params, read_percent, target, ns, first, units, core, shared));
    }
  }
  return workers;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Starts the workers, waits for every one to be ready (prefilled), runs the timed window with a
// progress report about once a second, stops and joins them.
void run_workers(const std::vector<std::unique_ptr<WorkerBase>>& workers, Shared& shared, const PerfParams& params,
                 const ProgressFn& progress, PerfReport& report) {
  std::vector<std::thread> threads;
  threads.reserve(workers.size());
  for (const auto& w : workers) threads.emplace_back([&w] { w->run(); });
  auto interrupted = [&] {
    if (params.interrupt == nullptr || report.interrupted_by != 0) return report.interrupted_by != 0;
    report.interrupted_by = params.interrupt->load(std::memory_order_relaxed);  // a flag from a signal handler
    if (report.interrupted_by != 0) shared.stop.store(true, std::memory_order_relaxed);
    return report.interrupted_by != 0;
  };
  const auto wait_start = std::chrono::steady_clock::now();
  double last_prefill_report = -1;
  while (shared.ready.load(std::memory_order_acquire) < workers.size()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    interrupted();
    const double waited = seconds_since(wait_start);
    if (progress && shared.prefilling.load(std::memory_order_relaxed) != 0 && waited - last_prefill_report >= 1.0) {
      Progress p;  // once a second, like the timed window's line
      p.prefill = true;
      p.elapsed_s = waited;
      progress(p);
      last_prefill_report = waited;
    }
  }
  report.prefill_seconds = seconds_since(wait_start);
  const bool setup_failed =
      std::any_of(workers.begin(), workers.end(), [](const auto& w) { return !w->status().ok(); });
  if (!setup_failed && !interrupted()) {
    shared.start.store(true, std::memory_order_release);  // every worker is ready: go
    const auto t0 = std::chrono::steady_clock::now();
    std::uint64_t last_ios = 0;
    double last_report = 0;
    for (double elapsed = 0; elapsed < params.seconds && !interrupted(); elapsed = seconds_since(t0)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (!progress || elapsed - last_report < 1.0) continue;
      std::uint64_t ios = 0;
      for (const auto& w : workers) ios += w->progress_ios();
      progress(
          Progress{elapsed, params.seconds, ios, static_cast<double>(ios - last_ios) / (elapsed - last_report), false});
      last_ios = ios;
      last_report = elapsed;
    }
  }
  shared.stop.store(true, std::memory_order_relaxed);
  for (auto& t : threads) t.join();
}

void add_results(const std::vector<std::unique_ptr<WorkerBase>>& workers, PerfReport& report) {
  report.total.name = "Total";
  for (const auto& w : workers) {
    QpairResult& r = w->result();
    report.total.ios += r.ios;
    report.total.bytes += r.bytes;
    report.total.reads += r.reads;
    report.total.writes += r.writes;
    report.total.io_errors += r.io_errors;
    report.total.verify_errors += r.verify_errors;
    report.total.submitted += r.submitted;
    report.total.refills += r.refills;
    report.total.checked_blocks += r.checked_blocks;
    for (const auto& [kind, n] : r.errors_by_kind) report.total.errors_by_kind[kind] += n;
    if (report.total.first_error.empty() && !r.first_error.empty()) {
      report.total.first_error = fmt::format("{}: {}", r.name, r.first_error);
    }
    report.total.latency_ticks.merge(r.latency_ticks);
    report.total.seconds = std::max(report.total.seconds, r.seconds);
    for (auto& m : w->mismatches()) {
      if (report.mismatches.size() < report.params.max_reported_mismatches) report.mismatches.push_back(m);
    }
    report.qpairs.push_back(r);
  }
  // Total IOPS is the sum of the queue pairs' rates (each measured over its own window).
}

// --verify on files and block devices: an exclusive advisory lock (flock) on each for the whole
// run, so two verifying runs on one file refuse each other instead of reporting each other's
// writes as corruption. The locks go with the descriptors when the run ends.
class VerifyLocks {
 public:
  VerifyLocks() = default;
  VerifyLocks(const VerifyLocks&) = delete;
  VerifyLocks& operator=(const VerifyLocks&) = delete;
  ~VerifyLocks() {
    for (int fd : fds_) ::close(fd);
  }

  // Errors: kUnavailable naming the path and, from /proc/locks, the
  // process holding the lock; the errno of a failed open.
  Status take(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::from_errno(errno, fmt::format("--verify: open {} to lock it", path));
    fds_.push_back(fd);
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return {};
    if (errno != EWOULDBLOCK) return Status::from_errno(errno, fmt::format("--verify: flock {}", path));
    const std::string holder = lock_holder(fd);
    return Status::error(StatusCode::kUnavailable,
                         "--verify: {} is locked by another verifying run{}; two runs writing one file would "
                         "report each other's writes as mismatches",
                         path, holder.empty() ? std::string() : " (" + holder + ")");
  }

 private:
  // "pid N (name)" of the process /proc/locks says holds a FLOCK on fd's file, or "".
  static std::string lock_holder(int fd) {
    struct stat sb {};
    if (::fstat(fd, &sb) != 0) return {};
    const std::string id = fmt::format("{:02x}:{:02x}:{}", major(sb.st_dev), minor(sb.st_dev), sb.st_ino);
    std::ifstream locks("/proc/locks");
    for (std::string line; std::getline(locks, line);) {
      if (line.find("FLOCK") == std::string::npos || line.find(" " + id + " ") == std::string::npos) continue;
      std::istringstream fields(line);
      std::string field;
      for (int i = 0; i < 5 && fields >> field; ++i) {
      }
      std::ifstream comm("/proc/" + field + "/comm");
      std::string name;
      std::getline(comm, name);
      return fmt::format("pid {}{}", field, name.empty() ? "" : " (" + name + ")");
    }
    return {};
  }

  std::vector<int> fds_;
};

Status lock_for_verify(const PerfParams& params, VerifyLocks& locks) {
  if (!params.verify || params.service) return {};
  for (const auto& ns : params.backend.namespaces) {
    if (ns.kind == nvme::NamespaceArg::Kind::kFile || ns.kind == nvme::NamespaceArg::Kind::kBdev) {
      NVMUX_RETURN_IF_ERROR(locks.take(ns.path));
    }
  }
  return {};
}

}  // namespace

std::uint32_t max_queue_depth(const PerfParams& params) {
  if (params.service) return service::kMaxQueueDepth;
  switch (params.backend.backend) {
    case nvme::Backend::kEmu: return nvme::EmuOptions{}.max_queue_entries - 1;
    case nvme::Backend::kUring: return nvme::UringOptions{}.max_queue_entries - 1;
    case nvme::Backend::kVfio: break;  // the controller's CAP.MQES decides; create_io_qpair says so
  }
  return nvme::kMaxQueueEntriesSpec - 1;
}

Result<PerfReport> run_perf(const PerfParams& params, const ProgressFn& progress) {
  PerfReport report;
  report.params = params;
  auto read_percent = check_params(params);
  if (!read_percent.ok()) return read_percent.status();
  report.read_percent = *read_percent;
  auto target = params.service ? open_service_target(params) : open_controller_target(params);
  if (!target.ok()) return target.status();
  report.controller = target->name;
  VerifyLocks locks;  // after the controller opened: the files exist now
  NVMUX_RETURN_IF_ERROR(lock_for_verify(params, locks));
  Shared shared;
  auto workers = plan_workers(report.params, *read_percent, *target, shared);
  if (!workers.ok()) return workers.status();
  run_workers(*workers, shared, params, progress, report);
  for (const auto& w : *workers) {
    if (!w->status().ok()) return Status(w->status().code(), w->status().message());
  }
  add_results(*workers, report);
  return report;
}

std::string_view backend_name(const PerfParams& params) {
  return params.service ? "service" : nvme::to_string(params.backend.backend);
}

std::string format_report(const PerfReport& report) {
  const PerfParams& p = report.params;
  std::string out;
  if (report.interrupted_by != 0) {
    out += fmt::format("nvmux-perf: INTERRUPTED by signal {} after {:.1f} s: the results cover the time that ran\n",
                       report.interrupted_by, report.total.seconds);
  }
  out +=
      fmt::format("nvmux-perf: backend {}, {} ({}% reads), {} B I/Os, queue depth {}, {} queue pair(s), {:.1f} s{}\n",
                  backend_name(p), to_string(p.pattern), report.read_percent, p.io_bytes, p.queue_depth, p.qpairs,
                  p.seconds, p.verify ? ", verify" : "");
  if (p.service || p.partition.count > 1) {
    out += fmt::format(
        "{}{}\n", report.controller,
        p.partition.count > 1 ? fmt::format(", partition {}/{}", p.partition.index, p.partition.count) : std::string());
  }
  if (p.iodepth_low) {
    out += fmt::format("refill at <= {} in flight (--iodepth-low): {:.1f} I/Os per refill on average\n", *p.iodepth_low,
                       avg_submit_batch(report.total));
  }
  out += "========================================================\n";
  out += fmt::format("{:<44}{:>58}\n", "", "Latency(us)");
  out += fmt::format("{:<44}: {:>12} {:>10} {:>10} {:>10} {:>10}\n", "Device Information", "IOPS", "MiB/s", "Average",
                     "min", "max");
  double total_iops = 0, total_mib = 0;
  auto row = [&out](const std::string& label, double iops, double mib, const Histogram& h) {
    out += fmt::format("{:<44}: {:>12.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f}\n", label, iops, mib,
                       h.count() ? ticks_to_us(static_cast<std::uint64_t>(h.mean())) : 0.0, ticks_to_us(h.min()),
                       ticks_to_us(h.max()));
  };
  for (const QpairResult& r : report.qpairs) {
    std::string label =
        fmt::format("{} ns {}{}", r.name, r.nsid, r.core >= 0 ? fmt::format(" from core {}", r.core) : "");
    row(label, iops_of(r), mib_of(r), r.latency_ticks);
    total_iops += iops_of(r);
    total_mib += mib_of(r);
  }
  out += "========================================================\n";
  row("Total", total_iops, total_mib, report.total.latency_ticks);
  if (p.latency_percentiles) {
    out += fmt::format("\nLatency percentiles (us):\n{:<44}: {:>9} {:>9} {:>9} {:>9} {:>9}\n", "", "p50", "p90", "p99",
                       "p99.9", "p99.99");
    auto pct_row = [&out](const std::string& label, const Histogram& h) {
      out += fmt::format("{:<44}: {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f}\n", label, ticks_to_us(h.percentile(50)),
                         ticks_to_us(h.percentile(90)), ticks_to_us(h.percentile(99)), ticks_to_us(h.percentile(99.9)),
                         ticks_to_us(h.percentile(99.99)));
    };
    for (const QpairResult& r : report.qpairs) pct_row(r.name, r.latency_ticks);
    pct_row("Total", report.total.latency_ticks);
  }
  if (report.total.io_errors != 0) {
    out += fmt::format("\nI/O errors: {}\n", report.total.io_errors);
    for (const auto& [kind, n] : report.total.errors_by_kind) out += fmt::format("  {:>10}  {}\n", n, kind);
    out += fmt::format("  first: {}\n", report.total.first_error);
  }
  if (p.verify && report.read_percent == 0) {
    out += "\nverify: a write-only workload reads nothing back: blocks were stamped, none was checked\n";
  } else if (p.verify) {
    // Counted over the whole run (prefill and the drain after the window too), like the mismatches.
    out +=
        fmt::format("\nverify: {} blocks read back and checked, {} mismatching blocks{}\n", report.total.checked_blocks,
                    report.total.verify_errors, report.total.verify_errors == 0 ? "" : ":");
    for (const Mismatch& m : report.mismatches) {
      out += fmt::format("  qpair {} ns {} LBA {}: expected generation {}, found {}\n", m.qpair, m.nsid, m.lba,
                         m.expected_generation, m.found);
    }
  }
  return out;
}

nlohmann::json report_to_json(const PerfReport& report) {
  const PerfParams& p = report.params;
  nlohmann::json ns = nlohmann::json::array();
  for (const auto& a : p.backend.namespaces) ns.push_back(a.text);
  nlohmann::json j;
  j["params"] = {{"backend", backend_name(p)},
                 {"namespaces", ns},
                 {"partition", fmt::format("{}/{}", p.partition.index, p.partition.count)},
                 {"queue_depth", p.queue_depth},
                 {"iodepth_low", p.iodepth_low.value_or(p.queue_depth)},
                 {"max_completions_per_poll", p.max_completions_per_poll},
                 {"io_bytes", p.io_bytes},
                 {"pattern", to_string(p.pattern)},
                 {"read_percent", report.read_percent},
                 {"seconds", p.seconds},
                 {"qpairs", p.qpairs},
                 {"cores", p.cores},
                 {"verify", p.verify},
                 {"controller", report.controller}};
  if (p.service) {
    j["params"]["socket"] = p.socket;
    j["params"]["nsid"] = p.nsid;
    j["params"]["wait"] = p.wait_for_completions;
  }
  j["qpairs"] = nlohmann::json::array();
  double total_iops = 0, total_mib = 0;
  for (const QpairResult& r : report.qpairs) {
    j["qpairs"].push_back({{"name", r.name},
                           {"core", r.core},
                           {"nsid", r.nsid},
                           {"ios", r.ios},
                           {"iops", iops_of(r)},
                           {"mib_per_sec", mib_of(r)},
                           {"latency_us", latency_json(r.latency_ticks)},
                           {"io_errors", r.io_errors},
                           {"verify_errors", r.verify_errors}});
    total_iops += iops_of(r);
    total_mib += mib_of(r);
  }
  j["total"] = {{"ios", report.total.ios},
                {"iops", total_iops},
                {"mib_per_sec", total_mib},
                {"latency_us", latency_json(report.total.latency_ticks)},
                {"latency_histogram_us", histogram_json(report.total.latency_ticks)},
                {"io_errors", report.total.io_errors},
                {"io_errors_by_kind", report.total.errors_by_kind},
                {"first_io_error", report.total.first_error},
                {"avg_submit_batch", avg_submit_batch(report.total)}};
  j["interrupted"] = report.interrupted_by != 0;
  j["interrupted_by_signal"] = report.interrupted_by;
  j["verify_checked_blocks"] = report.total.checked_blocks;
  j["verify_errors"] = report.total.verify_errors;
  j["mismatches"] = nlohmann::json::array();
  for (const Mismatch& m : report.mismatches) {
    j["mismatches"].push_back({{"qpair", m.qpair},
                               {"nsid", m.nsid},
                               {"lba", m.lba},
                               {"expected_generation", m.expected_generation},
                               {"found", m.found}});
  }
  return j;
}

}  // namespace nvmux::perf
