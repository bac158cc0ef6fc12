#pragma once
// EmuDevice: the device half of the emulated NVMe controller (private to the nvme layer).
//
// Threading: register and doorbell accessors are thread-safe (atomics: the "MMIO" the driver
// does). step() is serialised by an internal mutex and is the only code that touches queue state,
// namespaces and pending completions, so the device is single-threaded inside. Fault rules are
// guarded by their own mutex; stats are relaxed atomics read from any thread.

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "nvmux/common/cache_line.hpp"
#include "nvmux/nvme/controller.hpp"
#include "nvmux/nvme/dma.hpp"
#include "nvmux/nvme/emu.hpp"
#include "nvmux/nvme/spec.hpp"

namespace nvmux::nvme {

// Storage behind one namespace: anonymous memory, a file, or nothing (null).
//
// A file is never mapped: it is read and written with preadv/pwritev, so a file that cannot hold
// its data (a full filesystem) or that another process truncates turns into failed commands with
// an errno, never into SIGBUS. Its space is allocated when the store is opened (posix_fallocate),
// so a filesystem too small for the namespace is an error then, not at the first write.
//
// Threading: owned by the device; every call comes from the (serialised) step().
class NamespaceStore {
 public:
  // Errors: kInvalidArgument (block size not 512/4096, 0 blocks, kFile without a path, a path that
  // is a directory or not a regular file or block device), the errno code of a failed
  // open/fallocate (Status::from_errno; ENOSPC names the space needed).
  static Result<std::unique_ptr<NamespaceStore>> open(const NamespaceSpec& spec);
  ~NamespaceStore();
  NamespaceStore(const NamespaceStore&) = delete;
  NamespaceStore& operator=(const NamespaceStore&) = delete;

  std::uint64_t blocks() const { return blocks_; }
  std::uint32_t block_size() const { return block_size_; }
  bool is_null() const { return data_ == nullptr && fd_ < 0; }
  bool is_file() const { return fd_ >= 0; }
  // RAM only: the memory behind the namespace (nullptr for files and null).
  std::byte* data() const { return data_; }
  const std::string& path() const { return path_; }
  // Files: moves iov's bytes from (read) or to the file at byte `offset`. Returns 0 or an errno;
  // EIO when the file ends before the transfer does (it shrank underneath us).
  int file_io(bool read, std::uint64_t offset, const struct iovec* iov, int iov_count, std::size_t bytes);
  // Files: stores zeroes over [offset, offset + bytes). Returns 0 or an errno.
  int file_zero(std::uint64_t offset, std::size_t bytes);
  // Makes written data durable (fdatasync for files). False when the kernel refused.
  bool sync();
  bool error_logged = false;  // the device logged this namespace's first file error

 private:
  NamespaceStore() = default;
  Status open_file(const NamespaceSpec& spec);
  std::uint64_t blocks_ = 0;
  std::uint32_t block_size_ = 0;
  std::byte* data_ = nullptr;
  std::size_t bytes_ = 0;
  int fd_ = -1;
  std::string path_;
};

class EmuDevice {
 public:
  struct Config {
    std::uint32_t max_queue_entries = 1024;
    std::uint16_t max_io_queues = 16;
    std::uint32_t max_transfer_bytes = 1u << 20;
    std::uint32_t latency_us = 0;
    std::function<std::uint64_t()> clock;
  };
  // Doorbell stride: CAP.DSTRD = 5 puts every doorbell alone on a 128-byte line, so qpairs driven
  // by different threads never share a line.
  static constexpr std::uint32_t kDoorbellStrideShift = 5;

  EmuDevice(Config config, std::shared_ptr<DmaArena> arena, std::vector<std::unique_ptr<NamespaceStore>> namespaces);

  // "MMIO": any thread.
  std::uint64_t read_cap() const { return cap_; }
  std::uint32_t read_csts() const { return csts_.load(std::memory_order_acquire); }      // pairs with step's release
  void write_cc(std::uint32_t value) { cc_.store(value, std::memory_order_release); }    // admin queue regs before EN
  void write_aqa(std::uint32_t value) { aqa_.store(value, std::memory_order_relaxed); }  // published by write_cc
  void write_asq(std::uint64_t value) { asq_.store(value, std::memory_order_relaxed); }  // published by write_cc
  void write_acq(std::uint64_t value) { acq_.store(value, std::memory_order_relaxed); }  // published by write_cc
  std::atomic<std::uint32_t>& sq_tail_doorbell(std::uint16_t qid) { return doorbells_[2u * qid].value; }
  std::atomic<std::uint32_t>& cq_head_doorbell(std::uint16_t qid) { return doorbells_[2u * qid + 1u].value; }

  std::size_t step(std::size_t max_commands);
  void inject_fault(const FaultRule& rule);
  void clear_faults();
  EmuDeviceStats stats() const;

 private:
  struct Sq {
    bool exists = false;
    std::uint32_t entries = 0;
    const SubmissionEntry* base = nullptr;
    std::uint32_t head = 0;
    std::uint16_t cqid = 0;
  };
  struct Pending {
    CompletionEntry cqe;
    std::uint64_t due_ns;
  };
  struct Cq {
    bool exists = false;
    std::uint32_t entries = 0;
    CompletionEntry* base = nullptr;
    std::uint32_t tail = 0;
    bool phase = true;
    std::uint32_t sq_refs = 0;
    std::deque<Pending> fifo;      // normal completions, due in order
    std::vector<Pending> delayed;  // fault-delayed ones, overtaken by later completions
  };
  // Written by the driver (tail / head), read by the device.
  struct alignas(kCacheLineBytes) DoorbellLine {
    std::atomic<std::uint32_t> value{0};
  };
  static_assert(sizeof(DoorbellLine) == kCacheLineBytes && std::atomic<std::uint32_t>::is_always_lock_free);
  struct ActiveFault {
    FaultRule rule;
    std::uint32_t skip_left;
    std::uint32_t hits_left;
    bool exhausted;
  };

  std::uint64_t now() const;
  void enable();
  void disable();
  std::size_t fetch(std::uint16_t qid, std::size_t max_commands, std::uint64_t now);
  std::size_t post(std::uint64_t now);
  std::optional<FaultRule> match_fault(std::uint16_t qid, std::uint8_t opcode);
  std::uint16_t execute_admin(const SubmissionEntry& c, std::uint32_t& cdw0);
  // cdw0 receives the errno of a failed file read or write (0 otherwise).
  std::uint16_t execute_io(const SubmissionEntry& c, std::uint32_t& cdw0);
  std::uint16_t transfer_file(const SubmissionEntry& c, NamespaceStore& ns, std::uint64_t slba, std::size_t bytes,
                              bool read, std::uint32_t& cdw0);
  std::uint16_t zero_blocks(const SubmissionEntry& c, NamespaceStore& ns, std::uint64_t slba, std::uint64_t nlb,
                            std::uint32_t& cdw0);
  std::uint16_t file_error(NamespaceStore& ns, std::uint32_t nsid, const char* what, std::uint64_t slba, int err,
                           std::uint32_t& cdw0);
  // Moves `bytes` between host memory described by PRP1/PRP2 and `media`; returns a status.
  std::uint16_t transfer(std::uint64_t prp1, std::uint64_t prp2, std::size_t bytes, std::byte* media, bool to_host);
  std::uint16_t create_cq(const SubmissionEntry& c);
  std::uint16_t create_sq(const SubmissionEntry& c);
  std::uint16_t delete_sq(const SubmissionEntry& c);
  std::uint16_t delete_cq(const SubmissionEntry& c);
  std::uint16_t identify(const SubmissionEntry& c);
  bool any_io_queue() const;

  const Config config_;
  const std::shared_ptr<DmaArena> arena_;
  const std::vector<std::unique_ptr<NamespaceStore>> namespaces_;
  const std::uint64_t cap_;

  std::atomic<std::uint32_t> cc_{0};
  std::atomic<std::uint32_t> csts_{0};
  std::atomic<std::uint32_t> aqa_{0};
  std::atomic<std::uint64_t> asq_{0};
  std::atomic<std::uint64_t> acq_{0};
  std::unique_ptr<DoorbellLine[]> doorbells_;

  std::mutex step_mutex_;
  bool ready_ = false;
  std::vector<Sq> sqs_;
  std::vector<Cq> cqs_;
  std::uint16_t granted_sqs_ = 0;
  std::uint16_t granted_cqs_ = 0;
  std::size_t delayed_pending_ = 0;  // fault-delayed completions waiting in any CQ
  std::vector<std::byte> scratch_;   // identify data, DSM ranges
  std::vector<iovec> iov_scratch_;   // a file transfer's PRP pieces

  std::mutex fault_mutex_;
  std::atomic<bool> has_faults_{false};
  std::vector<ActiveFault> faults_;

  // Counters: only step() (serialised) writes them, through single_writer_add; readers on any thread.
  std::atomic<std::uint64_t> commands_{0};
  std::atomic<std::uint64_t> admin_commands_{0};
  std::atomic<std::uint64_t> completions_posted_{0};
  std::atomic<std::uint64_t> cq_full_stalls_{0};
  std::atomic<std::uint64_t> faults_injected_{0};
  std::atomic<std::uint64_t> invalid_doorbell_writes_{0};
  std::atomic<std::uint64_t> bytes_read_{0};
  std::atomic<std::uint64_t> bytes_written_{0};
};

}  // namespace nvmux::nvme
