#include "nvmux/nvme/uring.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <utility>

#include "identify.hpp"
#include "nvmux/common/counter.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"
#include "prp.hpp"

namespace nvmux::nvme {

namespace {

// Largest number of PRP pieces one transfer can have: one per page plus a misaligned first piece.
constexpr std::size_t kMaxSegmentsPerTransfer = (QueuePair::kMaxTransferBytesLimit / kPageBytes) + 1;
constexpr std::size_t kMaxRegisteredBufferBytes = std::size_t{1} << 30;  // the kernel's per-buffer cap

std::uint16_t st(GenericStatus s, bool dnr = false) { return make_status(s, dnr); }

// The checks on namespace i's options that need no file.
Status check_namespace_spec(std::size_t i, const UringNamespace& spec) {
  if (spec.block_size != 512 && spec.block_size != 4096) {
    return Status::error(StatusCode::kInvalidArgument, "namespace {} ({}): block size {} is not 512 or 4096", i + 1,
                         spec.path, spec.block_size);
  }
  if (spec.bytes % spec.block_size != 0) {
    return Status::error(StatusCode::kInvalidArgument, "namespace {} ({}): size {} is not a multiple of {}", i + 1,
                         spec.path, spec.bytes, spec.block_size);
  }
  return {};
}

}  // namespace

std::uint16_t errno_to_status(int err, std::uint8_t opcode) {
  bool is_read = opcode == static_cast<std::uint8_t>(NvmOpcode::kRead);
  switch (err) {
    case EIO:
    case ENODATA:
      return is_read ? make_status(MediaStatus::kUnrecoveredReadError, true)
                     : make_status(MediaStatus::kWriteFault, true);
    case ENOSPC:
    case EDQUOT: return st(GenericStatus::kCapacityExceeded, true);
    case EROFS:
    case EPERM:
    case EACCES: return st(GenericStatus::kNamespaceIsWriteProtected, true);
    case EOPNOTSUPP: return st(GenericStatus::kInvalidOpcode, true);
    case EINVAL: return st(GenericStatus::kInvalidField, true);
    case EFAULT:
    case EBADF: return st(GenericStatus::kDataTransferError, true);
    case ECANCELED:
    case EINTR: return st(GenericStatus::kAbortedByRequest);
    case EAGAIN:
    case EBUSY:
    case ENOMEM: return st(GenericStatus::kNamespaceNotReady);  // DNR clear: the driver may retry
    default: return st(GenericStatus::kInternalDeviceError, true);
  }
}

// One queue pair's io_uring, playing the device for the QueuePair's SQ and CQ memory.
// Owner-thread-only: every method runs on the QueuePair's owner (poll() inside process_completions).
class UringController::Transport final : public QueueTransport {
 public:
  struct Counters {
    std::atomic<std::uint64_t> submit_calls{0}, sqes{0}, fixed_rw{0}, vectored_rw{0}, bounced{0}, rejected{0},
        kernel_errors{0}, refused_submits{0}, foreign_registrations{0};
    UringStats snapshot() const {
      auto l = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
      return UringStats{l(submit_calls), l(sqes),          l(fixed_rw),        l(vectored_rw),          l(bounced),
                        l(rejected),     l(kernel_errors), l(refused_submits), l(foreign_registrations)};
    }
  };

  static Result<std::unique_ptr<Transport>> create(UringController* ctrl, std::uint16_t qid, std::uint32_t sq_entries,
                                                   std::uint32_t cq_entries) {
    std::unique_ptr<Transport> t(new Transport(ctrl, qid, sq_entries, cq_entries));
    NVMUX_RETURN_IF_ERROR(t->setup());
    return t;
  }

  ~Transport() override {
    drain_kernel();
    if (ring_ready_) io_uring_queue_exit(&ring_);
    for (auto& slot : slots_) std::free(slot.bounce);
    ctrl_->release_qid(qid_, counters_.snapshot());
  }

  std::uint16_t qid() const override { return qid_; }
  std::span<SubmissionEntry> sq() override { return {reinterpret_cast<SubmissionEntry*>(sq_mem_.data()), sq_entries_}; }
  std::span<CompletionEntry> cq() override { return {reinterpret_cast<CompletionEntry*>(cq_mem_.data()), cq_entries_}; }
  std::atomic<std::uint32_t>& sq_tail_doorbell() override { return sq_tail_doorbell_; }
  std::atomic<std::uint32_t>& cq_head_doorbell() override { return cq_head_doorbell_; }

  bool poll() override {
    // A client arena unmapped since the last look: unpin it now rather than at the next transfer.
    if (fixed_buffers_ && ctrl_->arena_->foreign_epoch() != foreign_epoch_) sync_foreign();
    fetch_and_submit();
    reap();
    post_waiting();
    return true;
  }

  Status reset() override {
    drain_kernel();
    waiting_.clear();
    std::memset(sq_mem_.data(), 0, sq_mem_.size());
    std::memset(cq_mem_.data(), 0, cq_mem_.size());  // phase 0 everywhere: nothing new yet
    // Relaxed: the owner thread is the only reader and writer of these during a reset.
    sq_tail_doorbell_.store(0, std::memory_order_relaxed);
    cq_head_doorbell_.store(0, std::memory_order_relaxed);
    sq_head_ = 0;
    cq_tail_ = 0;
    cq_phase_ = true;
    return {};
  }

  const Counters& counters() const { return counters_; }

 private:
  // One fetched command on its way through the kernel.
  struct Slot {
    std::uint16_t cid = 0;
    std::uint8_t opcode = 0;
    std::uint32_t parts_left = 0;  // SQEs still in the kernel for this command
    std::uint16_t status = 0;      // first failure wins
    int err = 0;
    std::size_t expect_bytes = 0;  // per part (reads and writes have one part)
    std::byte* bounce = nullptr;   // aligned copy for O_DIRECT transfers of misaligned memory
    bool bounce_read = false;      // copy the bounce buffer back to `iov` at completion
    std::vector<iovec> iov;        // PRP pieces of a read/write
    std::vector<DsmRange> ranges;  // deallocate
  };

  Transport(UringController* ctrl, std::uint16_t qid, std::uint32_t sq_entries, std::uint32_t cq_entries)
      : ctrl_(ctrl), qid_(qid), sq_entries_(sq_entries), cq_entries_(cq_entries) {}

  Status setup() {
    auto sq = ctrl_->arena_->alloc(std::size_t{sq_entries_} * sizeof(SubmissionEntry));
    if (!sq.ok()) return sq.status();
    auto cq = ctrl_->arena_->alloc(std::size_t{cq_entries_} * sizeof(CompletionEntry));
    if (!cq.ok()) return cq.status();
    sq_mem_ = std::move(*sq);
    cq_mem_ = std::move(*cq);
    slots_.resize(sq_entries_);
    free_slots_.reserve(sq_entries_);
    for (std::uint32_t i = sq_entries_; i > 0; --i) free_slots_.push_back(i - 1);

    io_uring_params params{};
    // Single issuer: this thread (the qpair's owner) is the only one that may submit; the kernel
    // refuses others. Cooperative task running: the kernel does not interrupt this (polling)
    // thread to post completions; it raises IORING_SQ_TASKRUN and reap() enters the kernel to run
    // them, once per poll (7% more IOPS at depth 1 than being interrupted; docs/uring.md).
    params.flags =
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    if (ctrl_->options_.sqpoll) {
      params.flags |= IORING_SETUP_SQPOLL;
      params.sq_thread_idle = 100;  // ms before the kernel's submitter thread sleeps
    }
    // Enough SQEs for a full queue of reads plus one deallocate with every range, or a flush of
    // every namespace; CQ room for all of them.
    std::uint32_t entries = std::bit_ceil(
        sq_entries_ + std::max<std::uint32_t>(kMaxDsmRanges, static_cast<std::uint32_t>(ctrl_->open_.size())));
    params.cq_entries = entries * 2;
    int rc = io_uring_queue_init_params(entries, &ring_, &params);
    if (rc == -EINVAL) {  // kernels before 6.0 know neither flag
      NVMUX_LOG_WARN(
          "{}: kernel refused IORING_SETUP_SINGLE_ISSUER / COOP_TASKRUN; the owner rule is enforced by "
          "nvmux only",
          ctrl_->name());
      params.flags &= ~(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
      rc = io_uring_queue_init_params(entries, &ring_, &params);
    }
    taskrun_flag_ = (params.flags & IORING_SETUP_TASKRUN_FLAG) != 0;
    if (rc < 0)
      return Status::from_errno(-rc, fmt::format("{}: io_uring_queue_init({} entries)", ctrl_->name(), entries));
    ring_ready_ = true;

    std::vector<int> fds;
    for (const auto& ns : ctrl_->open_) fds.push_back(ns.fd);
    rc = io_uring_register_files(&ring_, fds.data(), static_cast<unsigned>(fds.size()));
    if (rc < 0) return Status::from_errno(-rc, fmt::format("{}: io_uring_register_files", ctrl_->name()));
    if (ctrl_->options_.register_buffers) {
      // Buffer 0 is the controller's own arena; buffer 1 + slot a foreign region (a client's arena
      // in nvmuxd), registered at its first transfer on this ring (fixed_buffer_for).
      iovec whole{ctrl_->arena_->translate(ctrl_->arena_->iova_base(), ctrl_->arena_->size()), ctrl_->arena_->size()};
      rc = io_uring_register_buffers_sparse(&ring_, 1 + DmaArena::kMaxForeignRegions);
      if (rc >= 0) rc = update_buffer(0, whole);
      if (rc < 0) {
        return Status::from_errno(-rc, fmt::format("{}: io_uring_register_buffers({} bytes; raise RLIMIT_MEMLOCK or "
                                                   "pass register_buffers=false)",
                                                   ctrl_->name(), whole.iov_len));
      }
      fixed_buffers_ = true;
      foreign_.resize(DmaArena::kMaxForeignRegions);
    }
    return {};
  }

  int update_buffer(unsigned index, iovec iov) {
    __u64 tag = 0;
    return io_uring_register_buffers_update_tag(&ring_, index, &iov, &tag, 1);
  }

  // The registered buffer holding [p, p + len): 0 for the controller's arena, 1 + slot for a
  // foreign region (registered here at its first use: registering pins, and so allocates, all of
  // it), -1 for none (the transfer goes through readv/writev).
  int fixed_buffer_for(const std::byte* p, std::size_t len) {
    const DmaArena& arena = *ctrl_->arena_;
    if (arena.owns(p, len)) return 0;
    if (arena.foreign_epoch() != foreign_epoch_) sync_foreign();
    for (std::size_t slot : foreign_mapped_) {
      ForeignBuffer& b = foreign_[slot];
      if (p < b.host || static_cast<std::size_t>(p - b.host) >= b.bytes) continue;
      if (len > b.bytes - static_cast<std::size_t>(p - b.host)) return -1;
      // Unmapped or replaced since the last sync: the pinned pages are not this memory's.
      if (arena.foreign_generation(slot) != b.generation) return -1;
      if (!b.registered && !b.refused) register_foreign(slot);
      return b.registered ? static_cast<int>(1 + slot) : -1;
    }
    return -1;
  }

  // Brings this ring's view of the foreign regions up to date; the buffer of a region that went
  // away (or was replaced) leaves the table, which unpins its pages.
  void sync_foreign() {
    foreign_epoch_ = ctrl_->arena_->foreign_epoch();  // first: a change during the sync shows next time
    const auto views = ctrl_->arena_->foreign_snapshot();
    foreign_mapped_.clear();
    for (std::size_t slot = 0; slot < views.size(); ++slot) {
      ForeignBuffer& b = foreign_[slot];
      if (b.generation != views[slot].generation) {
        if (b.registered) {
          int rc = update_buffer(static_cast<unsigned>(1 + slot), iovec{nullptr, 0});
          if (rc < 0) {
            NVMUX_LOG_ERROR("{}/q{}: unregistering buffer {} failed ({}); its pages stay pinned until the ring closes",
                            ctrl_->name(), qid_, 1 + slot, std::strerror(-rc));
          }
        }
        b = ForeignBuffer{views[slot].host, views[slot].bytes, views[slot].generation};
      }
      if (b.generation != 0) foreign_mapped_.push_back(slot);
    }
  }

  void register_foreign(std::size_t slot) {
    ForeignBuffer& b = foreign_[slot];
    int rc = update_buffer(static_cast<unsigned>(1 + slot), iovec{b.host, b.bytes});
    if (rc < 0) {
      b.refused = true;
      NVMUX_LOG_WARN(
          "{}/q{}: {} bytes of foreign memory not registered ({}; raise RLIMIT_MEMLOCK); its transfers "
          "go through readv/writev",
          ctrl_->name(), qid_, b.bytes, std::strerror(-rc));
      return;
    }
    b.registered = true;
    single_writer_add(counters_.foreign_registrations);
  }

  // New SQ entries -> io_uring SQEs, one io_uring_submit for all of them.
  void fetch_and_submit() {
    // Acquire: pairs with the qpair's release store; the entries are written before the doorbell.
    std::uint32_t tail = sq_tail_doorbell_.load(std::memory_order_acquire);
    if (tail >= sq_entries_) {
      NVMUX_LOG_ERROR("{}/q{}: SQ tail doorbell {} beyond {} entries; ignored", ctrl_->name(), qid_, tail, sq_entries_);
      return;
    }
    std::uint32_t queued = 0;
    while (sq_head_ != tail && !free_slots_.empty()) {
      SubmissionEntry command = sq()[sq_head_];
      // Make room for all of this command's SQEs before taking it.
      std::uint32_t need = sqes_needed(command);
      if (io_uring_sq_space_left(&ring_) < need) {
        if (queued != 0) submit(queued);
        queued = 0;
        if (io_uring_sq_space_left(&ring_) < need) break;
      }
      sq_head_ = (sq_head_ + 1) % sq_entries_;
      queued += start(command);
    }
    // Also resubmit SQEs an earlier, refused submit left in the ring.
    if (queued != 0 || io_uring_sq_ready(&ring_) != 0) submit(queued);
  }

  std::uint32_t sqes_needed(const SubmissionEntry& c) const {
    switch (static_cast<NvmOpcode>(c.opcode)) {
      case NvmOpcode::kDatasetManagement: return (c.cdw10 & 0xffu) + 1;
      case NvmOpcode::kFlush: return static_cast<std::uint32_t>(ctrl_->open_.size());
      default: return 1;
    }
  }

  void submit(std::uint32_t queued) {
    int rc = io_uring_submit(&ring_);
    single_writer_add(counters_.submit_calls);
    if (rc >= 0) {
      single_writer_add(counters_.sqes, static_cast<std::uint64_t>(rc));
      return;
    }
    // The SQEs stay in the ring and go with the next submit that succeeds.
    single_writer_add(counters_.refused_submits);
    if (rc == -EEXIST) {
      // IORING_SETUP_SINGLE_ISSUER: the kernel refuses a thread that is not the ring's owner. Only
      // reachable when the qpair's own owner check is switched off (a test-only option).
      NVMUX_LOG_ERROR("{}/q{}: the kernel refused a submit from {}: not the queue pair's owner thread", ctrl_->name(),
                      qid_, current_thread_label());
    } else if (rc != -EBUSY && rc != -EAGAIN) {
      NVMUX_LOG_ERROR("{}/q{}: io_uring_submit of {} SQEs failed: {}", ctrl_->name(), qid_, queued, std::strerror(-rc));
    }
  }

  // Turns one NVMe command into SQEs; returns how many. Commands answered at once return 0.
  std::uint32_t start(const SubmissionEntry& c) {
    const std::uint32_t index = take_slot(c);
    auto opcode = static_cast<NvmOpcode>(c.opcode);
    if (opcode == NvmOpcode::kFlush && c.nsid == kAllNamespaces) {
      for (std::uint32_t i = 0; i < ctrl_->open_.size(); ++i) prep_flush(index, i);
      return static_cast<std::uint32_t>(ctrl_->open_.size());
    }
    if (c.nsid == 0 || c.nsid > ctrl_->open_.size()) {
      return reject(index, st(GenericStatus::kInvalidNamespaceOrFormat, true));
    }
    const OpenNamespace& ns = ctrl_->open_[c.nsid - 1];
    switch (opcode) {
      case NvmOpcode::kFlush: prep_flush(index, c.nsid - 1); return 1;
      case NvmOpcode::kRead:
      case NvmOpcode::kWrite: return start_read_write(index, c, ns);
      case NvmOpcode::kWriteZeroes: return start_write_zeroes(index, c, ns);
      case NvmOpcode::kDatasetManagement: return start_deallocate(index, c, ns);
      default: return reject(index, st(GenericStatus::kInvalidOpcode, true));
    }
  }

  // Takes a free slot for command `c`, cleared of the last command's state; returns its index.
  std::uint32_t take_slot(const SubmissionEntry& c) {
    std::uint32_t index = free_slots_.back();
    free_slots_.pop_back();
    Slot& s = slots_[index];
    s.cid = c.cid;
    s.opcode = c.opcode;
    s.parts_left = 0;
    s.status = 0;
    s.err = 0;
    s.bounce_read = false;
    s.iov.clear();
    s.ranges.clear();
    return index;
  }

  // Answers the command in slot `index` at once with `status` (0: success, nothing to do).
  std::uint32_t reject(std::uint32_t index, std::uint16_t status) {
    single_writer_add(counters_.rejected);
    slots_[index].status = status;
    finish(index);
    return 0;
  }

  static std::uint64_t starting_lba(const SubmissionEntry& c) { return (std::uint64_t{c.cdw11} << 32) | c.cdw10; }
  static std::uint64_t block_count(const SubmissionEntry& c) { return std::uint64_t{c.cdw12 & kCdw12NlbMask} + 1; }
  static bool beyond_namespace(const OpenNamespace& ns, std::uint64_t slba, std::uint64_t nlb) {
    return slba >= ns.blocks || nlb > ns.blocks - slba;
  }

  std::uint32_t start_read_write(std::uint32_t index, const SubmissionEntry& c, const OpenNamespace& ns) {
    const std::uint64_t slba = starting_lba(c);
    const std::uint64_t nlb = block_count(c);
    if (beyond_namespace(ns, slba, nlb)) return reject(index, st(GenericStatus::kLbaOutOfRange, true));
    std::size_t bytes = static_cast<std::size_t>(nlb * ns.block_size);
    if (ctrl_->info_.max_transfer_bytes != 0 && bytes > ctrl_->info_.max_transfer_bytes) {
      return reject(index, st(GenericStatus::kInvalidField, true));
    }
    Slot& s = slots_[index];
    std::uint16_t prp_status = walk_prps(*ctrl_->arena_, c.prp1, c.prp2, bytes, [&](std::byte* p, std::size_t len) {
      // Merge pieces that continue each other in host memory.
      if (!s.iov.empty() && static_cast<std::byte*>(s.iov.back().iov_base) + s.iov.back().iov_len == p) {
        s.iov.back().iov_len += len;
      } else {
        s.iov.push_back(iovec{p, len});
      }
    });
    if (prp_status != 0) return reject(index, prp_status);
    prep_rw(index, ns, c.nsid - 1, static_cast<NvmOpcode>(c.opcode) == NvmOpcode::kRead, slba * ns.block_size, bytes);
    return 1;
  }

  std::uint32_t start_write_zeroes(std::uint32_t index, const SubmissionEntry& c, const OpenNamespace& ns) {
    const std::uint64_t slba = starting_lba(c);
    const std::uint64_t nlb = block_count(c);
    if (beyond_namespace(ns, slba, nlb)) return reject(index, st(GenericStatus::kLbaOutOfRange, true));
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_fallocate(sqe, static_cast<int>(c.nsid - 1), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                            static_cast<off_t>(slba * ns.block_size), static_cast<off_t>(nlb * ns.block_size));
    arm(sqe, index, 0);
    return 1;
  }

  // Dataset Management: reads the ranges from host memory; with the deallocate attribute, punches
  // one hole per non-empty range (one SQE each).
  std::uint32_t start_deallocate(std::uint32_t index, const SubmissionEntry& c, const OpenNamespace& ns) {
    Slot& s = slots_[index];
    std::uint32_t count = (c.cdw10 & 0xffu) + 1;
    s.ranges.resize(count);
    auto* out = reinterpret_cast<std::byte*>(s.ranges.data());
    std::uint16_t prp_status =
        walk_prps(*ctrl_->arena_, c.prp1, c.prp2, count * sizeof(DsmRange), [&](std::byte* p, std::size_t len) {
          std::memcpy(out, p, len);
          out += len;
        });
    if (prp_status != 0) return reject(index, prp_status);
    for (const DsmRange& r : s.ranges) {
      if (beyond_namespace(ns, r.starting_lba, r.lba_count))
        return reject(index, st(GenericStatus::kLbaOutOfRange, true));
    }
    if ((c.cdw11 & kDsmAttrDeallocate) == 0) return reject(index, 0);  // only hints: nothing to do
    std::uint32_t parts = 0;
    for (const DsmRange& r : s.ranges) {
      if (r.lba_count == 0) continue;
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      io_uring_prep_fallocate(sqe, static_cast<int>(c.nsid - 1), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              static_cast<off_t>(r.starting_lba * ns.block_size),
                              static_cast<off_t>(std::uint64_t{r.lba_count} * ns.block_size));
      arm(sqe, index, 0);
      ++parts;
    }
    if (parts == 0) return reject(index, 0);
    return parts;
  }

  void prep_flush(std::uint32_t index, std::uint32_t file_index) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_fsync(sqe, static_cast<int>(file_index), IORING_FSYNC_DATASYNC);
    arm(sqe, index, 0);
  }

  void prep_rw(std::uint32_t index, const OpenNamespace& ns, std::uint32_t file_index, bool read, std::uint64_t offset,
               std::size_t bytes) {
    Slot& s = slots_[index];
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    bool aligned = true;
    if (ctrl_->options_.direct) {
      for (const iovec& v : s.iov) {
        aligned = aligned && reinterpret_cast<std::uintptr_t>(v.iov_base) % ns.direct_align == 0 &&
                  v.iov_len % ns.direct_align == 0;
      }
    }
    const int fd = static_cast<int>(file_index);
    if (!aligned) {
      // O_DIRECT cannot take this memory: go through an aligned copy.
      single_writer_add(counters_.bounced);
      if (s.bounce == nullptr) {
        void* p = nullptr;
        std::size_t cap = std::max<std::size_t>(ctrl_->info_.max_transfer_bytes, QueuePair::kMaxTransferBytesLimit);
        NVMUX_ASSERT(posix_memalign(&p, kPageBytes, cap) == 0, "bounce buffer of {} bytes", cap);
        s.bounce = static_cast<std::byte*>(p);
      }
      if (read) {
        s.bounce_read = true;
        io_uring_prep_read(sqe, fd, s.bounce, static_cast<unsigned>(bytes), offset);
      } else {
        std::byte* out = s.bounce;
        for (const iovec& v : s.iov) {
          std::memcpy(out, v.iov_base, v.iov_len);
          out += v.iov_len;
        }
        io_uring_prep_write(sqe, fd, s.bounce, static_cast<unsigned>(bytes), offset);
      }
    } else if (int buffer = -1;
               s.iov.size() == 1 && fixed_buffers_ &&
               (buffer = fixed_buffer_for(static_cast<std::byte*>(s.iov[0].iov_base), s.iov[0].iov_len)) >= 0) {
      single_writer_add(counters_.fixed_rw);
      if (read) {
        io_uring_prep_read_fixed(sqe, fd, s.iov[0].iov_base, static_cast<unsigned>(bytes), offset, buffer);
      } else {
        io_uring_prep_write_fixed(sqe, fd, s.iov[0].iov_base, static_cast<unsigned>(bytes), offset, buffer);
      }
    } else {
      single_writer_add(counters_.vectored_rw);
      NVMUX_ASSERT(s.iov.size() <= kMaxSegmentsPerTransfer, "{} PRP pieces in one transfer", s.iov.size());
      if (read) {
        io_uring_prep_readv(sqe, fd, s.iov.data(), static_cast<unsigned>(s.iov.size()), offset);
      } else {
        io_uring_prep_writev(sqe, fd, s.iov.data(), static_cast<unsigned>(s.iov.size()), offset);
      }
    }
    arm(sqe, index, bytes);
  }

  void arm(io_uring_sqe* sqe, std::uint32_t index, std::size_t expect_bytes) {
    NVMUX_ASSERT(sqe != nullptr, "{}/q{}: no free SQE although space was checked", ctrl_->name(), qid_);
    sqe->flags |= IOSQE_FIXED_FILE;  // fd fields hold registered-file indices
    io_uring_sqe_set_data64(sqe, index);
    slots_[index].expect_bytes = expect_bytes;
    ++slots_[index].parts_left;
    ++in_kernel_;
  }

  // Kernel completions -> NVMe completions.
  void reap() {
    // Completions the kernel queued for this task run only when it enters the kernel.
    if (taskrun_flag_ && in_kernel_ != 0 && (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN) != 0) {
      io_uring_get_events(&ring_);
    }
    io_uring_cqe* cqe = nullptr;
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      on_cqe(static_cast<std::uint32_t>(io_uring_cqe_get_data64(cqe)), cqe->res);
    }
    if (seen != 0) io_uring_cq_advance(&ring_, seen);
  }

  void on_cqe(std::uint32_t index, int res) {
    NVMUX_ASSERT(index < slots_.size() && slots_[index].parts_left > 0, "{}/q{}: CQE for idle slot {}", ctrl_->name(),
                 qid_, index);
    Slot& s = slots_[index];
    --in_kernel_;
    if (res < 0) {
      single_writer_add(counters_.kernel_errors);
      if (s.status == 0) {
        s.err = -res;
        s.status = errno_to_status(-res, s.opcode);
      }
    } else if (s.expect_bytes != 0 && static_cast<std::size_t>(res) != s.expect_bytes && s.status == 0) {
      s.err = EIO;  // a short transfer: the file ended early
      s.status = st(GenericStatus::kDataTransferError, true);
    }
    if (--s.parts_left == 0) {
      if (s.status == 0 && s.bounce_read) {
        const std::byte* in = s.bounce;
        for (const iovec& v : s.iov) {
          std::memcpy(v.iov_base, in, v.iov_len);
          in += v.iov_len;
        }
      }
      finish(index);
    }
  }

  // Builds the completion entry for slot `index` and frees the slot.
  void finish(std::uint32_t index) {
    Slot& s = slots_[index];
    CompletionEntry e{};
    e.cdw0 = static_cast<std::uint32_t>(s.err);  // the kernel's errno, for diagnostics
    e.sq_id = qid_;
    e.cid = s.cid;
    e.status = s.status;
    waiting_.push_back(e);
    free_slots_.push_back(index);
  }

  // Writes waiting completions into the CQ while it has room (a full CQ stalls, as on a device).
  void post_waiting() {
    // Acquire: the qpair consumed the entries before moving its head.
    std::uint32_t head = cq_head_doorbell_.load(std::memory_order_acquire);
    CompletionEntry* cq_base = cq().data();
    while (!waiting_.empty() && (cq_tail_ + 1) % cq_entries_ != head) {
      CompletionEntry e = waiting_.front();
      waiting_.pop_front();
      e.sq_head = static_cast<std::uint16_t>(sq_head_);
      CompletionEntry& slot = cq_base[cq_tail_];
      slot.cdw0 = e.cdw0;
      slot.cdw1 = 0;
      slot.sq_head = e.sq_head;
      slot.sq_id = e.sq_id;
      slot.cid = e.cid;
      // Release: the entry's other fields (and data copied into host memory) before the phase tag.
      std::atomic_ref<std::uint16_t>(slot.status)
          .store(static_cast<std::uint16_t>((e.status & ~1u) | (cq_phase_ ? 1u : 0u)), std::memory_order_release);
      cq_tail_ = (cq_tail_ + 1) % cq_entries_;
      if (cq_tail_ == 0) cq_phase_ = !cq_phase_;
    }
  }

  // Waits for every request in the kernel (their buffers must stay valid until they finish).
  void drain_kernel() {
    if (!ring_ready_ || in_kernel_ == 0) return;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe != nullptr) {
      io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
      io_uring_sqe_set_data64(sqe, UINT64_MAX);
      io_uring_submit(&ring_);
    }
    while (in_kernel_ > 0) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe(&ring_, &cqe) != 0) break;
      std::uint64_t data = io_uring_cqe_get_data64(cqe);
      int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (data != UINT64_MAX) on_cqe(static_cast<std::uint32_t>(data), res);
    }
    reap();  // the cancel request's own completion
  }

  UringController* ctrl_;
  const std::uint16_t qid_;
  const std::uint32_t sq_entries_;
  const std::uint32_t cq_entries_;
  DmaBuffer sq_mem_;
  DmaBuffer cq_mem_;
  std::atomic<std::uint32_t> sq_tail_doorbell_{0};
  std::atomic<std::uint32_t> cq_head_doorbell_{0};
  io_uring ring_{};
  bool ring_ready_ = false;
  bool fixed_buffers_ = false;
  bool taskrun_flag_ = false;  // IORING_SETUP_TASKRUN_FLAG in effect

  // Foreign regions (client arenas) as this ring knows them, by DmaArena slot; buffer 1 + slot.
  struct ForeignBuffer {
    std::byte* host = nullptr;
    std::size_t bytes = 0;
    std::uint64_t generation = 0;  // of the region described (0: none)
    bool registered = false;       // in this ring's buffer table
    bool refused = false;          // the kernel refused it: transfers go through readv/writev
  };
  std::vector<ForeignBuffer> foreign_;
  std::vector<std::size_t> foreign_mapped_;  // slots with a region, for the lookup
  std::uint64_t foreign_epoch_ = 0;          // DmaArena::foreign_epoch() at the last sync

  std::uint32_t sq_head_ = 0;
  std::uint32_t cq_tail_ = 0;
  bool cq_phase_ = true;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::uint32_t in_kernel_ = 0;
  std::deque<CompletionEntry> waiting_;
  Counters counters_;
};

UringController::UringController(UringOptions options) : options_(std::move(options)) {}

UringController::~UringController() {
  NVMUX_ASSERT(live_.empty(), "{}: destroyed with {} queue pairs still alive", options_.name, live_.size());
  for (auto& ns : open_) {
    if (ns.fd >= 0) ::close(ns.fd);
  }
}

Result<std::unique_ptr<UringController>> UringController::create(UringOptions options) {
  if (options.namespaces.empty())
    return Status::error(StatusCode::kInvalidArgument, "uring controller without namespaces");
  if (options.namespaces.size() > kMaxNamespaces) {
    return Status::error(StatusCode::kInvalidArgument, "{} namespaces: a controller holds at most {}",
                         options.namespaces.size(), kMaxNamespaces);
  }
  if (options.max_queue_entries < 2 || options.max_queue_entries > kMaxQueueEntriesSpec) {
    return Status::error(StatusCode::kInvalidArgument, "max_queue_entries {} outside [2, {}]",
                         options.max_queue_entries, kMaxQueueEntriesSpec);
  }
  if (options.max_io_queues == 0 || options.max_io_queues > 255) {
    return Status::error(StatusCode::kInvalidArgument, "max_io_queues {} outside [1, 255]", options.max_io_queues);
  }
  if (options.max_transfer_bytes < kPageBytes || !std::has_single_bit(options.max_transfer_bytes) ||
      options.max_transfer_bytes > QueuePair::kMaxTransferBytesLimit) {
    return Status::error(StatusCode::kInvalidArgument,
                         "max_transfer_bytes {} is not 4 KiB times a power of two up to {}", options.max_transfer_bytes,
                         QueuePair::kMaxTransferBytesLimit);
  }
  if (options.register_buffers && options.dma_arena_bytes > kMaxRegisteredBufferBytes) {
    return Status::error(StatusCode::kInvalidArgument, "a registered DMA arena is at most {} bytes, asked for {}",
                         kMaxRegisteredBufferBytes, options.dma_arena_bytes);
  }
  std::unique_ptr<UringController> ctrl(new UringController(std::move(options)));
  NVMUX_RETURN_IF_ERROR(ctrl->open_namespaces());
  auto arena = DmaArena::create(ctrl->options_.dma_arena_bytes);
  if (!arena.ok()) return arena.status();
  ctrl->arena_ = std::move(*arena);
  ctrl->qids_.reset(ctrl->options_.max_io_queues);
  ControllerInfo& info = ctrl->info_;
  info.model = "nvmux io_uring";
  info.serial = ctrl->options_.name;
  info.firmware = "nvmux";
  info.vendor_id = 0x1b36;  // the QEMU/Red Hat id emulated devices use
  info.version = 0x00020000;
  info.max_transfer_bytes = ctrl->options_.max_transfer_bytes;
  info.max_queue_entries = ctrl->options_.max_queue_entries;
  info.io_queues = ctrl->options_.max_io_queues;
  info.oncs = kOncsDatasetManagement | kOncsWriteZeroes;
  info.volatile_write_cache = true;  // flush means fdatasync
  if (!ctrl->options_.direct) {
    NVMUX_LOG_WARN("{}: O_DIRECT off: I/O goes through the page cache, latency numbers measure memory copies",
                   ctrl->options_.name);
  }
  return ctrl;
}

Status UringController::open_namespaces() {
  for (std::size_t i = 0; i < options_.namespaces.size(); ++i) {
    const UringNamespace& spec = options_.namespaces[i];
    NVMUX_RETURN_IF_ERROR(check_namespace_spec(i, spec));
    NVMUX_RETURN_IF_ERROR(open_namespace_file(i, spec));
    OpenNamespace& opened = open_.back();
    auto size = opened.is_block_device ? size_block_device(i, spec, opened) : size_regular_file(i, spec, opened);
    if (!size.ok()) return size.status();
    if (options_.direct && spec.block_size % opened.direct_align != 0) {
      return Status::error(StatusCode::kInvalidArgument,
                           "namespace {}: block size {} is smaller than the {}-byte O_DIRECT alignment of {}", i + 1,
                           spec.block_size, opened.direct_align, spec.path);
    }
    if (*size % spec.block_size != 0) {
      return Status::error(StatusCode::kInvalidArgument,
                           "namespace {}: {} holds {} bytes, not a multiple of its {}-byte blocks; give size=N to use "
                           "a part of it",
                           i + 1, spec.path, *size, spec.block_size);
    }
    opened.blocks = *size / spec.block_size;
    if (opened.blocks == 0) {
      return Status::error(StatusCode::kInvalidArgument, "namespace {}: {} is smaller than one {}-byte block", i + 1,
                           spec.path, spec.block_size);
    }
    namespaces_.push_back(NamespaceInfo{static_cast<std::uint32_t>(i + 1), opened.blocks, opened.block_size});
  }
  return {};
}

// Opens namespace i's file or block device (creating a missing file) and appends it to open_,
// whose destructor closes it from then on.
Status UringController::open_namespace_file(std::size_t i, const UringNamespace& spec) {
  OpenNamespace ns;
  ns.block_size = spec.block_size;
  struct stat sb {};
  bool exists = ::stat(spec.path.c_str(), &sb) == 0;
  if (exists && !S_ISREG(sb.st_mode) && !S_ISBLK(sb.st_mode)) {
    return Status::error(StatusCode::kInvalidArgument, "namespace {}: {} is neither a regular file nor a block device",
                         i + 1, spec.path);
  }
  if (!exists && spec.bytes == 0) {
    return Status::error(StatusCode::kInvalidArgument,
                         "namespace {}: {} does not exist and no size was given to create it", i + 1, spec.path);
  }
  ns.is_block_device = exists && S_ISBLK(sb.st_mode);
  int flags = O_RDWR | O_CLOEXEC | (ns.is_block_device ? 0 : O_CREAT) | (options_.direct ? O_DIRECT : 0);
  ns.fd = ::open(spec.path.c_str(), flags, 0644);
  if (ns.fd < 0 && errno == EINVAL && options_.direct) {
    return Status::error(
        StatusCode::kUnsupported,
        "namespace {}: the filesystem of {} refuses O_DIRECT; use a different filesystem or direct=false", i + 1,
        spec.path);
  }
  if (ns.fd < 0) return Status::from_errno(errno, fmt::format("namespace {}: open {}", i + 1, spec.path));
  open_.push_back(ns);  // closed by the destructor from here on
  return {};
}

// The bytes namespace i uses of its block device (all of it unless a size was given); notes the
// device's logical block size as the O_DIRECT alignment.
Result<std::uint64_t> UringController::size_block_device(std::size_t i, const UringNamespace& spec,
                                                         OpenNamespace& opened) {
  std::uint64_t size = 0;
  if (::ioctl(opened.fd, BLKGETSIZE64, &size) != 0) return Status::from_errno(errno, "BLKGETSIZE64 " + spec.path);
  int logical = 512;
  if (::ioctl(opened.fd, BLKSSZGET, &logical) == 0) opened.direct_align = static_cast<std::uint32_t>(logical);
  if (spec.bytes != 0 && spec.bytes > size) {
    return Status::error(StatusCode::kInvalidArgument, "namespace {}: {} holds {} bytes, fewer than the {} asked",
                         i + 1, spec.path, size, spec.bytes);
  }
  if (spec.bytes != 0) size = spec.bytes;
  return size;
}

// The bytes namespace i uses of its regular file, growing the file to the size asked; notes the
// filesystem's O_DIRECT alignment (statx) when I/O is direct.
Result<std::uint64_t> UringController::size_regular_file(std::size_t i, const UringNamespace& spec,
                                                         OpenNamespace& opened) const {
  struct stat sb {};
  if (::fstat(opened.fd, &sb) != 0) return Status::from_errno(errno, "fstat " + spec.path);
  auto size = static_cast<std::uint64_t>(sb.st_size);
  if (spec.bytes != 0) size = spec.bytes;
  // Allocate the space now (growing a new or short file to its size): a filesystem without room
  // is an error here, not a stream of failed writes later. posix_fallocate returns the error.
  int rc = size == 0 ? 0 : ::posix_fallocate(opened.fd, 0, static_cast<off_t>(size));
  if (rc != 0) {
    if (rc == ENOSPC || rc == EDQUOT) {
      return Status::from_errno(
          rc, fmt::format("namespace {}: {}: no room for its {} bytes on the filesystem", i + 1, spec.path, size));
    }
    return Status::from_errno(rc, fmt::format("namespace {}: allocating {} bytes for {}", i + 1, size, spec.path));
  }
  struct statx sx {};
  if (options_.direct && ::statx(opened.fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
      (sx.stx_mask & STATX_DIOALIGN) != 0 && sx.stx_dio_offset_align != 0) {
    opened.direct_align = std::max(sx.stx_dio_mem_align, sx.stx_dio_offset_align);
  }
  return size;
}

Result<std::unique_ptr<QueuePair>> UringController::create_io_qpair(const QueuePairOptions& options) {
  auto entries = io_queue_entries(name(), options, info_.max_queue_entries);
  if (!entries.ok()) return entries.status();
  std::uint32_t sq_entries = entries->sq;
  std::uint32_t cq_entries = entries->cq;
  std::uint16_t qid = 0;
  {
    std::lock_guard lock(mutex_);
    auto acquired = qids_.acquire(name());
    if (!acquired.ok()) return acquired.status();
    qid = *acquired;
  }
  auto prp = dma_alloc(std::size_t{sq_entries - 1} * kPageBytes);
  if (!prp.ok()) {
    release_qid(qid, UringStats{});
    return prp.status();
  }
  auto transport = Transport::create(this, qid, sq_entries, cq_entries);  // releases qid itself on failure
  if (!transport.ok()) return transport.status();
  {
    std::lock_guard lock(mutex_);
    live_.push_back(transport->get());
  }
  QueuePairOptions qp_options = options;
  if (qp_options.name.empty()) qp_options.name = fmt::format("{}/q{}", name(), qid);
  return std::make_unique<QueuePair>(std::move(transport).value(), std::move(prp).value(), namespaces_,
                                     info_.max_transfer_bytes, std::move(qp_options));
}

void UringController::release_qid(std::uint16_t qid, const UringStats& final_stats) {
  std::lock_guard lock(mutex_);
  qids_.release(qid, name());
  std::erase_if(live_, [qid](Transport* t) { return t->qid() == qid; });
  closed_stats_ += final_stats;
}

UringStats UringController::stats() const {
  std::lock_guard lock(mutex_);
  UringStats total = closed_stats_;
  for (const Transport* t : live_) total += t->counters().snapshot();
  return total;
}

// PRPs into a foreign region translate to its host memory, and the kernel reads or writes it
// directly (vectored I/O; only the arena itself is a registered buffer).
Result<ForeignRegion> UringController::register_memory(std::span<std::byte> memory) {
  return arena_->map_foreign(memory);
}

Result<DmaBuffer> UringController::dma_alloc(std::size_t bytes, std::size_t align) {
  return arena_->alloc(bytes, align);
}

Result<CompletionEntry> UringController::admin_command(const SubmissionEntry& command, IoVec data) {
  CompletionEntry done{};
  done.cid = command.cid;
  if (command.opcode != static_cast<std::uint8_t>(AdminOpcode::kIdentify)) {
    done.status = st(GenericStatus::kInvalidOpcode, true);
    return done;
  }
  std::byte* out = arena_->translate(data.iova, kPageBytes);
  if (out == nullptr || data.bytes < kPageBytes) {
    return Status::error(StatusCode::kInvalidArgument, "{}: Identify needs a 4096-byte DMA buffer", name());
  }
  std::memset(out, 0, kPageBytes);  // an Identify that fails returns a zeroed page too
  IdentifyPage page{out, kPageBytes};
  switch (static_cast<IdentifyCns>(command.cdw10 & 0xffu)) {
    case IdentifyCns::kController: {
      IdentifyControllerFields fields;
      fields.vendor_id = info_.vendor_id;
      fields.serial = info_.serial;
      fields.model = info_.model;
      fields.firmware = info_.firmware;
      fields.max_transfer_bytes = info_.max_transfer_bytes;
      fields.version = info_.version;
      fields.namespace_count = static_cast<std::uint32_t>(namespaces_.size());
      fields.oncs = info_.oncs;
      build_identify_controller(page, fields);
      break;
    }
    case IdentifyCns::kNamespace: {
      if (command.nsid == 0 || command.nsid > namespaces_.size()) {
        done.status = st(GenericStatus::kInvalidNamespaceOrFormat, true);
        return done;
      }
      const NamespaceInfo& ns = namespaces_[command.nsid - 1];
      build_identify_namespace(page, ns.blocks, ns.block_size);  // punched holes read as zeroes
      break;
    }
    case IdentifyCns::kActiveNamespaceList:
      build_active_namespace_list(page, command.nsid, static_cast<std::uint32_t>(namespaces_.size()));
      break;
    default: done.status = st(GenericStatus::kInvalidField, true);
  }
  return done;
}

ControllerFactory UringController::factory(UringOptions base) {
  return [base = std::move(base)](const ControllerSpec& spec) -> Result<std::unique_ptr<Controller>> {
    UringOptions options = base;
    options.name = spec.name;
    options.namespaces.clear();
    std::vector<std::string> scratch;
    for (const NamespaceSpec& ns : spec.namespaces) {
      std::uint64_t bytes = ns.blocks * ns.block_size;
      switch (ns.backing) {
        case NamespaceBacking::kNull:
          return Status::error(StatusCode::kUnsupported,
                               "the uring backend has no null namespace (it would need a file); use emu");
        case NamespaceBacking::kFile:
          options.namespaces.push_back(UringNamespace{ns.path, bytes, ns.block_size});
          break;
        case NamespaceBacking::kRam: {
          std::string dir =
              base.scratch_dir.empty() ? std::filesystem::temp_directory_path().string() : base.scratch_dir;
          std::string path = fmt::format("{}/nvmux-uring-{}-{}-{}.img", dir, ::getpid(), spec.name, scratch.size());
          std::filesystem::remove(path);
          scratch.push_back(path);
          options.namespaces.push_back(UringNamespace{path, bytes, ns.block_size});
          break;
        }
      }
    }
    auto ctrl = UringController::create(std::move(options));
    // Scratch files stay open through their fds; their names can go now.
    for (const auto& path : scratch) std::filesystem::remove(path);
    if (!ctrl.ok()) return ctrl.status();
    return std::unique_ptr<Controller>(std::move(ctrl).value());
  };
}

}  // namespace nvmux::nvme
