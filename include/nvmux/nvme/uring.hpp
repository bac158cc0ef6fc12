#pragma once
// The `uring` backend: NVMe queue pairs over files and block devices through io_uring.
//
// Same Controller / QueuePair interface as `emu`, so every tool and test runs against either by a
// flag. Each I/O queue pair gets its own io_uring, created on the thread that creates the qpair
// with IORING_SETUP_SINGLE_ISSUER (the kernel then enforces the owner rule too: a submit from
// another thread fails with -EEXIST). The QueuePair writes NVMe commands into plain SQ memory as
// for any device; the transport's poll() plays the device: it reads the new entries, validates
// them, turns each into io_uring SQEs (one io_uring_submit per poll), reaps CQEs and posts NVMe
// completion entries into the CQ memory.
//
//   read / write      READ_FIXED / WRITE_FIXED on the registered DMA arena when the PRPs describe
//                     one contiguous range, READV / WRITEV otherwise; registered files
//   flush             fsync(IORING_FSYNC_DATASYNC)            (fdatasync)
//   write zeroes      fallocate(FALLOC_FL_ZERO_RANGE | KEEP_SIZE)
//   deallocate (DSM)  fallocate(FALLOC_FL_PUNCH_HOLE | KEEP_SIZE), one per range
//
// Requests beyond the namespace, above the transfer limit or with bad PRPs are answered by the
// backend with the NVMe status a controller would give; they never reach the kernel. Kernel
// errors map to NVMe statuses (table in docs/uring.md, function errno_to_status below); the positive
// errno is kept in the completion's cdw0 for diagnostics.
//
// O_DIRECT is the default. A transfer whose memory or length is not aligned to the namespace's
// direct-I/O alignment is bounced through an aligned buffer (counted in stats). With direct=false
// the files are opened buffered and a warning says so once.
//
// Threading: UringController is thread-safe like every Controller; each QueuePair is owned by the
// thread that created it. admin_command answers Identify (controller, namespace, active namespace
// list) from the backend's own data and returns Invalid Command Opcode for anything else: there
// is no admin queue behind a file.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nvmux/nvme/controller.hpp"
#include "nvmux/nvme/queue_ids.hpp"

namespace nvmux::nvme {

struct UringNamespace {
  std::string path;                 // a regular file (created at `bytes` when missing) or a block device
  std::uint64_t bytes = 0;          // file size; 0 = the existing file's or device's size
  std::uint32_t block_size = 4096;  // 512 or 4096
};

struct UringOptions {
  std::string name = "uring0";
  std::vector<UringNamespace> namespaces;
  bool direct = true;                      // O_DIRECT; false = page cache (warned)
  bool sqpoll = false;                     // IORING_SETUP_SQPOLL: a kernel thread submits
  bool register_buffers = true;            // register the DMA arena as one fixed buffer
  std::uint32_t max_queue_entries = 4096;  // per queue
  std::uint16_t max_io_queues = 64;
  std::uint32_t max_transfer_bytes = 1u << 20;  // 4 KiB x a power of two
  std::size_t dma_arena_bytes = std::size_t{64} << 20;
  // Directory for the temporary files that stand in for kRam namespaces in factory(); "" = /tmp.
  std::string scratch_dir;
};

struct UringStats {
  std::uint64_t submit_calls = 0;           // io_uring_submit calls (one per poll that had work)
  std::uint64_t sqes = 0;                   // SQEs handed to the kernel
  std::uint64_t fixed_rw = 0;               // reads/writes through a registered buffer (arena or client)
  std::uint64_t vectored_rw = 0;            // reads/writes that needed an iovec list
  std::uint64_t bounced = 0;                // transfers copied through an aligned bounce buffer
  std::uint64_t rejected = 0;               // commands answered without reaching the kernel
  std::uint64_t kernel_errors = 0;          // CQEs with a negative result
  std::uint64_t refused_submits = 0;        // io_uring_submit errors (-EEXIST: not the owner thread)
  std::uint64_t foreign_registrations = 0;  // foreign regions (client arenas) registered as buffers

  UringStats& operator+=(const UringStats& o) {
    submit_calls += o.submit_calls;
    sqes += o.sqes;
    fixed_rw += o.fixed_rw;
    vectored_rw += o.vectored_rw;
    bounced += o.bounced;
    rejected += o.rejected;
    kernel_errors += o.kernel_errors;
    refused_submits += o.refused_submits;
    foreign_registrations += o.foreign_registrations;
    return *this;
  }
};

// The NVMe status for a failed kernel request (`err` positive errno) of the given opcode.
std::uint16_t errno_to_status(int err, std::uint8_t opcode);

class UringController final : public Controller {
 public:
  // Opens (or creates) every namespace. Errors: kInvalidArgument (no namespaces, block size not
  // 512/4096, size not a multiple of the block size, a path that is neither a regular file nor a
  // block device, a missing file without a size, limits out of range), the code of the errno of a
  // failed open, fallocate or io_uring setup (Status::from_errno: kNotFound, kPermissionDenied,
  // kResourceExhausted, ...; errno kept and in the message), kUnsupported (O_DIRECT refused by the filesystem).
  static Result<std::unique_ptr<UringController>> create(UringOptions options);
  // A ControllerFactory for the shared test suite: kFile namespaces open their path; kRam
  // namespaces become unlinked temporary files; kNull is refused (there is no null file).
  static ControllerFactory factory(UringOptions base);

  ~UringController() override;

  const std::string& name() const override { return options_.name; }
  const ControllerInfo& info() const override { return info_; }
  const std::vector<NamespaceInfo>& namespaces() const override { return namespaces_; }
  Result<std::unique_ptr<QueuePair>> create_io_qpair(const QueuePairOptions& options) override;
  Result<DmaBuffer> dma_alloc(std::size_t bytes, std::size_t align = kPageBytes) override;
  Result<ForeignRegion> register_memory(std::span<std::byte> memory) override;
  std::size_t registered_regions() const override { return arena_->foreign_regions_in_use(); }
  Result<CompletionEntry> admin_command(const SubmissionEntry& command, IoVec data) override;

  // Sum over live and closed queue pairs. Any thread.
  UringStats stats() const;
  const UringOptions& options() const { return options_; }

 private:
  class Transport;
  struct OpenNamespace {
    int fd = -1;
    std::uint64_t blocks = 0;
    std::uint32_t block_size = 0;
    std::uint32_t direct_align = 512;  // memory/length alignment O_DIRECT needs
    bool is_block_device = false;
  };
  explicit UringController(UringOptions options);
  // open_namespaces() and its steps for namespace i (0-based).
  Status open_namespaces();
  Status open_namespace_file(std::size_t i, const UringNamespace& spec);
  static Result<std::uint64_t> size_block_device(std::size_t i, const UringNamespace& spec, OpenNamespace& opened);
  Result<std::uint64_t> size_regular_file(std::size_t i, const UringNamespace& spec, OpenNamespace& opened) const;
  void release_qid(std::uint16_t qid, const UringStats& final_stats);

  UringOptions options_;
  std::shared_ptr<DmaArena> arena_;
  std::vector<OpenNamespace> open_;
  ControllerInfo info_;
  std::vector<NamespaceInfo> namespaces_;

  mutable std::mutex mutex_;  // qids and closed-queue stats
  IoQueueIds qids_;
  UringStats closed_stats_;
  std::vector<Transport*> live_;
};

}  // namespace nvmux::nvme
