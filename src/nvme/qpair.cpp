#include "nvmux/nvme/qpair.hpp"

#include <cstring>

#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"

namespace nvmux::nvme {

namespace {
constexpr std::uint32_t kMaxBlocksPerCommand = 65536;  // NLB is 16 bits, 0's based
constexpr std::uint32_t kPrpEntriesPerPage = kPageBytes / sizeof(std::uint64_t);
}  // namespace

QueuePair::QueuePair(std::unique_ptr<QueueTransport> transport, DmaBuffer prp_pages,
                     std::vector<NamespaceInfo> namespaces, std::uint32_t max_transfer_bytes, QueuePairOptions options)
    : transport_(std::move(transport)), prp_pages_(std::move(prp_pages)), namespaces_(std::move(namespaces)),
      options_(std::move(options)), owner_(std::this_thread::get_id()), owner_label_(current_thread_label()) {
  NVMUX_ASSERT(transport_ != nullptr, "QueuePair needs a transport");
  qid_ = transport_->qid();
  sq_ = transport_->sq();
  cq_ = transport_->cq();
  sq_doorbell_ = &transport_->sq_tail_doorbell();
  cq_doorbell_ = &transport_->cq_head_doorbell();
  NVMUX_ASSERT(
      sq_.size() >= 2 && sq_.size() <= kMaxQueueEntriesSpec && cq_.size() >= 2 && cq_.size() <= kMaxQueueEntriesSpec,
      "qpair qid {}: SQ of {} and CQ of {} entries outside [2, {}]", qid_, sq_.size(), cq_.size(),
      kMaxQueueEntriesSpec);
  tracker_count_ = static_cast<std::uint32_t>(sq_.size() - 1);
  NVMUX_ASSERT(tracker_count_ < kNil, "qpair qid {}: {} command ids do not fit 16 bits", qid_, tracker_count_);
  NVMUX_ASSERT(prp_pages_.size() >= std::size_t{tracker_count_} * kPageBytes && prp_pages_.iova() % kPageBytes == 0,
               "qpair qid {}: PRP pages buffer of {} bytes for {} command ids", qid_, prp_pages_.size(),
               tracker_count_);
  if (options_.name.empty()) options_.name = fmt::format("q{}", qid_);
  max_transfer_bytes_ = kMaxTransferBytesLimit;
  if (max_transfer_bytes != 0 && max_transfer_bytes < max_transfer_bytes_) max_transfer_bytes_ = max_transfer_bytes;

  trackers_.resize(tracker_count_);
  free_ids_.resize(tracker_count_);
  for (std::uint32_t i = 0; i < tracker_count_; ++i) {
    Tracker& t = trackers_[i];
    t.prp_list = reinterpret_cast<std::uint64_t*>(prp_pages_.data() + std::size_t{i} * kPageBytes);
    t.prp_list_iova = prp_pages_.iova() + std::uint64_t{i} * kPageBytes;
    free_ids_[i] = static_cast<std::uint16_t>(i);
  }
  free_count_ = tracker_count_;
}

QueuePair::~QueuePair() {
  // Stop the device touching our memory first, then tell the callers.
  transport_.reset();
  if (stats_.depth != 0) {
    state_ = State::kFailed;
    failure_ = Status::error(StatusCode::kAborted, "qpair '{}' destroyed", options_.name);
    abort_all("the qpair was destroyed with the command outstanding");
  }
}

std::uint64_t QueuePair::now_ns() const { return options_.clock ? options_.clock() : monotonic_ns(); }

Status QueuePair::wrong_thread(const char* what) const {
  return Status::error(StatusCode::kWrongThread,
                       "qpair '{}' (qid {}) is owned by {}; {} was called from {}. An NVMe queue pair has exactly "
                       "one driver thread: send the request to the owner instead",
                       options_.name, qid_, owner_label_, what, current_thread_label());
}

Status QueuePair::check_submit(const char* what) const {
  if (!on_owner_thread()) [[unlikely]]
    return wrong_thread(what);
  if (state_ != State::kActive) [[unlikely]] {
    return Status::error(StatusCode::kAborted, "{}: {}", what, failure_.message());
  }
  return {};
}

Status QueuePair::queue_full() {
  ++stats_.queue_full;
  return Status::error(StatusCode::kQueueFull,
                       "qpair '{}' has all {} command ids in use ({} reserved by timed-out commands); poll and retry",
                       options_.name, tracker_count_, timed_out_);
}

Status QueuePair::check_data(IoVec data) const {
  if (data.bytes == 0) return {};
  if (data.iova % 4 != 0) {
    return Status::error(StatusCode::kInvalidArgument, "qpair '{}': buffer IOVA {:#x} is not dword aligned",
                         options_.name, data.iova);
  }
  if (data.bytes > kMaxTransferBytesLimit) {
    return Status::error(StatusCode::kInvalidArgument,
                         "qpair '{}': transfer of {} bytes exceeds the {}-byte PRP list limit", options_.name,
                         data.bytes, kMaxTransferBytesLimit);
  }
  return {};
}

void QueuePair::build_prps(Tracker& t, IoVec data) {
  SubmissionEntry& c = t.command;
  // No data: PRP1/PRP2 stay as the caller built them (Create I/O SQ/CQ carry a queue base there).
  if (data.bytes == 0) return;
  c.flags = 0;  // PSDT 0: PRPs
  c.prp1 = data.iova;
  std::uint64_t first_page_bytes = kPageBytes - (data.iova & (kPageBytes - 1));
  if (data.bytes <= first_page_bytes) {
    c.prp2 = 0;
    return;
  }
  std::uint64_t next_page = (data.iova & ~std::uint64_t{kPageBytes - 1}) + kPageBytes;
  std::uint64_t rest = data.bytes - first_page_bytes;
  if (rest <= kPageBytes) {
    c.prp2 = next_page;  // exactly two pages: PRP2 is the second page itself
    return;
  }
  auto entries = static_cast<std::uint32_t>((rest + kPageBytes - 1) / kPageBytes);
  NVMUX_ASSERT(entries <= kPrpEntriesPerPage, "qpair '{}': {} PRP entries for {} bytes exceed one list page",
               options_.name, entries, data.bytes);
  for (std::uint32_t i = 0; i < entries; ++i) t.prp_list[i] = next_page + std::uint64_t{i} * kPageBytes;
  c.prp2 = t.prp_list_iova;
}

void QueuePair::write_sq_entry(Tracker& t, std::uint16_t cid) {
  auto n = static_cast<std::uint32_t>(sq_.size());
  std::uint32_t used = (sq_tail_ + n - sq_head_) % n;
  // Every entry in the SQ belongs to a distinct command id that is not free, and there are n - 1 ids.
  NVMUX_ASSERT(used < n - 1, "qpair '{}': SQ overrun (tail {} head {} of {} slots, {} ids in use)", options_.name,
               sq_tail_, sq_head_, n, stats_.depth);
  t.command.cid = cid;
  sq_[sq_tail_] = t.command;  // published to the device by the release store of the tail doorbell
  if (++sq_tail_ == n) sq_tail_ = 0;
  if (options_.delayed_doorbell) {
    sq_doorbell_pending_ = true;
  } else {
    ring_sq_doorbell();
  }
}

void QueuePair::ring_sq_doorbell() {
  sq_doorbell_->store(sq_tail_, std::memory_order_release);  // the SQ entries before the tail that names them
  ++stats_.sq_doorbell_writes;
  sq_doorbell_pending_ = false;
}

void QueuePair::ring_cq_doorbell() {
  cq_doorbell_->store(cq_head_, std::memory_order_release);  // our reads of the CQ slots before the device reuses them
  ++stats_.cq_doorbell_writes;
}

void QueuePair::list_push_back(std::uint16_t cid) {
  Tracker& t = trackers_[cid];
  t.prev = list_tail_;
  t.next = kNil;
  if (list_tail_ != kNil) {
    trackers_[list_tail_].next = cid;
  } else {
    list_head_ = cid;
  }
  list_tail_ = cid;
}

void QueuePair::list_remove(std::uint16_t cid) {
  Tracker& t = trackers_[cid];
  if (t.prev != kNil) {
    trackers_[t.prev].next = t.next;
  } else {
    list_head_ = t.next;
  }
  if (t.next != kNil) {
    trackers_[t.next].prev = t.prev;
  } else {
    list_tail_ = t.prev;
  }
  t.prev = t.next = kNil;
}

void QueuePair::start(const SubmissionEntry& command, IoVec data, std::span<const std::byte> payload, IoCallback cb,
                      void* ctx) {
  NVMUX_ASSERT(free_count_ > 0, "qpair '{}': start() without a free command id", options_.name);
  std::uint16_t cid = free_ids_[free_head_];
  if (++free_head_ == tracker_count_) free_head_ = 0;
  --free_count_;
  Tracker& t = trackers_[cid];
  NVMUX_ASSERT(t.state == TrackerState::kFree, "qpair '{}': free list holds cid {} which is in use", options_.name,
               cid);
  t.command = command;
  if (!payload.empty()) {
    std::memcpy(t.prp_list, payload.data(), payload.size());
    t.command.flags = 0;
    t.command.prp1 = t.prp_list_iova;
    t.command.prp2 = 0;
  } else {
    build_prps(t, data);
  }
  t.cb = cb;
  t.ctx = ctx;
  t.attempts = 1;
  t.state = TrackerState::kOutstanding;
  if (options_.timeout_us != 0) t.deadline_ns = now_ns() + options_.timeout_us * 1000;
  list_push_back(cid);
  if (++stats_.depth > stats_.max_depth) stats_.max_depth = stats_.depth;
  ++stats_.submitted;
  write_sq_entry(t, cid);
}

Status QueuePair::submit_io(std::uint8_t opcode, std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks,
                            IoVec buffer, IoCallback cb, void* ctx) {
  const char* what = opcode == static_cast<std::uint8_t>(NvmOpcode::kRead) ? "read" : "write";
  NVMUX_RETURN_IF_ERROR(check_submit(what));
  if (nsid == 0 || nsid > namespaces_.size()) [[unlikely]] {
    return Status::error(StatusCode::kInvalidArgument, "qpair '{}' {}: namespace {} does not exist ({} namespaces)",
                         options_.name, what, nsid, namespaces_.size());
  }
  const NamespaceInfo& ns = namespaces_[nsid - 1];
  if (blocks == 0 || blocks > kMaxBlocksPerCommand || std::uint64_t{blocks} * ns.block_size != buffer.bytes ||
      buffer.bytes > max_transfer_bytes_) [[unlikely]] {
    return Status::error(StatusCode::kInvalidArgument,
                         "qpair '{}' {}: {} blocks of {} bytes with a {}-byte buffer (blocks 1..{}, buffer = blocks "
                         "x block size, at most {} bytes)",
                         options_.name, what, blocks, ns.block_size, buffer.bytes, kMaxBlocksPerCommand,
                         max_transfer_bytes_);
  }
  NVMUX_RETURN_IF_ERROR(check_data(buffer));
  if (free_count_ == 0) [[unlikely]]
    return queue_full();
  SubmissionEntry c{};
  c.opcode = opcode;
  c.nsid = nsid;
  c.cdw10 = static_cast<std::uint32_t>(lba);
  c.cdw11 = static_cast<std::uint32_t>(lba >> 32);
  c.cdw12 = (blocks - 1) & kCdw12NlbMask;
  start(c, buffer, {}, cb, ctx);
  return {};
}

Status QueuePair::read(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, IoVec buffer, IoCallback cb,
                       void* ctx) {
  return submit_io(static_cast<std::uint8_t>(NvmOpcode::kRead), nsid, lba, blocks, buffer, cb, ctx);
}

Status QueuePair::write(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, IoVec buffer, IoCallback cb,
                        void* ctx) {
  return submit_io(static_cast<std::uint8_t>(NvmOpcode::kWrite), nsid, lba, blocks, buffer, cb, ctx);
}

Status QueuePair::flush(std::uint32_t nsid, IoCallback cb, void* ctx) {
  NVMUX_RETURN_IF_ERROR(check_submit("flush"));
  if (nsid != kAllNamespaces && (nsid == 0 || nsid > namespaces_.size())) {
    return Status::error(StatusCode::kInvalidArgument, "qpair '{}' flush: namespace {} does not exist", options_.name,
                         nsid);
  }
  if (free_count_ == 0) return queue_full();
  SubmissionEntry c{};
  c.opcode = static_cast<std::uint8_t>(NvmOpcode::kFlush);
  c.nsid = nsid;
  start(c, {}, {}, cb, ctx);
  return {};
}

Status QueuePair::write_zeroes(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, IoCallback cb, void* ctx) {
  NVMUX_RETURN_IF_ERROR(check_submit("write_zeroes"));
  if (nsid == 0 || nsid > namespaces_.size() || blocks == 0 || blocks > kMaxBlocksPerCommand) {
    return Status::error(StatusCode::kInvalidArgument,
                         "qpair '{}' write_zeroes: namespace {} ({} exist), {} blocks (1..{})", options_.name, nsid,
                         namespaces_.size(), blocks, kMaxBlocksPerCommand);
  }
  if (free_count_ == 0) return queue_full();
  SubmissionEntry c{};
  c.opcode = static_cast<std::uint8_t>(NvmOpcode::kWriteZeroes);
  c.nsid = nsid;
  c.cdw10 = static_cast<std::uint32_t>(lba);
  c.cdw11 = static_cast<std::uint32_t>(lba >> 32);
  c.cdw12 = (blocks - 1) & kCdw12NlbMask;
  start(c, {}, {}, cb, ctx);
  return {};
}

Status QueuePair::deallocate(std::uint32_t nsid, std::span<const DsmRange> ranges, IoCallback cb, void* ctx) {
  NVMUX_RETURN_IF_ERROR(check_submit("deallocate"));
  if (nsid == 0 || nsid > namespaces_.size() || ranges.empty() || ranges.size() > kMaxDsmRanges) {
    return Status::error(StatusCode::kInvalidArgument,
                         "qpair '{}' deallocate: namespace {} ({} exist), {} ranges (1..{})", options_.name, nsid,
                         namespaces_.size(), ranges.size(), kMaxDsmRanges);
  }
  if (free_count_ == 0) return queue_full();
  SubmissionEntry c{};
  c.opcode = static_cast<std::uint8_t>(NvmOpcode::kDatasetManagement);
  c.nsid = nsid;
  c.cdw10 = static_cast<std::uint32_t>(ranges.size() - 1);
  c.cdw11 = kDsmAttrDeallocate;
  start(c, {}, std::as_bytes(ranges), cb, ctx);
  return {};
}

Status QueuePair::submit_raw(const SubmissionEntry& command, IoVec data, IoCallback cb, void* ctx) {
  NVMUX_RETURN_IF_ERROR(check_submit("submit_raw"));
  NVMUX_RETURN_IF_ERROR(check_data(data));
  if (free_count_ == 0) return queue_full();
  start(command, data, {}, cb, ctx);
  return {};
}

void QueuePair::release(std::uint16_t cid) {
  Tracker& t = trackers_[cid];
  if (t.state == TrackerState::kTimedOut) --timed_out_;
  t.state = TrackerState::kFree;
  t.cb = nullptr;
  t.ctx = nullptr;
  std::uint32_t slot = free_head_ + free_count_;
  if (slot >= tracker_count_) slot -= tracker_count_;
  free_ids_[slot] = cid;
  ++free_count_;
  NVMUX_ASSERT(free_count_ <= tracker_count_ && stats_.depth > 0, "qpair '{}': released cid {} twice", options_.name,
               cid);
  --stats_.depth;
}

void QueuePair::complete(std::uint16_t cid, IoCompletion& completion) {
  Tracker& t = trackers_[cid];
  IoCallback cb = t.cb;
  void* ctx = t.ctx;
  completion.cid = cid;
  completion.attempts = t.attempts;
  list_remove(cid);
  release(cid);  // before the callback, which may submit and reuse ids
  ++stats_.completed;
  if (cb != nullptr) cb(ctx, completion);
}

void QueuePair::expire_timeouts() {
  std::uint64_t now = now_ns();
  while (list_head_ != kNil && trackers_[list_head_].deadline_ns <= now) {
    std::uint16_t cid = list_head_;
    Tracker& t = trackers_[cid];
    list_remove(cid);
    t.state = TrackerState::kTimedOut;  // the id stays reserved until the device answers or reset()
    ++timed_out_;
    ++stats_.timeouts;
    ++stats_.completed;
    IoCompletion completion;
    completion.status = Status::error(StatusCode::kTimeout,
                                      "qpair '{}' cid {} (opcode {:#04x}) got no completion within {} us; its id stays "
                                      "reserved until the device answers or the qpair is reset",
                                      options_.name, cid, t.command.opcode, options_.timeout_us);
    completion.cid = cid;
    completion.attempts = t.attempts;
    IoCallback cb = t.cb;
    void* ctx = t.ctx;
    t.cb = nullptr;
    if (cb != nullptr) cb(ctx, completion);
  }
}

void QueuePair::abort_all(const char* why) {
  for (std::uint32_t i = 0; i < tracker_count_; ++i) {
    auto cid = static_cast<std::uint16_t>(i);
    Tracker& t = trackers_[cid];
    if (t.state == TrackerState::kTimedOut) {
      release(cid);
    } else if (t.state == TrackerState::kOutstanding) {
      IoCompletion completion;
      completion.status = Status::error(StatusCode::kAborted, "qpair '{}' cid {} aborted: {}", options_.name, cid, why);
      ++stats_.aborted;
      complete(cid, completion);
    }
  }
}

void QueuePair::fail(std::string diagnostic) {
  state_ = State::kFailed;
  failure_ = Status(StatusCode::kAborted, std::move(diagnostic));
  NVMUX_LOG_ERROR("{}", failure_.message());
  abort_all(failure_.message().c_str());
}

// Reads the completion entry at the CQ head into `cqe` and moves the head past it; false when the
// device has not written one there yet (its phase tag is the old one).
inline bool QueuePair::take_cqe(CompletionEntry& cqe, std::uint32_t cq_size) {
  const std::uint32_t head = cq_head_;
  const bool phase = phase_;
  CompletionEntry& slot = cq_[head];
  // Acquire: the device writes the status word (with the phase tag) last, with release.
  std::uint16_t status = std::atomic_ref<std::uint16_t>(slot.status).load(std::memory_order_acquire);
  if (((status & 1u) != 0) != phase) return false;
  cqe.cdw0 = slot.cdw0;
  cqe.cdw1 = slot.cdw1;
  cqe.sq_head = slot.sq_head;
  cqe.sq_id = slot.sq_id;
  cqe.cid = slot.cid;
  cqe.status = status;
  if (options_.test_after_cqe_read != nullptr) options_.test_after_cqe_read(options_.test_hook_arg);

  cq_head_ = head + 1;
  if (cq_head_ == cq_size) {
    cq_head_ = 0;
    phase_ = !phase;
  }
  return true;
}

inline bool QueuePair::maps_to_outstanding(const CompletionEntry& cqe) const {
  const bool cid_ok = cqe.cid < tracker_count_ && trackers_[cqe.cid].state != TrackerState::kFree;
  return cid_ok && cqe.sq_id == qid_ && cqe.sq_head < sq_.size();
}

// `cqe`, read from CQ slot `head` with phase tag `phase`, names no outstanding command: the queue
// is not ours alone, or the device is broken. Fails the qpair.
void QueuePair::fail_unmapped_completion(const CompletionEntry& cqe, std::uint32_t head, bool phase) {
  fail(
      fmt::format("qpair '{}' (qid {}) failed: completion does not map to an outstanding command: cid {} ({}), "
                  "sq id {}, SQ head {}, CQ slot {}, phase {}, {} commands outstanding of {}. Another driver is "
                  "using this queue, or the device is broken; every outstanding command is aborted",
                  options_.name, qid_, cqe.cid, cqe.cid >= tracker_count_ ? "out of range" : "not outstanding",
                  cqe.sq_id, cqe.sq_head, head, phase ? 1 : 0, stats_.depth, tracker_count_));
}

// Hands the device's answer to the command it names: a late answer to a timed-out command frees its
// id; a failure that may be retried goes to the device again; anything else completes the command.
// Returns whether the command completed (its callback ran).
inline bool QueuePair::finish_command(const CompletionEntry& cqe) {
  Tracker& t = trackers_[cqe.cid];
  if (t.state == TrackerState::kTimedOut) {
    ++stats_.late_completions;
    release(cqe.cid);
    return false;
  }
  IoCompletion completion;
  completion.cqe = cqe;
  if (!cqe.success()) [[unlikely]] {
    if (!cqe.dnr() && t.attempts <= options_.max_retries) {
      retry(t, cqe.cid);
      return false;
    }
    completion.status = count_device_error(t, cqe);
  }
  complete(cqe.cid, completion);
  return true;
}

// Writes command `cid` into the SQ again, at the back of the outstanding list with a new deadline.
void QueuePair::retry(Tracker& t, std::uint16_t cid) {
  ++t.attempts;
  ++stats_.retries;
  list_remove(cid);
  list_push_back(cid);
  if (options_.timeout_us != 0) t.deadline_ns = now_ns() + options_.timeout_us * 1000;
  write_sq_entry(t, cid);
}

// Counts a failure the command gets no more retries for; returns the status its callback sees.
Status QueuePair::count_device_error(const Tracker& t, const CompletionEntry& cqe) {
  ++stats_.device_errors;
  ++stats_.errors_by_status[static_cast<std::uint16_t>((cqe.sct() << 8) | cqe.sc())];
  return Status::error(StatusCode::kIoError,
                       "qpair '{}' cid {} opcode {:#04x} failed after {} "
                       "attempt(s): {}{}",
                       options_.name, cqe.cid, t.command.opcode, t.attempts, describe_status(cqe.sct(), cqe.sc()),
                       cqe.dnr() ? ", do not retry" : "");
}

Result<std::uint32_t> QueuePair::process_completions(std::uint32_t max) {
  if (!on_owner_thread()) [[unlikely]]
    return wrong_thread("process_completions");
  if (state_ != State::kActive) [[unlikely]]
    return failure_;
  if (sq_doorbell_pending_) ring_sq_doorbell();
  if (!transport_->poll()) [[unlikely]] {
    fail(fmt::format("qpair '{}' (qid {}) failed: {}; every outstanding command is aborted", options_.name, qid_,
                     transport_->device_failure()));
    return failure_;
  }

  const auto cq_size = static_cast<std::uint32_t>(cq_.size());
  const std::uint32_t limit = max == 0 ? UINT32_MAX : max;
  std::uint32_t reaped = 0;
  while (reaped < limit) {
    const std::uint32_t head = cq_head_;  // where take_cqe reads, for the diagnostic below
    const bool phase = phase_;
    CompletionEntry cqe;
    if (!take_cqe(cqe, cq_size)) break;
    ++reaped;
    if (!options_.delayed_doorbell) ring_cq_doorbell();
    if (!maps_to_outstanding(cqe)) [[unlikely]] {
      fail_unmapped_completion(cqe, head, phase);
      return failure_;
    }
    sq_head_ = cqe.sq_head;
    if (!finish_command(cqe)) continue;           // a late answer, or a retry
    if (state_ != State::kActive) return reaped;  // a callback reset the qpair
  }
  if (reaped != 0 && options_.delayed_doorbell) ring_cq_doorbell();
  if (options_.timeout_us != 0 && list_head_ != kNil) expire_timeouts();
  if (sq_doorbell_pending_) ring_sq_doorbell();
  return reaped;
}

Status QueuePair::reset() {
  if (!on_owner_thread()) return wrong_thread("reset");
  state_ = State::kFailed;  // refuse submissions from the abort callbacks
  failure_ = Status::error(StatusCode::kAborted, "qpair '{}' is being reset", options_.name);
  abort_all("the qpair was reset");
  NVMUX_RETURN_IF_ERROR(transport_->reset());
  sq_tail_ = sq_head_ = cq_head_ = 0;
  phase_ = true;
  sq_doorbell_pending_ = false;
  list_head_ = list_tail_ = kNil;
  free_head_ = 0;
  free_count_ = tracker_count_;
  for (std::uint32_t i = 0; i < tracker_count_; ++i) free_ids_[i] = static_cast<std::uint16_t>(i);
  NVMUX_ASSERT(stats_.depth == 0 && timed_out_ == 0, "qpair '{}' reset left {} ids in use", options_.name,
               stats_.depth);
  state_ = State::kActive;
  failure_ = Status();
  return {};
}

}  // namespace nvmux::nvme
