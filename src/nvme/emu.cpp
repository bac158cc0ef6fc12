#include "nvmux/nvme/emu.hpp"

#include <sched.h>

#include <bit>
#include <cstring>

#include "admin_flow.hpp"
#include "emu_device.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"

namespace nvmux::nvme {

namespace {
constexpr std::uint16_t kIoQueuesRequested = 1024;    // ask for many; the device grants what it has
constexpr std::uint32_t kIdleSpinsBeforeYield = 256;  // device thread: polls with nothing to do, then yield
constexpr std::uint64_t kReadyTimeoutNs = 5'000'000'000ull;

// Runs the device once in the engine modes without a device thread (a poll hook).
void step_device(void* ctx) { static_cast<EmuDevice*>(ctx)->step(SIZE_MAX); }

// The health hook: CSTS.CFS set (a kControllerFatal fault) fails the queue pairs.
std::string device_health(void* ctx) {
  const std::uint32_t csts = static_cast<EmuDevice*>(ctx)->read_csts();
  if ((csts & kCstsFatal) == 0) return {};
  return fmt::format("controller fatal status (CSTS {:#x})", csts);
}
}  // namespace

// The queue transport over the emu device's doorbell registers; the inline engine steps the
// device at the start of every poll.
std::unique_ptr<QueueTransport> EmuController::make_transport(std::uint16_t qid, DmaBuffer sq, std::uint32_t sq_entries,
                                                              DmaBuffer cq, std::uint32_t cq_entries) {
  DeviceQueueTransport::Device d;
  d.ctrl = this;
  d.sq_tail_doorbell = &device_->sq_tail_doorbell(qid);
  d.cq_head_doorbell = &device_->cq_head_doorbell(qid);
  if (options_.engine == EmuEngine::kInline) {
    d.poll = step_device;
    d.poll_ctx = device_.get();
  }
  d.health = device_health;
  d.health_ctx = device_.get();
  d.release_qid = [](void* ctx, std::uint16_t q) { static_cast<EmuController*>(ctx)->release_qid(q); };
  d.release_ctx = this;
  return std::make_unique<DeviceQueueTransport>(d, qid, std::move(sq), sq_entries, std::move(cq), cq_entries);
}

EmuController::EmuController(EmuOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<EmuController>> EmuController::create(EmuOptions options) {
  if (options.namespaces.empty())
    return Status::error(StatusCode::kInvalidArgument, "emu controller without namespaces");
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
  if (options.max_transfer_bytes != 0 &&
      (options.max_transfer_bytes < kPageBytes || !std::has_single_bit(options.max_transfer_bytes))) {
    return Status::error(StatusCode::kInvalidArgument, "max_transfer_bytes {} is not 4 KiB times a power of two",
                         options.max_transfer_bytes);
  }
  if (options.admin_queue_entries < 2 || options.admin_queue_entries > 4096) {
    return Status::error(StatusCode::kInvalidArgument, "admin_queue_entries {} outside [2, 4096]",
                         options.admin_queue_entries);
  }
  std::unique_ptr<EmuController> ctrl(new EmuController(std::move(options)));
  NVMUX_RETURN_IF_ERROR(ctrl->bring_up());
  return ctrl;
}

ControllerFactory EmuController::factory(const EmuOptions& base) {
  return [base](const ControllerSpec& spec) -> Result<std::unique_ptr<Controller>> {
    EmuOptions options = base;
    options.name = spec.name;
    options.namespaces = spec.namespaces;
    auto ctrl = create(std::move(options));
    if (!ctrl.ok()) return ctrl.status();
    return std::unique_ptr<Controller>(std::move(ctrl).value());
  };
}

Status EmuController::bring_up() {
  NVMUX_RETURN_IF_ERROR(build_device());
  NVMUX_RETURN_IF_ERROR(enable_controller());
  auto ident = dma_alloc(kPageBytes);  // every Identify's data page
  NVMUX_RETURN_IF_ERROR(ident.status());
  NVMUX_RETURN_IF_ERROR(identify_controller(*this, *ident, info_).status());
  info_.max_queue_entries = static_cast<std::uint32_t>(device_->read_cap() & 0xffffu) + 1;
  auto namespaces = identify_namespaces(*this, *ident);
  if (!namespaces.ok()) return namespaces.status();
  namespaces_ = std::move(namespaces).value();
  auto granted = set_number_of_queues(*this, kIoQueuesRequested);
  if (!granted.ok()) return granted.status();
  info_.io_queues = *granted;
  qids_.reset(info_.io_queues);
  return {};
}

// The DMA arena, the namespaces' stores and the device on them; its thread in EmuEngine::kThread.
Status EmuController::build_device() {
  auto arena = DmaArena::create(options_.dma_arena_bytes);
  if (!arena.ok()) return arena.status();
  arena_ = std::move(arena).value();

  std::vector<std::unique_ptr<NamespaceStore>> stores;
  for (const NamespaceSpec& spec : options_.namespaces) {
    auto store = NamespaceStore::open(spec);
    if (!store.ok()) return store.status();
    stores.push_back(std::move(store).value());
  }
  EmuDevice::Config config;
  config.max_queue_entries = options_.max_queue_entries;
  config.max_io_queues = options_.max_io_queues;
  config.max_transfer_bytes = options_.max_transfer_bytes;
  config.latency_us = options_.latency_us;
  config.clock = options_.clock;
  device_ = std::make_unique<EmuDevice>(std::move(config), arena_, std::move(stores));
  if (options_.engine == EmuEngine::kThread) engine_ = std::thread([this] { run_engine(); });
  return {};
}

// Enables the controller like a PCIe driver: admin queue registers, CC.EN, wait for CSTS.RDY; then
// the admin queue pair on that memory.
Status EmuController::enable_controller() {
  const std::uint32_t n = options_.admin_queue_entries;
  auto memory = alloc_queue_memory(*this, n, n);
  if (!memory.ok()) return memory.status();
  device_->write_aqa((n - 1) | ((n - 1) << 16));
  device_->write_asq(memory->sq.iova());
  device_->write_acq(memory->cq.iova());
  device_->write_cc(kCcEnable | (6u << 16) | (4u << 20));  // MPS 0 (4 KiB), IOSQES 2^6, IOCQES 2^4
  NVMUX_RETURN_IF_ERROR(wait_until_ready());
  admin_qp_ = make_admin_qpair(*this, std::move(memory).value(), n, options_.admin_timeout_ms,
                               [this](auto... args) { return make_transport(std::move(args)...); });
  return {};
}

// Waits for CSTS.RDY (or CSTS.CFS) after CC.EN, stepping the device when it has no thread.
Status EmuController::wait_until_ready() {
  std::uint64_t deadline = monotonic_ns() + kReadyTimeoutNs;
  while ((device_->read_csts() & (kCstsReady | kCstsFatal)) == 0) {
    if (options_.engine != EmuEngine::kThread) device_->step(SIZE_MAX);
    if (monotonic_ns() > deadline) return Status::error(StatusCode::kTimeout, "{}: CSTS.RDY never set", name());
    std::this_thread::yield();
  }
  if ((device_->read_csts() & kCstsFatal) != 0) {
    return Status::error(StatusCode::kInternal, "{}: controller fatal status on enable", name());
  }
  return {};
}

EmuController::~EmuController() {
  {
    std::lock_guard lock(qid_mutex_);
    NVMUX_ASSERT(qids_.in_use() == 0, "{}: destroyed with {} I/O queue pairs alive; destroy them first", name(),
                 qids_.in_use());
  }
  admin_qp_.reset();
  if (device_) {
    device_->write_cc(0);  // shutdown: the device drops every queue and clears CSTS.RDY
    std::uint64_t deadline = monotonic_ns() + kReadyTimeoutNs;
    while (device_->read_csts() != 0 && monotonic_ns() < deadline) {
      if (options_.engine != EmuEngine::kThread) device_->step(SIZE_MAX);
      std::this_thread::yield();
    }
  }
  stop_engine_.store(true, std::memory_order_relaxed);  // only a flag: join() orders the rest
  if (engine_.joinable()) engine_.join();
}

void EmuController::run_engine() {
  set_current_thread_name(options_.name + "-dev");
  if (options_.engine_core >= 0) {
    Status s = pin_current_thread(options_.engine_core);
    if (!s.ok()) NVMUX_LOG_WARN("{}: device thread not pinned: {}", name(), s.to_string());
  }
  std::uint32_t idle = 0;
  while (!stop_engine_.load(std::memory_order_relaxed)) {  // a stop flag orders nothing
    if (device_->step(SIZE_MAX) != 0) {
      idle = 0;
      continue;
    }
    if (options_.engine_yields_when_idle && ++idle >= kIdleSpinsBeforeYield) {
      idle = 0;
      std::this_thread::yield();  // the machine is shared; stay responsive without hogging a core
    } else {
      cpu_relax();
    }
  }
}

std::size_t EmuController::step(std::size_t max_commands) { return device_->step(max_commands); }
void EmuController::inject_fault(const FaultRule& rule) { device_->inject_fault(rule); }
void EmuController::clear_faults() { device_->clear_faults(); }
EmuDeviceStats EmuController::device_stats() const { return device_->stats(); }

Result<DmaBuffer> EmuController::dma_alloc(std::size_t bytes, std::size_t align) { return arena_->alloc(bytes, align); }

// The device engine reaches memory only through the arena's translate(), which resolves foreign
// regions too: the engine copies straight between the namespace and the caller's memory.
Result<ForeignRegion> EmuController::register_memory(std::span<std::byte> memory) {
  return arena_->map_foreign(memory);
}

Result<CompletionEntry> EmuController::admin_command(const SubmissionEntry& command, IoVec data) {
  std::lock_guard lock(admin_mutex_);
  const bool step = options_.engine != EmuEngine::kThread;
  return wait_admin_command(*admin_qp_, command, data, step ? step_device : nullptr, device_.get());
}

void EmuController::release_qid(std::uint16_t qid) {
  std::lock_guard lock(qid_mutex_);
  qids_.release(qid, name());
}

Result<std::unique_ptr<QueuePair>> EmuController::create_io_qpair(const QueuePairOptions& options) {
  auto entries = io_queue_entries(name(), options, kMaxQueueEntriesSpec);
  if (!entries.ok()) return entries.status();
  std::uint16_t qid = 0;
  {
    std::lock_guard lock(qid_mutex_);
    auto acquired = qids_.acquire(name(), "the device granted");
    if (!acquired.ok()) return acquired.status();
    qid = *acquired;
  }
  auto qp = create_device_qpair(*this, qid, *entries, options,
                                [this](auto... args) { return make_transport(std::move(args)...); });
  if (!qp.ok()) release_qid(qid);
  return qp;
}

}  // namespace nvmux::nvme
