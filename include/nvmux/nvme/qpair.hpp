#pragma once
// QueuePair: the driver side of one NVMe submission/completion queue pair.
//
// Contract: OWNER-THREAD-ONLY. The qpair records the OS thread that constructed it; every submit,
// process_completions and reset from any other thread returns kWrongThread at once, naming the
// qpair, the owner and the caller (the check compares one std::thread::id). There are no locks:
// an NVMe queue pair has exactly one driver, and nvmux makes that rule visible instead of letting
// two drivers corrupt each other (spdk/spdk#3557, "cpl does not map to outstanding cmd").
// Nothing here blocks; callbacks run on the owner thread inside process_completions (or inside
// reset/destruction for aborted commands) and may submit new commands. Destroy a qpair on its
// owner thread: the destructor deletes the device queues, then aborts what is still outstanding.
//
// Submission returns a Status:
//   ok                accepted; the callback runs exactly once later
//   kQueueFull        every command id is in use (outstanding or reserved by a timed-out command);
//                     nothing was queued, poll and retry. nvmux does not queue requests internally:
//                     the caller owns the back-pressure decision and memory stays bounded.
//   kInvalidArgument  unknown namespace, 0 or too many blocks, buffer length != blocks * block
//                     size, buffer not dword aligned, transfer above max_transfer_bytes()
//   kWrongThread      called from a thread other than the owner
//   kAborted          the qpair failed (see failure()); reset() it or destroy it
//
// The callback's IoCompletion::status is one of:
//   ok        the device reported success
//   kIoError  the device reported an error (after retries); sct/sc/dnr are in `cqe`
//   kTimeout  no completion within timeout_us; the command id stays reserved until the device
//             answers (the late completion is dropped and counted) or the qpair is reset
//   kAborted  the qpair failed, was reset, or was destroyed with the command outstanding
//
// A completion whose command id is out of range or not outstanding, whose SQ id is wrong, or whose
// SQ head is impossible moves the qpair to the failed state: the diagnostic (cid, SQ head, phase,
// outstanding count) goes to failure() and the error log, every outstanding command completes with
// kAborted, and later calls return kAborted. Never an assert, a silent drop or a hang.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "nvmux/common/status.hpp"
#include "nvmux/nvme/dma.hpp"
#include "nvmux/nvme/spec.hpp"

namespace nvmux::nvme {

// What a backend gives a QueuePair: queue memory, doorbell registers and a poll hook.
//
// The emu backend hands out real SQ/CQ memory inside its DMA arena and its doorbell registers; the
// device thread reads them. A backend without hardware queues (io_uring) can hand out plain memory
// and do the device's work in poll(): read the SQ tail doorbell, consume the new entries, and post
// completion entries (phase tag last) before the qpair reads the CQ.
//
// Threading: the owning QueuePair calls every method on its owner thread.
class QueueTransport {
 public:
  virtual ~QueueTransport() = default;
  virtual std::uint16_t qid() const = 0;
  virtual std::span<SubmissionEntry> sq() = 0;
  virtual std::span<CompletionEntry> cq() = 0;
  // Doorbell registers. The qpair stores with release so entries are visible before the index.
  virtual std::atomic<std::uint32_t>& sq_tail_doorbell() = 0;
  virtual std::atomic<std::uint32_t>& cq_head_doorbell() = 0;
  // Called at the start of every process_completions: a backend without its own engine works here.
  // Returns false when the device behind the queue has failed or is gone (a controller fatal
  // status, registers reading all-ones); device_failure() then says how, and the qpair fails with
  // that diagnostic instead of waiting for completions that will never come.
  virtual bool poll() { return true; }
  virtual std::string device_failure() const { return {}; }
  // Makes the device side of this queue new and empty (e.g. delete and re-create the SQ/CQ). The
  // CQ memory must read as phase 0 everywhere afterwards.
  virtual Status reset() = 0;
};

// One namespace as the driver sees it (from Identify Namespace).
struct NamespaceInfo {
  std::uint32_t nsid = 0;
  std::uint64_t blocks = 0;
  std::uint32_t block_size = 0;
};

struct IoCompletion {
  Status status;          // see the contract above
  CompletionEntry cqe{};  // the device's entry (all zero for kTimeout/kAborted)
  std::uint16_t cid = 0;
  std::uint32_t attempts = 0;  // 1 + retries
};

// Plain function pointer + context, as SPDK: no allocation, no type erasure on the data path.
using IoCallback = void (*)(void* ctx, const IoCompletion& completion);

// Who may call a QueuePair.
enum class QueuePairAccess {
  // Only the thread that created it; any other caller is refused with kWrongThread. Every I/O qpair.
  kOwnerThread,
  // Any thread, one at a time: the caller serialises every use itself (the emu controller's admin
  // queue, under its admin mutex). The qpair does not check, so a caller that breaks the promise
  // corrupts it; tests use that to watch what the misuse does.
  kCallerSerialised,
};

struct QueuePairOptions {
  std::string name;                // shown in errors; the controller fills "<ctrl>/q<qid>" when empty
  std::uint32_t sq_entries = 256;  // submission queue slots; sq_entries - 1 commands in flight
  std::uint32_t cq_entries = 0;    // 0 = same as sq_entries; smaller makes the device stall on a full CQ
  // One SQ tail doorbell write for everything submitted between two polls (written at the start
  // and end of process_completions) and one CQ head write per poll. Off: one SQ doorbell per
  // command and one CQ head doorbell per completion.
  bool delayed_doorbell = false;
  std::uint64_t timeout_us = 0;   // per command; 0 = no timeout
  std::uint32_t max_retries = 0;  // resubmissions of a failure with DNR clear
  // Time source for timeouts (ns, monotonic); empty = monotonic_ns(). Tests pass a manual clock.
  std::function<std::uint64_t()> clock;
  QueuePairAccess access = QueuePairAccess::kOwnerThread;
  // TEST ONLY. Called inside process_completions after a completion entry was read and before it
  // is matched to its command: lets a test force the interleaving two drivers of one queue hit.
  void (*test_after_cqe_read)(void* arg) = nullptr;
  void* test_hook_arg = nullptr;
};

struct QueuePairStats {
  std::uint64_t submitted = 0;      // accepted by submit calls (retries not included)
  std::uint64_t completed = 0;      // callbacks run, whatever the status
  std::uint64_t device_errors = 0;  // callbacks with kIoError
  std::uint64_t timeouts = 0;
  std::uint64_t retries = 0;
  std::uint64_t aborted = 0;
  std::uint64_t late_completions = 0;  // device answers for commands that had timed out
  std::uint64_t queue_full = 0;        // submissions refused with kQueueFull
  std::uint64_t sq_doorbell_writes = 0;
  std::uint64_t cq_doorbell_writes = 0;
  std::uint32_t depth = 0;  // command ids in use now (outstanding + timed-out)
  std::uint32_t max_depth = 0;
  std::map<std::uint16_t, std::uint64_t> errors_by_status;  // key (SCT << 8) | SC, each device error seen
};

class QueuePair {
 public:
  enum class State { kActive, kFailed };

  // Largest transfer one command may carry: one PRP list page of 512 entries per command.
  static constexpr std::uint32_t kMaxTransferBytesLimit = 2u << 20;

  // Built by a Controller. `prp_pages` holds one 4 KiB page per command id (sq_entries - 1),
  // `max_transfer_bytes` is the controller's MDTS in bytes (0 = unlimited).
  QueuePair(std::unique_ptr<QueueTransport> transport, DmaBuffer prp_pages, std::vector<NamespaceInfo> namespaces,
            std::uint32_t max_transfer_bytes, QueuePairOptions options);
  ~QueuePair();
  QueuePair(const QueuePair&) = delete;
  QueuePair& operator=(const QueuePair&) = delete;

  Status read(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, IoVec buffer, IoCallback cb, void* ctx);
  Status write(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, IoVec buffer, IoCallback cb, void* ctx);
  Status flush(std::uint32_t nsid, IoCallback cb, void* ctx);
  Status write_zeroes(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, IoCallback cb, void* ctx);
  // Dataset Management with the deallocate attribute; up to kMaxDsmRanges ranges (copied into the
  // command's own DMA page, so `ranges` may live anywhere).
  Status deallocate(std::uint32_t nsid, std::span<const DsmRange> ranges, IoCallback cb, void* ctx);
  // Any command as given (opcode, nsid, cdw2-15); the qpair fills cid, and PRPs for `data` (when
  // `data` is empty, PRP1/PRP2 stay as given: queue bases for Create I/O SQ/CQ, hand-built PRP
  // shapes in tests). Skips the namespace and length checks: tests use it to see what the device
  // answers.
  Status submit_raw(const SubmissionEntry& command, IoVec data, IoCallback cb, void* ctx);

  // Reaps up to `max` completions (0 = all available), runs their callbacks, retries retryable
  // failures, expires timed-out commands and writes the doorbells. Returns how many completions
  // were reaped. Errors: kWrongThread; kAborted when the qpair is (or just became) failed.
  Result<std::uint32_t> process_completions(std::uint32_t max = 0);

  // Aborts every outstanding command (kAborted), releases reserved ids, resets the device queues
  // and returns the qpair to kActive. Errors: kWrongThread, or the transport's reset error.
  Status reset();

  State state() const { return state_; }
  const Status& failure() const { return failure_; }
  std::uint32_t outstanding() const { return stats_.depth; }
  std::uint32_t capacity() const { return tracker_count_; }
  std::uint32_t max_transfer_bytes() const { return max_transfer_bytes_; }
  std::uint16_t qid() const { return qid_; }
  const std::string& name() const { return options_.name; }
  const std::vector<NamespaceInfo>& namespaces() const { return namespaces_; }
  // Owner thread only (plain counters).
  const QueuePairStats& stats() const { return stats_; }

 private:
  static constexpr std::uint16_t kNil = 0xffff;
  enum class TrackerState : std::uint8_t { kFree, kOutstanding, kTimedOut };
  struct Tracker {
    SubmissionEntry command;  // kept for retries
    IoCallback cb = nullptr;
    void* ctx = nullptr;
    std::uint64_t deadline_ns = 0;
    std::uint64_t* prp_list = nullptr;
    std::uint64_t prp_list_iova = 0;
    std::uint16_t prev = kNil;  // outstanding list, oldest first (= deadline order)
    std::uint16_t next = kNil;
    TrackerState state = TrackerState::kFree;
    std::uint32_t attempts = 0;
  };

  bool on_owner_thread() const {
    return options_.access == QueuePairAccess::kCallerSerialised || std::this_thread::get_id() == owner_;
  }
  Status wrong_thread(const char* what) const;
  Status check_submit(const char* what) const;
  Status submit_io(std::uint8_t opcode, std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, IoVec buffer,
                   IoCallback cb, void* ctx);
  Status queue_full();
  Status check_data(IoVec data) const;
  // Takes a free id, builds PRPs for `data` (or copies `payload` into the command's own page),
  // writes the SQ entry. The caller checked capacity and data.
  void start(const SubmissionEntry& command, IoVec data, std::span<const std::byte> payload, IoCallback cb, void* ctx);
  void build_prps(Tracker& t, IoVec data);
  void write_sq_entry(Tracker& t, std::uint16_t cid);
  void ring_sq_doorbell();
  void ring_cq_doorbell();
  void list_push_back(std::uint16_t cid);
  void list_remove(std::uint16_t cid);
  void release(std::uint16_t cid);
  void complete(std::uint16_t cid, IoCompletion& completion);
  // process_completions' steps for one completion entry. The inline ones are its hot path, defined
  // in qpair.cpp (the only caller) so that they are inlined there.
  inline bool take_cqe(CompletionEntry& cqe, std::uint32_t cq_size);
  inline bool maps_to_outstanding(const CompletionEntry& cqe) const;
  void fail_unmapped_completion(const CompletionEntry& cqe, std::uint32_t head, bool phase);
  inline bool finish_command(const CompletionEntry& cqe);
  void retry(Tracker& t, std::uint16_t cid);
  Status count_device_error(const Tracker& t, const CompletionEntry& cqe);
  void expire_timeouts();
  void fail(std::string diagnostic);
  void abort_all(const char* why);
  std::uint64_t now_ns() const;

  std::unique_ptr<QueueTransport> transport_;
  DmaBuffer prp_pages_;
  std::vector<NamespaceInfo> namespaces_;
  QueuePairOptions options_;
  std::thread::id owner_;
  std::string owner_label_;
  std::uint16_t qid_ = 0;
  std::uint32_t max_transfer_bytes_ = 0;
  std::uint32_t tracker_count_ = 0;

  // Queue state, owner thread only.
  std::span<SubmissionEntry> sq_;
  std::span<CompletionEntry> cq_;
  std::atomic<std::uint32_t>* sq_doorbell_ = nullptr;
  std::atomic<std::uint32_t>* cq_doorbell_ = nullptr;
  std::uint32_t sq_tail_ = 0;
  std::uint32_t sq_head_ = 0;  // as last reported by the device
  std::uint32_t cq_head_ = 0;
  bool phase_ = true;
  bool sq_doorbell_pending_ = false;

  std::vector<Tracker> trackers_;
  std::vector<std::uint16_t> free_ids_;  // FIFO ring: a freed id is reused last
  std::uint32_t free_head_ = 0;
  std::uint32_t free_count_ = 0;
  std::uint16_t list_head_ = kNil;
  std::uint16_t list_tail_ = kNil;
  std::uint32_t timed_out_ = 0;  // ids reserved by timed-out commands

  State state_ = State::kActive;
  Status failure_;
  QueuePairStats stats_;
};

}  // namespace nvmux::nvme
