#pragma once
// The `emu` backend: a software NVMe controller, and the driver that brings it up.
//
// The device side (EmuDevice, private to src/nvme) models BAR0 registers (CAP, VS, CC, CSTS, AQA,
// ASQ, ACQ, doorbells at stride 128 bytes), reads submission entries from real SQ memory in the DMA
// arena when a tail doorbell moves, executes admin and NVM commands, and writes completion entries
// (phase tag last) into real CQ memory, stalling while a CQ is full until its head doorbell moves.
// The driver side (EmuController) enables the controller through CC/CSTS like a PCIe driver, then
// uses its admin queue: Identify Controller, Identify active namespace list and each Namespace,
// Set Features (Number of Queues), Create I/O CQ + SQ per qpair, Delete SQ + CQ on teardown.
//
// Engine modes:
//   kThread  a device thread polls the doorbells (pinned to engine_core when >= 0)
//   kInline  the device works inside each QueuePair::process_completions (and admin waits):
//            deterministic, single-threaded friendly, no extra core
//   kManual  nothing runs until the test calls step(); admin commands step the device themselves
//
// Threading: EmuController is thread-safe (see controller.hpp). step(), inject_fault(),
// clear_faults() and device_stats() may be called from any thread; step() calls are serialised.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nvmux/nvme/controller.hpp"
#include "nvmux/nvme/queue_ids.hpp"

namespace nvmux::nvme {

class EmuDevice;

enum class EmuEngine { kThread, kInline, kManual };

struct EmuOptions {
  std::string name = "emu0";
  std::vector<NamespaceSpec> namespaces;
  std::uint32_t max_queue_entries = 1024;       // CAP.MQES + 1, per queue (2..65536)
  std::uint16_t max_io_queues = 16;             // I/O SQ/CQ pairs the device grants (1..255)
  std::uint32_t max_transfer_bytes = 1u << 20;  // MDTS: 4 KiB x a power of two
  std::uint32_t admin_queue_entries = 32;
  EmuEngine engine = EmuEngine::kThread;
  int engine_core = -1;                 // kThread: pin the device thread here
  bool engine_yields_when_idle = true;  // kThread: yield after a run of idle polls (shared machines)
  std::uint32_t latency_us = 0;         // fixed latency added to every I/O completion
  std::size_t dma_arena_bytes = std::size_t{256} << 20;
  std::uint64_t admin_timeout_ms = 10000;
  // Device clock in ns (latency, delayed completions); empty = monotonic_ns(). Tests pass a manual clock.
  std::function<std::uint64_t()> clock;
};

// A fault applied to matching commands as the device fetches them.
struct FaultRule {
  enum class Kind {
    kStatus,           // do not execute; complete with `status` (build with make_status)
    kDelay,            // execute; post the completion delay_us later (other completions overtake it)
    kDrop,             // execute; never post a completion
    kDuplicate,        // execute; post the completion twice
    kBadCid,           // execute; post the completion with command id `bad_cid` (a broken or foreign device)
    kControllerFatal,  // do not execute; set CSTS.CFS and stop: no command is answered any more
  };
  static constexpr std::uint16_t kAnyIoQueue = 0xffff;
  static constexpr int kAnyOpcode = -1;

  Kind kind = Kind::kStatus;
  std::uint16_t qid = kAnyIoQueue;  // 0 targets the admin queue; kAnyIoQueue every I/O queue
  int opcode = kAnyOpcode;
  std::uint32_t skip = 0;   // let this many matching commands through first
  std::uint32_t count = 1;  // then hit this many (0 = every one from then on)
  std::uint16_t status = make_status(GenericStatus::kInternalDeviceError);
  std::uint64_t delay_us = 0;
  std::uint16_t bad_cid = 0xfffe;
};

struct EmuDeviceStats {
  std::uint64_t commands = 0;  // fetched from any SQ
  std::uint64_t admin_commands = 0;
  std::uint64_t completions_posted = 0;  // entries written into CQs
  std::uint64_t cq_full_stalls = 0;      // steps in which a CQ was full with completions waiting
  std::uint64_t faults_injected = 0;
  std::uint64_t invalid_doorbell_writes = 0;
  std::uint64_t bytes_read = 0;  // moved from the medium to host memory
  std::uint64_t bytes_written = 0;
};

class EmuController final : public Controller {
 public:
  // Builds the device and brings it up through CC/CSTS and the admin queue. Errors: kInvalidArgument
  // (options out of range: block size not 512/4096, no namespaces, limits), the errno code of a failed
  // file or memory setup (Status::from_errno), kTimeout/kIoError (bring-up command failed, with the device status).
  static Result<std::unique_ptr<EmuController>> create(EmuOptions options);
  // A ControllerFactory for the shared test suite: `base` with the spec's name and namespaces.
  static ControllerFactory factory(const EmuOptions& base);

  ~EmuController() override;

  const std::string& name() const override { return options_.name; }
  const ControllerInfo& info() const override { return info_; }
  const std::vector<NamespaceInfo>& namespaces() const override { return namespaces_; }
  Result<std::unique_ptr<QueuePair>> create_io_qpair(const QueuePairOptions& options) override;
  Result<DmaBuffer> dma_alloc(std::size_t bytes, std::size_t align = kPageBytes) override;
  Result<ForeignRegion> register_memory(std::span<std::byte> memory) override;
  std::size_t registered_regions() const override { return arena_->foreign_regions_in_use(); }
  Result<CompletionEntry> admin_command(const SubmissionEntry& command, IoVec data) override;

  // Runs the device once: fetch and execute up to `max_commands` commands per SQ, post every due
  // completion that fits. Returns the work done (commands + completions). Any engine mode.
  std::size_t step(std::size_t max_commands = SIZE_MAX);
  void inject_fault(const FaultRule& rule);
  void clear_faults();
  EmuDeviceStats device_stats() const;
  const EmuOptions& options() const { return options_; }

 private:
  explicit EmuController(EmuOptions options);
  // bring_up() and its steps, in the order it takes them.
  Status bring_up();
  Status build_device();
  Status enable_controller();
  Status wait_until_ready();
  // A DeviceQueueTransport (src/nvme/admin_flow.hpp) over the device's doorbells for queue `qid`.
  std::unique_ptr<QueueTransport> make_transport(std::uint16_t qid, DmaBuffer sq, std::uint32_t sq_entries,
                                                 DmaBuffer cq, std::uint32_t cq_entries);
  void release_qid(std::uint16_t qid);
  void run_engine();

  EmuOptions options_;
  std::shared_ptr<DmaArena> arena_;
  std::unique_ptr<EmuDevice> device_;
  std::thread engine_;
  std::atomic<bool> stop_engine_{false};

  std::mutex admin_mutex_;  // serialises the admin queue (its qpair runs with the owner rule off)
  std::unique_ptr<QueuePair> admin_qp_;

  std::mutex qid_mutex_;
  IoQueueIds qids_;

  ControllerInfo info_;
  std::vector<NamespaceInfo> namespaces_;
};

}  // namespace nvmux::nvme
