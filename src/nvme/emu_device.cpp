#include "emu_device.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "identify.hpp"
#include "nvmux/common/counter.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"
#include "prp.hpp"

namespace nvmux::nvme {

namespace {

constexpr std::uint16_t kDnr = 1;  // every error the emu device returns is final
constexpr std::uint32_t kIdentifyBytes = 4096;
constexpr std::uint64_t kUntimed = UINT64_MAX;  // step() without a clock read: everything is due

std::uint16_t st(GenericStatus sc) { return make_status(sc, sc != GenericStatus::kSuccess && kDnr); }
std::uint16_t st(CommandSpecificStatus sc) { return make_status(sc, kDnr); }
constexpr std::uint16_t kOk = 0;

}  // namespace

// ---------------------------------------------------------------------------------------------
// NamespaceStore
// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<NamespaceStore>> NamespaceStore::open(const NamespaceSpec& spec) {
  if (spec.block_size != 512 && spec.block_size != 4096) {
    return Status::error(StatusCode::kInvalidArgument, "namespace block size {} is not 512 or 4096", spec.block_size);
  }
  if (spec.blocks == 0 || spec.blocks > (std::uint64_t{1} << 40) / spec.block_size) {
    return Status::error(StatusCode::kInvalidArgument, "namespace of {} blocks is empty or above 1 TiB", spec.blocks);
  }
  std::unique_ptr<NamespaceStore> ns(new NamespaceStore());
  ns->blocks_ = spec.blocks;
  ns->block_size_ = spec.block_size;
  ns->bytes_ = static_cast<std::size_t>(spec.blocks * spec.block_size);
  switch (spec.backing) {
    case NamespaceBacking::kNull: return ns;
    case NamespaceBacking::kRam: {
      void* p = ::mmap(nullptr, ns->bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) return Status::from_errno(errno, fmt::format("mmap of a {}-byte namespace", ns->bytes_));
      ns->data_ = static_cast<std::byte*>(p);
      return ns;
    }
    case NamespaceBacking::kFile: NVMUX_RETURN_IF_ERROR(ns->open_file(spec)); return ns;
  }
  return Status::error(StatusCode::kInvalidArgument, "unknown namespace backing");
}

// Opens (or creates) the file and allocates its space: a full filesystem is an error here, not a
// failed write later. A regular file shorter than the namespace grows; a block device must be
// large enough already.
Status NamespaceStore::open_file(const NamespaceSpec& spec) {
  if (spec.path.empty()) return Status::error(StatusCode::kInvalidArgument, "file-backed namespace without a path");
  path_ = spec.path;
  struct stat sb {};
  if (::stat(spec.path.c_str(), &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISBLK(sb.st_mode)) {
    return Status::error(StatusCode::kInvalidArgument, "{}: {}, not a regular file or block device", spec.path,
                         S_ISDIR(sb.st_mode) ? "a directory" : "a special file");
  }
  fd_ = ::open(spec.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) return Status::from_errno(errno, fmt::format("open {}", spec.path));
  if (::fstat(fd_, &sb) != 0) return Status::from_errno(errno, fmt::format("fstat {}", spec.path));
  if (S_ISBLK(sb.st_mode)) return {};
  // posix_fallocate returns the error instead of setting errno. Over a file already allocated it
  // allocates nothing; over holes (a sparse file) it fills them, so no later write can fail for space.
  if (int rc = ::posix_fallocate(fd_, 0, static_cast<off_t>(bytes_)); rc != 0) {
    if (rc == ENOSPC || rc == EDQUOT) {
      return Status::from_errno(
          rc, fmt::format("{}: no room for the namespace's {} bytes on its filesystem", spec.path, bytes_));
    }
    return Status::from_errno(rc, fmt::format("allocating {} bytes for {}", bytes_, spec.path));
  }
  return {};
}

NamespaceStore::~NamespaceStore() {
  if (data_ != nullptr) ::munmap(data_, bytes_);
  if (fd_ >= 0) {
    ::fdatasync(fd_);
    ::close(fd_);
  }
}

int NamespaceStore::file_io(bool read, std::uint64_t offset, const struct iovec* iov, int iov_count,
                            std::size_t bytes) {
  std::vector<struct iovec> rest;  // only after a short transfer: the part still to move
  while (bytes > 0) {
    ssize_t n = read ? ::preadv(fd_, iov, iov_count, static_cast<off_t>(offset))
                     : ::pwritev(fd_, iov, iov_count, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;  // the file ends before the namespace does: it shrank underneath us
    auto done = static_cast<std::size_t>(n);
    bytes -= std::min(done, bytes);
    offset += done;
    if (bytes == 0) break;
    rest.assign(iov, iov + iov_count);
    std::size_t i = 0;
    for (; i < rest.size() && done >= rest[i].iov_len; ++i) done -= rest[i].iov_len;
    rest[i].iov_base = static_cast<std::byte*>(rest[i].iov_base) + done;
    rest[i].iov_len -= done;
    rest.erase(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(i));
    iov = rest.data();
    iov_count = static_cast<int>(rest.size());
  }
  return 0;
}

int NamespaceStore::file_zero(std::uint64_t offset, std::size_t bytes) {
  if (::fallocate(fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(bytes)) == 0) {
    return 0;
  }
  static const std::vector<std::byte> kZeroes(std::size_t{1} << 20);
  while (bytes > 0) {  // a filesystem without ZERO_RANGE: write them
    std::size_t len = std::min(bytes, kZeroes.size());
    struct iovec v {
      const_cast<std::byte*>(kZeroes.data()), len
    };
    if (int err = file_io(false, offset, &v, 1, len); err != 0) return err;
    offset += len;
    bytes -= len;
  }
  return 0;
}

bool NamespaceStore::sync() { return fd_ < 0 || ::fdatasync(fd_) == 0; }

// ---------------------------------------------------------------------------------------------
// EmuDevice
// ---------------------------------------------------------------------------------------------

EmuDevice::EmuDevice(Config config, std::shared_ptr<DmaArena> arena,
                     std::vector<std::unique_ptr<NamespaceStore>> namespaces)
    : config_(std::move(config)), arena_(std::move(arena)), namespaces_(std::move(namespaces)),
      // MQES (15:0, 0's based), CQR (16) = contiguous queues required, TO (31:24) in 500 ms units,
      // DSTRD (35:32), MPSMIN = MPSMAX = 0 (4 KiB pages).
      cap_(std::uint64_t{config_.max_queue_entries - 1} | (std::uint64_t{1} << 16) | (std::uint64_t{20} << 24) |
           (std::uint64_t{kDoorbellStrideShift} << 32)),
      doorbells_(new DoorbellLine[std::size_t{2} * (config_.max_io_queues + 1u)]), sqs_(config_.max_io_queues + 1u),
      cqs_(config_.max_io_queues + 1u), granted_sqs_(config_.max_io_queues), granted_cqs_(config_.max_io_queues),
      scratch_(kIdentifyBytes) {}

std::uint64_t EmuDevice::now() const { return config_.clock ? config_.clock() : monotonic_ns(); }

EmuDeviceStats EmuDevice::stats() const {
  EmuDeviceStats s;
  s.commands = commands_.load(std::memory_order_relaxed);
  s.admin_commands = admin_commands_.load(std::memory_order_relaxed);
  s.completions_posted = completions_posted_.load(std::memory_order_relaxed);
  s.cq_full_stalls = cq_full_stalls_.load(std::memory_order_relaxed);
  s.faults_injected = faults_injected_.load(std::memory_order_relaxed);
  s.invalid_doorbell_writes = invalid_doorbell_writes_.load(std::memory_order_relaxed);
  s.bytes_read = bytes_read_.load(std::memory_order_relaxed);
  s.bytes_written = bytes_written_.load(std::memory_order_relaxed);
  return s;
}

void EmuDevice::inject_fault(const FaultRule& rule) {
  std::lock_guard lock(fault_mutex_);
  faults_.push_back(ActiveFault{rule, rule.skip, rule.count, false});
  has_faults_.store(true, std::memory_order_release);  // the rule list before the flag the device checks
}

void EmuDevice::clear_faults() {
  std::lock_guard lock(fault_mutex_);
  faults_.clear();
  has_faults_.store(false, std::memory_order_relaxed);  // the mutex orders the list itself
}

std::optional<FaultRule> EmuDevice::match_fault(std::uint16_t qid, std::uint8_t opcode) {
  if (!has_faults_.load(std::memory_order_acquire)) return std::nullopt;  // pairs with inject_fault
  std::lock_guard lock(fault_mutex_);
  for (ActiveFault& f : faults_) {
    if (f.exhausted) continue;
    bool queue_match = f.rule.qid == FaultRule::kAnyIoQueue ? qid != 0 : f.rule.qid == qid;
    if (!queue_match || (f.rule.opcode != FaultRule::kAnyOpcode && f.rule.opcode != opcode)) continue;
    if (f.skip_left > 0) {
      --f.skip_left;
      continue;
    }
    if (f.rule.count != 0 && --f.hits_left == 0) f.exhausted = true;
    single_writer_add(faults_injected_, 1);
    return f.rule;
  }
  return std::nullopt;
}

bool EmuDevice::any_io_queue() const {
  for (std::size_t q = 1; q < sqs_.size(); ++q) {
    if (sqs_[q].exists || cqs_[q].exists) return true;
  }
  return false;
}

void EmuDevice::enable() {
  std::uint32_t aqa = aqa_.load(std::memory_order_relaxed);
  std::uint32_t sq_entries = (aqa & 0xfffu) + 1;
  std::uint32_t cq_entries = ((aqa >> 16) & 0xfffu) + 1;
  std::uint64_t asq = asq_.load(std::memory_order_relaxed);
  std::uint64_t acq = acq_.load(std::memory_order_relaxed);
  auto* sq = reinterpret_cast<const SubmissionEntry*>(arena_->translate(asq, std::size_t{sq_entries} * 64));
  auto* cq = reinterpret_cast<CompletionEntry*>(arena_->translate(acq, std::size_t{cq_entries} * 16));
  if (sq_entries < 2 || cq_entries < 2 || sq == nullptr || cq == nullptr || asq % kPageBytes != 0 ||
      acq % kPageBytes != 0) {
    csts_.store(kCstsFatal, std::memory_order_release);  // the driver sees a fatal status, not a hang
    return;
  }
  sqs_[0] = Sq{true, sq_entries, sq, 0, 0};
  cqs_[0] = Cq{};
  cqs_[0].exists = true;
  cqs_[0].entries = cq_entries;
  cqs_[0].base = cq;
  cqs_[0].sq_refs = 1;
  sq_tail_doorbell(0).store(0, std::memory_order_relaxed);
  cq_head_doorbell(0).store(0, std::memory_order_relaxed);
  granted_sqs_ = granted_cqs_ = config_.max_io_queues;
  ready_ = true;
  csts_.store(kCstsReady, std::memory_order_release);  // queue state set before the driver sees RDY
}

void EmuDevice::disable() {
  for (auto& q : sqs_) q = Sq{};
  for (auto& q : cqs_) q = Cq{};
  delayed_pending_ = 0;
  ready_ = false;
  csts_.store(0, std::memory_order_release);  // the device stopped touching queue memory
}

std::size_t EmuDevice::step(std::size_t max_commands) {
  std::lock_guard lock(step_mutex_);
  bool enabled = (cc_.load(std::memory_order_acquire) & kCcEnable) != 0;  // pairs with write_cc
  if (enabled && !ready_ && (csts_.load(std::memory_order_relaxed) & kCstsFatal) == 0) enable();
  if (!enabled && (ready_ || csts_.load(std::memory_order_relaxed) != 0)) disable();
  // A controller in fatal status does nothing until the driver disables it (CC.EN = 0).
  if (!ready_ || (csts_.load(std::memory_order_relaxed) & kCstsFatal) != 0) return 0;
  // Time matters only for the latency model and delayed completions; skip the clock otherwise:
  // "now" is then the end of time, so everything already queued is due (kUntimed).
  bool timed = config_.latency_us != 0 || delayed_pending_ != 0 || has_faults_.load(std::memory_order_relaxed);
  std::uint64_t t = timed ? now() : kUntimed;
  std::size_t work = post(t);
  for (std::size_t q = 0; q < sqs_.size(); ++q) {
    if (sqs_[q].exists) work += fetch(static_cast<std::uint16_t>(q), max_commands, t);
    if ((csts_.load(std::memory_order_relaxed) & kCstsFatal) != 0) return work;  // a kControllerFatal fault
  }
  work += post(t);
  return work;
}

std::size_t EmuDevice::fetch(std::uint16_t qid, std::size_t max_commands, std::uint64_t t) {
  Sq& sq = sqs_[qid];
  // Acquire: the driver wrote the entries before it released the tail.
  std::uint32_t tail = sq_tail_doorbell(qid).load(std::memory_order_acquire);
  if (tail >= sq.entries) {
    single_writer_add(invalid_doorbell_writes_, 1);
    return 0;
  }
  std::size_t n = 0;
  while (sq.exists && sq.head != tail && n < max_commands) {
    Cq& cq = cqs_[sq.cqid];
    // A bounded device: it holds at most one CQ's worth of finished commands internally.
    if (cq.fifo.size() + cq.delayed.size() >= cq.entries) break;
    SubmissionEntry cmd = sq.base[sq.head];
    if (++sq.head == sq.entries) sq.head = 0;
    std::uint16_t sq_head = static_cast<std::uint16_t>(sq.head);
    ++n;
    single_writer_add(commands_, 1);
    std::optional<FaultRule> fault = match_fault(qid, cmd.opcode);
    if (fault && fault->kind == FaultRule::Kind::kControllerFatal) {
      csts_.store(kCstsReady | kCstsFatal, std::memory_order_release);  // the driver's health check sees it
      return n;
    }
    std::uint32_t cdw0 = 0;
    std::uint16_t status;
    if (fault && fault->kind == FaultRule::Kind::kStatus) {
      status = static_cast<std::uint16_t>(fault->status & ~1u);
    } else if (qid == 0) {
      status = execute_admin(cmd, cdw0);
    } else {
      status = execute_io(cmd, cdw0);
    }
    CompletionEntry cqe{};
    cqe.cdw0 = cdw0;
    cqe.sq_head = sq_head;
    cqe.sq_id = qid;
    cqe.cid = cmd.cid;
    cqe.status = status;
    std::uint64_t due = t == kUntimed ? 0 : t + (qid != 0 ? std::uint64_t{config_.latency_us} * 1000 : 0);
    if (fault && fault->kind == FaultRule::Kind::kBadCid) cqe.cid = fault->bad_cid;
    if (fault && fault->kind == FaultRule::Kind::kDrop) continue;
    if (fault && fault->kind == FaultRule::Kind::kDelay) {
      cq.delayed.push_back(Pending{cqe, due + fault->delay_us * 1000});
      ++delayed_pending_;
      continue;
    }
    cq.fifo.push_back(Pending{cqe, due});
    if (fault && fault->kind == FaultRule::Kind::kDuplicate) cq.fifo.push_back(Pending{cqe, due});
  }
  return n;
}

std::size_t EmuDevice::post(std::uint64_t t) {
  std::size_t posted = 0;
  for (std::size_t q = 0; q < cqs_.size(); ++q) {
    Cq& cq = cqs_[q];
    if (!cq.exists || (cq.fifo.empty() && cq.delayed.empty())) continue;
    // Acquire: the driver finished reading the slots before it released the head.
    std::uint32_t head = cq_head_doorbell(static_cast<std::uint16_t>(q)).load(std::memory_order_acquire);
    if (head >= cq.entries) {
      single_writer_add(invalid_doorbell_writes_, 1);
      continue;
    }
    while (true) {
      const Pending* next = nullptr;
      auto delayed_it =
          std::find_if(cq.delayed.begin(), cq.delayed.end(), [t](const Pending& p) { return p.due_ns <= t; });
      if (delayed_it != cq.delayed.end()) {
        next = &*delayed_it;
      } else if (!cq.fifo.empty() && cq.fifo.front().due_ns <= t) {
        next = &cq.fifo.front();
      } else {
        break;
      }
      std::uint32_t next_tail = cq.tail + 1 == cq.entries ? 0 : cq.tail + 1;
      if (next_tail == head) {  // full: one slot always stays empty
        single_writer_add(cq_full_stalls_, 1);
        break;
      }
      CompletionEntry& slot = cq.base[cq.tail];
      slot.cdw0 = next->cqe.cdw0;
      slot.cdw1 = 0;
      slot.sq_head = next->cqe.sq_head;
      slot.sq_id = next->cqe.sq_id;
      slot.cid = next->cqe.cid;
      std::uint16_t status = static_cast<std::uint16_t>((next->cqe.status & ~1u) | (cq.phase ? 1u : 0u));
      // Release: the entry's other fields (and any data we wrote to host memory) before the phase.
      std::atomic_ref<std::uint16_t>(slot.status).store(status, std::memory_order_release);
      cq.tail = next_tail;
      if (cq.tail == 0) cq.phase = !cq.phase;
      if (delayed_it != cq.delayed.end()) {
        cq.delayed.erase(delayed_it);
        --delayed_pending_;
      } else {
        cq.fifo.pop_front();
      }
      ++posted;
    }
  }
  single_writer_add(completions_posted_, posted);
  return posted;
}

std::uint16_t EmuDevice::transfer(std::uint64_t prp1, std::uint64_t prp2, std::size_t bytes, std::byte* media,
                                  bool to_host) {
  return walk_prps(*arena_, prp1, prp2, bytes, [&](std::byte* host, std::size_t len) {
    if (to_host) {
      std::memcpy(host, media, len);
    } else {
      std::memcpy(media, host, len);
    }
    media += len;
  });
}

// A failed file read or write: the errno goes to the completion's CDW0 (as the uring backend
// does) for the driver's diagnostics, and the first one per namespace to the log with its path,
// since a status code alone cannot say "the file was truncated by someone else".
std::uint16_t EmuDevice::file_error(NamespaceStore& ns, std::uint32_t nsid, const char* what, std::uint64_t slba,
                                    int err, std::uint32_t& cdw0) {
  cdw0 = static_cast<std::uint32_t>(err);
  if (!ns.error_logged) {
    ns.error_logged = true;
    NVMUX_LOG_ERROR("emu namespace {} ({}): {} at LBA {} failed: {}{} (further errors on it are not logged)", nsid,
                    ns.path(), what, slba, std::strerror(err),
                    err == EIO ? "; the file is shorter than the namespace: truncated by another process?" : "");
  }
  if (err == ENOSPC || err == EDQUOT) return st(GenericStatus::kCapacityExceeded);
  bool is_read = std::strcmp(what, "read") == 0;
  return make_status(is_read ? MediaStatus::kUnrecoveredReadError : MediaStatus::kWriteFault, kDnr);
}

// Read or Write on a file namespace: the PRP pieces become one preadv/pwritev.
std::uint16_t EmuDevice::transfer_file(const SubmissionEntry& c, NamespaceStore& ns, std::uint64_t slba,
                                       std::size_t bytes, bool read, std::uint32_t& cdw0) {
  iov_scratch_.clear();
  std::uint16_t s = walk_prps(*arena_, c.prp1, c.prp2, bytes, [&](std::byte* host, std::size_t len) {
    if (!iov_scratch_.empty() &&
        static_cast<std::byte*>(iov_scratch_.back().iov_base) + iov_scratch_.back().iov_len == host) {
      iov_scratch_.back().iov_len += len;  // contiguous pieces: one iovec
    } else {
      iov_scratch_.push_back(iovec{host, len});
    }
  });
  if (s != kOk) return s;
  int err = ns.file_io(read, slba * ns.block_size(), iov_scratch_.data(), static_cast<int>(iov_scratch_.size()), bytes);
  return err == 0 ? kOk : file_error(ns, c.nsid, read ? "read" : "write", slba, err, cdw0);
}

// Write Zeroes and deallocated ranges: zeroes over blocks [slba, slba + nlb).
std::uint16_t EmuDevice::zero_blocks(const SubmissionEntry& c, NamespaceStore& ns, std::uint64_t slba,
                                     std::uint64_t nlb, std::uint32_t& cdw0) {
  if (ns.is_file()) {
    int err = ns.file_zero(slba * ns.block_size(), nlb * ns.block_size());
    return err == 0 ? kOk : file_error(ns, c.nsid, "write zeroes", slba, err, cdw0);
  }
  if (!ns.is_null()) std::memset(ns.data() + slba * ns.block_size(), 0, nlb * ns.block_size());
  return kOk;
}

std::uint16_t EmuDevice::execute_io(const SubmissionEntry& c, std::uint32_t& cdw0) {
  auto opcode = static_cast<NvmOpcode>(c.opcode);
  if (c.nsid == kAllNamespaces && opcode == NvmOpcode::kFlush) {
    for (const auto& ns : namespaces_) {
      if (!ns->sync()) return st(GenericStatus::kInternalDeviceError);
    }
    return kOk;
  }
  if (c.nsid == 0 || c.nsid > namespaces_.size()) return st(GenericStatus::kInvalidNamespaceOrFormat);
  NamespaceStore& ns = *namespaces_[c.nsid - 1];
  std::uint64_t slba = c.cdw10 | (std::uint64_t{c.cdw11} << 32);
  std::uint64_t nlb = (c.cdw12 & kCdw12NlbMask) + 1u;
  auto in_range = [&](std::uint64_t lba, std::uint64_t count) {
    return lba < ns.blocks() && count <= ns.blocks() - lba;
  };
  switch (opcode) {
    case NvmOpcode::kRead:
    case NvmOpcode::kWrite: {
      if (!in_range(slba, nlb)) return st(GenericStatus::kLbaOutOfRange);
      std::size_t bytes = static_cast<std::size_t>(nlb * ns.block_size());
      if (config_.max_transfer_bytes != 0 && bytes > config_.max_transfer_bytes)
        return st(GenericStatus::kInvalidField);
      if (ns.is_null()) return kOk;
      bool read = opcode == NvmOpcode::kRead;
      std::uint16_t s = ns.is_file() ? transfer_file(c, ns, slba, bytes, read, cdw0)
                                     : transfer(c.prp1, c.prp2, bytes, ns.data() + slba * ns.block_size(), read);
      if (s == kOk) single_writer_add(read ? bytes_read_ : bytes_written_, bytes);
      return s;
    }
    case NvmOpcode::kFlush: return ns.sync() ? kOk : st(GenericStatus::kInternalDeviceError);
    case NvmOpcode::kWriteZeroes:
      if (!in_range(slba, nlb)) return st(GenericStatus::kLbaOutOfRange);
      return zero_blocks(c, ns, slba, nlb, cdw0);
    case NvmOpcode::kDatasetManagement: {
      std::uint32_t ranges = (c.cdw10 & 0xffu) + 1;
      std::uint16_t s = transfer(c.prp1, c.prp2, ranges * sizeof(DsmRange), scratch_.data(), false);
      if (s != kOk) return s;
      if ((c.cdw11 & kDsmAttrDeallocate) == 0) return kOk;  // hints only
      const auto* r = reinterpret_cast<const DsmRange*>(scratch_.data());
      for (std::uint32_t i = 0; i < ranges; ++i) {
        if (!in_range(r[i].starting_lba, r[i].lba_count)) return st(GenericStatus::kLbaOutOfRange);
      }
      // Deallocated blocks read back as zeroes (DLFEAT = 001b).
      for (std::uint32_t i = 0; i < ranges; ++i) {
        s = zero_blocks(c, ns, r[i].starting_lba, r[i].lba_count, cdw0);
        if (s != kOk) return s;
      }
      return kOk;
    }
    default: return st(GenericStatus::kInvalidOpcode);
  }
}

std::uint16_t EmuDevice::identify(const SubmissionEntry& c) {
  IdentifyPage page{scratch_.data(), kIdentifyBytes};
  switch (static_cast<IdentifyCns>(c.cdw10 & 0xffu)) {
    case IdentifyCns::kController: {
      IdentifyControllerFields fields;
      fields.vendor_id = 0x1b36;
      fields.subsystem_vendor_id = 0x1af4;
      fields.serial = "NVMUXEMU0001";
      fields.model = "nvmux emulated NVMe controller";
      fields.firmware = "0.1";
      fields.max_transfer_bytes = config_.max_transfer_bytes;
      fields.controller_id = 1;
      fields.version = kVersion2_0;
      fields.max_commands = static_cast<std::uint16_t>(config_.max_queue_entries - 1);
      fields.namespace_count = static_cast<std::uint32_t>(namespaces_.size());
      fields.oncs = kOncsDatasetManagement | kOncsWriteZeroes;
      build_identify_controller(page, fields);
      break;
    }
    case IdentifyCns::kNamespace: {
      if (c.nsid == 0 || c.nsid > namespaces_.size()) return st(GenericStatus::kInvalidNamespaceOrFormat);
      const NamespaceStore& ns = *namespaces_[c.nsid - 1];
      build_identify_namespace(page, ns.blocks(), ns.block_size());
      break;
    }
    case IdentifyCns::kActiveNamespaceList:
      build_active_namespace_list(page, c.nsid, static_cast<std::uint32_t>(namespaces_.size()));
      break;
    default: return st(GenericStatus::kInvalidField);
  }
  return transfer(c.prp1, c.prp2, kIdentifyBytes, scratch_.data(), true);
}

std::uint16_t EmuDevice::create_cq(const SubmissionEntry& c) {
  auto qid = static_cast<std::uint16_t>(c.cdw10 & 0xffffu);
  std::uint32_t entries = (c.cdw10 >> 16) + 1;
  if (qid == 0 || qid > granted_cqs_ || cqs_[qid].exists) return st(CommandSpecificStatus::kInvalidQueueIdentifier);
  if (entries < 2 || entries > config_.max_queue_entries) return st(CommandSpecificStatus::kInvalidQueueSize);
  if ((c.cdw11 & kQueuePhysicallyContiguous) == 0) return st(GenericStatus::kInvalidField);  // CAP.CQR = 1
  if (c.prp1 % kPageBytes != 0) return st(GenericStatus::kInvalidPrpOffset);
  auto* base = reinterpret_cast<CompletionEntry*>(arena_->translate(c.prp1, std::size_t{entries} * 16));
  if (base == nullptr) return st(GenericStatus::kDataTransferError);
  Cq& cq = cqs_[qid];
  cq = Cq{};
  cq.exists = true;
  cq.entries = entries;
  cq.base = base;
  cq_head_doorbell(qid).store(0, std::memory_order_relaxed);  // published by the completion's release
  return kOk;
}

std::uint16_t EmuDevice::create_sq(const SubmissionEntry& c) {
  auto qid = static_cast<std::uint16_t>(c.cdw10 & 0xffffu);
  std::uint32_t entries = (c.cdw10 >> 16) + 1;
  auto cqid = static_cast<std::uint16_t>(c.cdw11 >> 16);
  if (qid == 0 || qid > granted_sqs_ || sqs_[qid].exists) return st(CommandSpecificStatus::kInvalidQueueIdentifier);
  if (cqid == 0 || cqid >= cqs_.size() || !cqs_[cqid].exists) return st(CommandSpecificStatus::kCompletionQueueInvalid);
  if (entries < 2 || entries > config_.max_queue_entries) return st(CommandSpecificStatus::kInvalidQueueSize);
  if ((c.cdw11 & kQueuePhysicallyContiguous) == 0) return st(GenericStatus::kInvalidField);
  if (c.prp1 % kPageBytes != 0) return st(GenericStatus::kInvalidPrpOffset);
  auto* base = reinterpret_cast<const SubmissionEntry*>(arena_->translate(c.prp1, std::size_t{entries} * 64));
  if (base == nullptr) return st(GenericStatus::kDataTransferError);
  sqs_[qid] = Sq{true, entries, base, 0, cqid};
  ++cqs_[cqid].sq_refs;
  sq_tail_doorbell(qid).store(0, std::memory_order_relaxed);  // published by the completion's release
  return kOk;
}

std::uint16_t EmuDevice::delete_sq(const SubmissionEntry& c) {
  auto qid = static_cast<std::uint16_t>(c.cdw10 & 0xffffu);
  if (qid == 0 || qid >= sqs_.size() || !sqs_[qid].exists) return st(CommandSpecificStatus::kInvalidQueueIdentifier);
  --cqs_[sqs_[qid].cqid].sq_refs;
  sqs_[qid] = Sq{};
  return kOk;
}

std::uint16_t EmuDevice::delete_cq(const SubmissionEntry& c) {
  auto qid = static_cast<std::uint16_t>(c.cdw10 & 0xffffu);
  if (qid == 0 || qid >= cqs_.size() || !cqs_[qid].exists) return st(CommandSpecificStatus::kInvalidQueueIdentifier);
  if (cqs_[qid].sq_refs != 0) return st(CommandSpecificStatus::kInvalidQueueDeletion);
  delayed_pending_ -= cqs_[qid].delayed.size();
  cqs_[qid] = Cq{};
  return kOk;
}

std::uint16_t EmuDevice::execute_admin(const SubmissionEntry& c, std::uint32_t& cdw0) {
  single_writer_add(admin_commands_, 1);
  switch (static_cast<AdminOpcode>(c.opcode)) {
    case AdminOpcode::kIdentify: return identify(c);
    case AdminOpcode::kCreateIoCq: return create_cq(c);
    case AdminOpcode::kCreateIoSq: return create_sq(c);
    case AdminOpcode::kDeleteIoSq: return delete_sq(c);
    case AdminOpcode::kDeleteIoCq: return delete_cq(c);
    case AdminOpcode::kSetFeatures:
      switch (static_cast<FeatureId>(c.cdw10 & 0xffu)) {
        case FeatureId::kNumberOfQueues: {
          std::uint32_t nsqr = c.cdw11 & 0xffffu;
          std::uint32_t ncqr = c.cdw11 >> 16;
          if (nsqr == 0xffffu || ncqr == 0xffffu) return st(GenericStatus::kInvalidField);
          if (any_io_queue()) return st(GenericStatus::kCommandSequenceError);
          granted_sqs_ = static_cast<std::uint16_t>(std::min<std::uint32_t>(nsqr + 1, config_.max_io_queues));
          granted_cqs_ = static_cast<std::uint16_t>(std::min<std::uint32_t>(ncqr + 1, config_.max_io_queues));
          cdw0 = (granted_sqs_ - 1u) | ((granted_cqs_ - 1u) << 16);
          return kOk;
        }
        case FeatureId::kVolatileWriteCache: return kOk;
        default: return st(GenericStatus::kInvalidField);
      }
    case AdminOpcode::kGetFeatures:
      switch (static_cast<FeatureId>(c.cdw10 & 0xffu)) {
        case FeatureId::kNumberOfQueues: cdw0 = (granted_sqs_ - 1u) | ((granted_cqs_ - 1u) << 16); return kOk;
        case FeatureId::kVolatileWriteCache: cdw0 = 1; return kOk;
        default: return st(GenericStatus::kInvalidField);
      }
    default: return st(GenericStatus::kInvalidOpcode);
  }
}

}  // namespace nvmux::nvme
