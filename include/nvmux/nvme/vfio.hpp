#pragma once
// The `vfio` backend: a PCIe NVMe controller driven from userspace through Linux VFIO.
//
// The function must be bound to vfio-pci (scripts/nvmux-setup bind ADDR) and sit in a viable IOMMU
// group; an IOMMU is required (no-IOMMU mode is not used). create() opens the VFIO container, group
// and device, maps BAR0, takes the DMA arena (2 MiB huge pages when available) and maps it into the
// IOMMU, resets and enables the controller through CC/CSTS (bounded by CAP.TO), then runs the same
// admin flow as emu's driver: Identify, Set Features (Number of Queues). Each I/O queue pair is
// Create I/O CQ + SQ with the QueuePair code every backend shares; doorbells are BAR0 registers at
// the stride CAP.DSTRD gives. Completions are polled; no interrupt is configured. docs/vfio.md.
//
// Threading: VfioController is thread-safe like every Controller (the admin queue under its
// mutex); each QueuePair is owned by the thread that created it and is the only writer of its
// doorbells.
//
// Errors from create (each message says what to do about it):
//   kNotFound        no PCI function at the address
//   kUnavailable     not bound to vfio-pci (says which driver has it and how to bind it), IOMMU
//                    group not viable, group already open elsewhere, device not responding
//                    (registers read all-ones)
//   kUnsupported     no IOMMU group (IOMMU off), no type1v2 IOMMU, the IOMMU's IOVA ranges do not
//                    hold nvmux's DMA layout, 4 KiB pages or the NVM command set not supported,
//                    a namespace format nvmux cannot drive
//   kPermissionDenied / errno codes   opening /dev/vfio/*, mmap, VFIO ioctls (the errno named)
//   kTimeout         CSTS.RDY did not follow CC.EN within CAP.TO (CAP, CC, CSTS in the message)
//   kIoError         controller fatal status (CSTS.CFS), or an admin command failed (its status)

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nvmux/nvme/controller.hpp"
#include "nvmux/nvme/queue_ids.hpp"

namespace nvmux::nvme {

struct VfioOptions {
  std::string name = "vfio0";
  std::string pci_address;  // "0000:00:04.0"; "00:04.0" means domain 0000
  std::size_t dma_arena_bytes = std::size_t{64} << 20;
  bool huge_pages = true;  // 2 MiB pages for the arena when the system has enough free
  std::uint16_t max_io_queues = 64;
  std::uint32_t admin_queue_entries = 32;
  std::uint64_t admin_timeout_ms = 10000;
};

class VfioController final : public Controller {
 public:
  static Result<std::unique_ptr<VfioController>> create(VfioOptions options);
  // A ControllerFactory for the shared test suite. A PCIe controller's namespaces exist already, so
  // the factory opens the first of `pci_addresses` whose namespaces fit the spec: at least as many,
  // the same block size in nsid order, at least as many blocks. Null and file namespaces are
  // kUnsupported.
  static ControllerFactory factory(VfioOptions base, std::vector<std::string> pci_addresses);

  ~VfioController() override;

  const std::string& name() const override { return options_.name; }
  const ControllerInfo& info() const override { return info_; }
  const std::vector<NamespaceInfo>& namespaces() const override { return namespaces_; }
  Result<std::unique_ptr<QueuePair>> create_io_qpair(const QueuePairOptions& options) override;
  Result<DmaBuffer> dma_alloc(std::size_t bytes, std::size_t align = kPageBytes) override;
  Result<ForeignRegion> register_memory(std::span<std::byte> memory) override;
  Result<CompletionEntry> admin_command(const SubmissionEntry& command, IoVec data) override;

  std::size_t registered_regions() const override;
  const VfioOptions& options() const { return options_; }
  // The controller's CAP register as read at bring-up.
  std::uint64_t capabilities() const { return cap_; }
  // Bytes per page of the DMA arena (2 MiB with huge pages, else 4 KiB).
  std::size_t dma_page_bytes() const;

 private:
  struct Vfio;  // container, group and device file descriptors; shared with the arena's IOMMU hooks
  explicit VfioController(VfioOptions options);
  // bring-up steps, in order
  Status open_device();
  Status map_dma_arena();
  Status reset_controller();
  Status enable_controller();
  Status identify();
  Status wait_ready(bool ready, const char* why);
  void shut_down();

  std::uint32_t read32(std::uint32_t offset) const;
  void write32(std::uint32_t offset, std::uint32_t value);
  std::atomic<std::uint32_t>* doorbell(std::uint32_t offset);
  std::unique_ptr<QueueTransport> make_transport(std::uint16_t qid, DmaBuffer sq, std::uint32_t sq_entries,
                                                 DmaBuffer cq, std::uint32_t cq_entries);
  void release_qid(std::uint16_t qid);
  std::string registers() const;       // CAP, CC, CSTS for messages
  std::string device_failure() const;  // the queue transports' health check

  VfioOptions options_;
  std::shared_ptr<Vfio> vfio_;
  std::byte* bar0_ = nullptr;
  std::size_t bar0_bytes_ = 0;
  std::uint64_t cap_ = 0;
  std::uint32_t doorbell_stride_shift_ = 0;  // CAP.DSTRD: doorbells 4 << DSTRD bytes apart
  std::uint64_t ready_timeout_ns_ = 0;       // CAP.TO
  std::shared_ptr<DmaArena> arena_;
  bool enabled_ = false;

  std::mutex admin_mutex_;  // serialises the admin queue (its qpair runs with the owner rule off)
  std::unique_ptr<QueuePair> admin_qp_;

  std::mutex qid_mutex_;
  IoQueueIds qids_;

  ControllerInfo info_;
  std::vector<NamespaceInfo> namespaces_;
};

}  // namespace nvmux::nvme
