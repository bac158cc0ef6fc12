#pragma once
// Controller: the backend-neutral face of an NVMe controller. Backends (emu, uring; vfio later)
// implement it; everything above the nvme layer and the shared test suite use only this.
//
// Threading: a Controller is thread-safe. create_io_qpair, dma_alloc and admin_command may be
// called from any thread (they serialise on the controller's own locks, and admin_command blocks
// until the admin completion arrives or the admin timeout passes). Each QueuePair it returns is
// owned by the thread that called create_io_qpair (see qpair.hpp). Every QueuePair
// must be destroyed before its Controller; DmaBuffers may outlive it (they keep their arena).
//
// Errors:
//   create_io_qpair  kInvalidArgument (queue size rejected by the device, with its status),
//                    kUnavailable (every I/O queue the controller granted is in use, or DMA memory
//                    exhausted), kTimeout / kIoError (the admin queue failed)
//   dma_alloc        kInvalidArgument, kUnavailable (see dma.hpp)
//   admin_command    kTimeout (no admin completion within the admin timeout), kAborted (admin
//                    queue failed), kInvalidArgument (bad data buffer). A device error status is
//                    NOT a Status error: the completion entry is returned for the caller to read.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nvmux/common/status.hpp"
#include "nvmux/nvme/dma.hpp"
#include "nvmux/nvme/qpair.hpp"
#include "nvmux/nvme/spec.hpp"

namespace nvmux::nvme {

// What the driver learned from Identify Controller and Set Features (Number of Queues).
struct ControllerInfo {
  std::string model;
  std::string serial;
  std::string firmware;
  std::uint16_t vendor_id = 0;
  std::uint16_t controller_id = 0;
  std::uint32_t version = 0;
  std::uint32_t max_transfer_bytes = 0;  // from MDTS; 0 = no limit
  std::uint32_t max_queue_entries = 0;   // CAP.MQES + 1
  std::uint16_t io_queues = 0;           // granted by Set Features (Number of Queues)
  std::uint16_t oncs = 0;                // optional NVM commands (write zeroes, dataset management...)
  bool volatile_write_cache = false;
};

// Backend-neutral description of one namespace to create (emu) or open (uring).
enum class NamespaceBacking { kRam, kFile, kNull };
struct NamespaceSpec {
  std::uint64_t blocks = 0;
  std::uint32_t block_size = 512;  // 512 or 4096
  NamespaceBacking backing = NamespaceBacking::kRam;
  std::string path;  // kFile only; created when missing, its contents kept across restarts
};

struct ControllerSpec {
  std::string name = "nvme0";
  std::vector<NamespaceSpec> namespaces;
};

class Controller {
 public:
  virtual ~Controller() = default;

  virtual const std::string& name() const = 0;
  virtual const ControllerInfo& info() const = 0;
  // Active namespaces in nsid order (nsid = index + 1).
  virtual const std::vector<NamespaceInfo>& namespaces() const = 0;

  // Creates an I/O queue pair on the device (Create I/O CQ, then Create I/O SQ) owned by the
  // calling thread. Destroying the QueuePair deletes the SQ then the CQ.
  virtual Result<std::unique_ptr<QueuePair>> create_io_qpair(const QueuePairOptions& options) = 0;
  // Memory the device can reach; the only valid target for I/O buffers.
  virtual Result<DmaBuffer> dma_alloc(std::size_t bytes, std::size_t align = kPageBytes) = 0;
  // Makes memory the controller did not allocate (page aligned; a client's shared arena) a valid
  // I/O target until the handle is destroyed: commands naming region.slice() move data straight
  // to and from it. Destroy the handle only when no command naming it is outstanding.
  // Errors: see DmaArena::map_foreign.
  virtual Result<ForeignRegion> register_memory(std::span<std::byte> memory) = 0;
  // How many register_memory handles are alive now (any thread): a leak check for nvmuxd's admin view.
  virtual std::size_t registered_regions() const = 0;
  // Runs one admin command to completion (cid and PRPs are filled in); see the error list above.
  virtual Result<CompletionEntry> admin_command(const SubmissionEntry& command, IoVec data) = 0;
};

// Builds a ready controller from a backend-neutral spec. The shared data-integrity and error test
// suite is written against this, once per backend.
using ControllerFactory = std::function<Result<std::unique_ptr<Controller>>(const ControllerSpec&)>;

}  // namespace nvmux::nvme
