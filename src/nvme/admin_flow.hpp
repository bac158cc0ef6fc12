#pragma once
// The driver's side of a controller's admin flow, shared by every backend whose controller has a
// real admin queue (emu's driver, vfio): Identify, Set Features (Number of Queues), Create and
// Delete I/O queues. Each step sends its commands through Controller::admin_command and turns a
// device error status into a Status naming the command and the status.
//
// What the device answers is input, not an invariant: a namespace list with gaps, a namespace with
// metadata, a grant of zero queues are errors here, never assertions.
//
// Threading: plain functions over Controller::admin_command, which is thread-safe.
//
// Errors: admin_command's (kTimeout, kAborted), kIoError (the device's status, named), kUnsupported
// (a namespace format nvmux's driver cannot use).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nvmux/common/status.hpp"
#include "nvmux/nvme/controller.hpp"
#include "nvmux/nvme/queue_ids.hpp"

namespace nvmux::nvme {

// Identify Controller into `info` (model, serial, firmware, ids, version, MDTS, ONCS, VWC); returns
// NN, the largest namespace id the controller may use (not the number of active namespaces).
Result<std::uint32_t> identify_controller(Controller& ctrl, const DmaBuffer& page, ControllerInfo& info);

// The active namespace list (CNS 02h), then Identify Namespace for each. nvmux numbers namespaces
// densely from 1 (Controller::namespaces()), so a list with a gap is kUnsupported, as is a format
// with metadata or a block size other than 512 B .. 64 KiB.
Result<std::vector<NamespaceInfo>> identify_namespaces(Controller& ctrl, const DmaBuffer& page);

// Set Features (Number of Queues) asking for `wanted` I/O queue pairs; returns how many the
// controller granted (the smaller of its SQ and CQ grants, at most `wanted`).
Result<std::uint16_t> set_number_of_queues(Controller& ctrl, std::uint16_t wanted);

// Create I/O CQ (physically contiguous, interrupts off: completions are polled), then Create I/O
// SQ on it. When the SQ is refused the CQ is deleted again. A refused size or id is kInvalidArgument.
Status create_io_queues(Controller& ctrl, std::uint16_t qid, std::uint32_t sq_entries, std::uint32_t cq_entries,
                        std::uint64_t sq_iova, std::uint64_t cq_iova);
// Delete I/O SQ, then Delete I/O CQ.
Status delete_io_queues(Controller& ctrl, std::uint16_t qid);

// A device queue's memory from `ctrl`'s DMA arena: SQ, CQ and one PRP list page per command id.
struct QueueMemory {
  DmaBuffer sq;
  DmaBuffer cq;
  DmaBuffer prp_pages;
};
Result<QueueMemory> alloc_queue_memory(Controller& ctrl, std::uint32_t sq_entries, std::uint32_t cq_entries);

// Builds a queue transport for queue `qid` on its SQ and CQ memory (DeviceQueueTransport with the
// backend's doorbells and hooks).
using TransportMaker = std::function<std::unique_ptr<QueueTransport>(
    std::uint16_t qid, DmaBuffer sq, std::uint32_t sq_entries, DmaBuffer cq, std::uint32_t cq_entries)>;

// The admin queue pair on `memory` (AQA/ASQ/ACQ already name it): `entries` slots, commands timed
// out after `timeout_ms`, the owner rule off because the controller's admin mutex serialises it.
std::unique_ptr<QueuePair> make_admin_qpair(Controller& ctrl, QueueMemory memory, std::uint32_t entries,
                                            std::uint64_t timeout_ms, const TransportMaker& make_transport);

// I/O queue pair `qid` (already reserved by the caller): its memory, Create I/O CQ + SQ, and the
// QueuePair owned by the calling thread. On an error nothing is left on the device; the caller
// releases the qid.
Result<std::unique_ptr<QueuePair>> create_device_qpair(Controller& ctrl, std::uint16_t qid, const QueueEntries& entries,
                                                       const QueuePairOptions& options,
                                                       const TransportMaker& make_transport);

// Submits `command` on the admin queue pair and polls it until that command completes, calling
// `step(step_ctx)` before every poll when given (a device without its own thread). The caller holds
// the lock that serialises the admin queue. Returns the completion entry (success or a device
// status); kTimeout / kAborted when the admin queue pair timed the command out or failed.
Result<CompletionEntry> wait_admin_command(QueuePair& admin, const SubmissionEntry& command, IoVec data,
                                           void (*step)(void*) = nullptr, void* step_ctx = nullptr);

// The transport of a queue on a controller with real queues (emu's device, a PCIe controller):
// SQ and CQ memory in the DMA arena, doorbell registers the device watches. For an I/O queue,
// destruction deletes the device queues (Delete I/O SQ, then CQ) and hands the qid back; reset()
// deletes and re-creates them. The admin queue (qid 0) lives as long as the controller is enabled
// and cannot be reset here.
//
// Threading: owner thread of its QueuePair, like every transport; the admin commands it sends go
// through Controller::admin_command (thread-safe).
class DeviceQueueTransport final : public QueueTransport {
 public:
  struct Device {
    Controller* ctrl = nullptr;  // runs Delete / Create I/O queue commands; outlives the transport
    std::atomic<std::uint32_t>* sq_tail_doorbell = nullptr;
    std::atomic<std::uint32_t>* cq_head_doorbell = nullptr;
    void (*poll)(void* ctx) = nullptr;  // called at the start of every process_completions when set
    void* poll_ctx = nullptr;
    // Every kHealthCheckPolls polls when set: the device's failure, "" while it is healthy.
    std::string (*health)(void* ctx) = nullptr;
    void* health_ctx = nullptr;
    void (*release_qid)(void* ctx, std::uint16_t qid) = nullptr;  // after an I/O queue is deleted
    void* release_ctx = nullptr;
  };
  DeviceQueueTransport(const Device& device, std::uint16_t qid, DmaBuffer sq, std::uint32_t sq_entries, DmaBuffer cq,
                       std::uint32_t cq_entries)
      : device_(device), qid_(qid), sq_(std::move(sq)), cq_(std::move(cq)), sq_entries_(sq_entries),
        cq_entries_(cq_entries) {}
  ~DeviceQueueTransport() override;
  DeviceQueueTransport(const DeviceQueueTransport&) = delete;
  DeviceQueueTransport& operator=(const DeviceQueueTransport&) = delete;

  std::uint16_t qid() const override { return qid_; }
  std::span<SubmissionEntry> sq() override { return {reinterpret_cast<SubmissionEntry*>(sq_.data()), sq_entries_}; }
  std::span<CompletionEntry> cq() override { return {reinterpret_cast<CompletionEntry*>(cq_.data()), cq_entries_}; }
  std::atomic<std::uint32_t>& sq_tail_doorbell() override { return *device_.sq_tail_doorbell; }
  std::atomic<std::uint32_t>& cq_head_doorbell() override { return *device_.cq_head_doorbell; }
  // One health check (a register read: ~1 us on real PCIe) per this many polls.
  static constexpr std::uint32_t kHealthCheckPolls = 1024;

  bool poll() override {
    if (device_.poll != nullptr) device_.poll(device_.poll_ctx);
    if (device_.health != nullptr && ++polls_since_check_ >= kHealthCheckPolls) [[unlikely]] {
      polls_since_check_ = 0;
      failure_ = device_.health(device_.health_ctx);
      return failure_.empty();
    }
    return true;
  }
  std::string device_failure() const override { return failure_; }
  Status reset() override;

 private:
  Device device_;
  std::uint16_t qid_;
  DmaBuffer sq_;
  DmaBuffer cq_;
  std::uint32_t sq_entries_;
  std::uint32_t cq_entries_;
  std::uint32_t polls_since_check_ = 0;
  std::string failure_;
};

}  // namespace nvmux::nvme
