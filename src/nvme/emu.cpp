#include "nvmux/nvme/emu.hpp"

#include <sched.h>

#include <bit>
#include <cstring>

#include "emu_device.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"

namespace nvmux::nvme {

namespace {
constexpr std::uint16_t kIoQueuesRequested = 1024;    // ask for many; the device grants what it has
constexpr std::uint32_t kIdleSpinsBeforeYield = 256;  // device thread: polls with nothing to do, then yield
constexpr std::uint64_t kReadyTimeoutNs = 5'000'000'000ull;

std::string trim(const char* field, std::size_t width) {
  std::string s(field, width);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}
}  // namespace

// The emu queue transport: real SQ/CQ memory in the DMA arena, the device's doorbell registers.
class EmuController::Transport final : public QueueTransport {
 public:
  Transport(EmuController* ctrl, std::uint16_t qid, DmaBuffer sq, std::uint32_t sq_entries, DmaBuffer cq,
            std::uint32_t cq_entries)
      : ctrl_(ctrl), qid_(qid), sq_(std::move(sq)), cq_(std::move(cq)), sq_entries_(sq_entries),
        cq_entries_(cq_entries) {}
  ~Transport() override {
    if (qid_ == 0) return;  // the admin queue lives as long as the controller is enabled
    Status s = ctrl_->delete_device_queues(qid_);
    if (!s.ok()) NVMUX_LOG_ERROR("{}: deleting I/O queue {}: {}", ctrl_->name(), qid_, s.to_string());
    ctrl_->release_qid(qid_);
  }
  std::uint16_t qid() const override { return qid_; }
  std::span<SubmissionEntry> sq() override { return {reinterpret_cast<SubmissionEntry*>(sq_.data()), sq_entries_}; }
  std::span<CompletionEntry> cq() override { return {reinterpret_cast<CompletionEntry*>(cq_.data()), cq_entries_}; }
  std::atomic<std::uint32_t>& sq_tail_doorbell() override { return ctrl_->device_->sq_tail_doorbell(qid_); }
  std::atomic<std::uint32_t>& cq_head_doorbell() override { return ctrl_->device_->cq_head_doorbell(qid_); }
  void poll() override {
    if (ctrl_->options_.engine == EmuEngine::kInline) ctrl_->device_->step(SIZE_MAX);
  }
  Status reset() override {
    if (qid_ == 0) return Status::error(StatusCode::kUnsupported, "the admin queue is reset with the controller");
    NVMUX_RETURN_IF_ERROR(ctrl_->delete_device_queues(qid_));
    std::memset(sq_.data(), 0, sq_.size());
    std::memset(cq_.data(), 0, cq_.size());  // phase 0 everywhere: nothing new yet
    return ctrl_->create_device_queues(qid_, sq_entries_, cq_entries_, sq_, cq_);
  }

 private:
  EmuController* ctrl_;
  std::uint16_t qid_;
  DmaBuffer sq_;
  DmaBuffer cq_;
  std::uint32_t sq_entries_;
  std::uint32_t cq_entries_;
};

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
  auto namespace_count = identify_controller(*ident);
  if (!namespace_count.ok()) return namespace_count.status();
  NVMUX_RETURN_IF_ERROR(identify_namespaces(*ident, *namespace_count));
  return set_number_of_queues();
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
  auto asq = dma_alloc(std::size_t{n} * sizeof(SubmissionEntry));
  auto acq = dma_alloc(std::size_t{n} * sizeof(CompletionEntry));
  auto prp = dma_alloc(std::size_t{n - 1} * kPageBytes);
  auto scratch = dma_alloc(kPageBytes);
  for (const Status* s : {&asq.status(), &acq.status(), &prp.status(), &scratch.status()}) NVMUX_RETURN_IF_ERROR(*s);
  admin_scratch_ = std::move(scratch).value();
  device_->write_aqa((n - 1) | ((n - 1) << 16));
  device_->write_asq(asq->iova());
  device_->write_acq(acq->iova());
  device_->write_cc(kCcEnable | (6u << 16) | (4u << 20));  // MPS 0 (4 KiB), IOSQES 2^6, IOCQES 2^4
  NVMUX_RETURN_IF_ERROR(wait_until_ready());
  QueuePairOptions admin_options;
  admin_options.name = options_.name + "/admin";
  admin_options.sq_entries = n;
  admin_options.access = QueuePairAccess::kCallerSerialised;  // admin_mutex_ serialises every user
  admin_options.timeout_us = options_.admin_timeout_ms * 1000;
  admin_qp_ = std::make_unique<QueuePair>(
      std::make_unique<Transport>(this, 0, std::move(asq).value(), n, std::move(acq).value(), n),
      std::move(prp).value(), std::vector<NamespaceInfo>{}, 0, admin_options);
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

// Runs one Identify command into `page`; `what` names it in the error.
Status EmuController::identify(const SubmissionEntry& cmd, const char* what, const DmaBuffer& page) {
  auto cpl = admin_command(cmd, page.whole());
  if (!cpl.ok()) return cpl.status();
  if (!cpl->success()) {
    return Status::error(StatusCode::kIoError, "{}: {} failed: {}", name(), what,
                         describe_status(cpl->sct(), cpl->sc()));
  }
  return {};
}

// Identify Controller into info_; returns the namespace count it reports.
Result<std::uint32_t> EmuController::identify_controller(const DmaBuffer& page) {
  SubmissionEntry cmd{};
  cmd.opcode = static_cast<std::uint8_t>(AdminOpcode::kIdentify);
  cmd.cdw10 = static_cast<std::uint32_t>(IdentifyCns::kController);
  NVMUX_RETURN_IF_ERROR(identify(cmd, "Identify Controller", page));
  const auto* idc = reinterpret_cast<const IdentifyController*>(page.data());
  info_.model = trim(idc->mn, sizeof(idc->mn));
  info_.serial = trim(idc->sn, sizeof(idc->sn));
  info_.firmware = trim(idc->fr, sizeof(idc->fr));
  info_.vendor_id = idc->vid;
  info_.controller_id = idc->cntlid;
  info_.version = idc->ver;
  info_.max_transfer_bytes = idc->mdts == 0 ? 0 : kPageBytes << idc->mdts;
  info_.max_queue_entries = static_cast<std::uint32_t>(device_->read_cap() & 0xffffu) + 1;
  info_.oncs = idc->oncs;
  info_.volatile_write_cache = (idc->vwc & 1u) != 0;
  return std::uint32_t{idc->nn};
}

// Active namespace list, then Identify Namespace for each, into namespaces_.
Status EmuController::identify_namespaces(const DmaBuffer& page, std::uint32_t namespace_count) {
  SubmissionEntry cmd{};
  cmd.opcode = static_cast<std::uint8_t>(AdminOpcode::kIdentify);
  cmd.cdw10 = static_cast<std::uint32_t>(IdentifyCns::kActiveNamespaceList);
  NVMUX_RETURN_IF_ERROR(identify(cmd, "Identify active namespace list", page));
  std::vector<std::uint32_t> nsids;
  const auto* list = reinterpret_cast<const std::uint32_t*>(page.data());
  for (std::uint32_t i = 0; i < kPageBytes / 4 && list[i] != 0; ++i) nsids.push_back(list[i]);
  for (std::uint32_t nsid : nsids) {
    cmd = SubmissionEntry{};
    cmd.opcode = static_cast<std::uint8_t>(AdminOpcode::kIdentify);
    cmd.nsid = nsid;
    cmd.cdw10 = static_cast<std::uint32_t>(IdentifyCns::kNamespace);
    NVMUX_RETURN_IF_ERROR(identify(cmd, "Identify Namespace", page));
    const auto* ns = reinterpret_cast<const IdentifyNamespace*>(page.data());
    NVMUX_ASSERT(nsid == namespaces_.size() + 1, "{}: namespaces are not dense: nsid {} after {}", name(), nsid,
                 namespaces_.size());
    namespaces_.push_back(NamespaceInfo{nsid, ns->nsze, 1u << ns->lbaf[ns->flbas & 0xfu].lbads});
  }
  NVMUX_ASSERT(namespaces_.size() == namespace_count, "{}: identify reports {} namespaces, the list {}", name(),
               namespace_count, namespaces_.size());
  return {};
}

// Set Features: Number of Queues (0's based in both halves); info_.io_queues is what is granted.
Status EmuController::set_number_of_queues() {
  SubmissionEntry cmd{};
  cmd.opcode = static_cast<std::uint8_t>(AdminOpcode::kSetFeatures);
  cmd.cdw10 = static_cast<std::uint32_t>(FeatureId::kNumberOfQueues);
  cmd.cdw11 = (kIoQueuesRequested - 1u) | ((kIoQueuesRequested - 1u) << 16);
  auto cpl = admin_command(cmd, {});
  if (!cpl.ok()) return cpl.status();
  if (!cpl->success()) {
    return Status::error(StatusCode::kIoError, "{}: Set Features (Number of Queues) failed: {}", name(),
                         describe_status(cpl->sct(), cpl->sc()));
  }
  info_.io_queues = static_cast<std::uint16_t>(std::min(cpl->cdw0 & 0xffffu, cpl->cdw0 >> 16) + 1);
  qids_.reset(info_.io_queues);
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
  struct Waiter {
    bool done = false;
    IoCompletion completion;
  } waiter;
  auto on_done = [](void* ctx, const IoCompletion& c) {
    auto* w = static_cast<Waiter*>(ctx);
    w->completion = c;
    w->done = true;
  };
  std::lock_guard lock(admin_mutex_);
  NVMUX_RETURN_IF_ERROR(admin_qp_->submit_raw(command, data, on_done, &waiter));
  while (!waiter.done) {
    if (options_.engine != EmuEngine::kThread) device_->step(SIZE_MAX);
    auto n = admin_qp_->process_completions();
    if (!n.ok()) return n.status();  // the callback ran with kAborted too
    if (!waiter.done) std::this_thread::yield();
  }
  StatusCode code = waiter.completion.status.code();
  if (code == StatusCode::kTimeout || code == StatusCode::kAborted) return waiter.completion.status;
  return waiter.completion.cqe;  // success or a device status, for the caller to read
}

Status EmuController::create_device_queues(std::uint16_t qid, std::uint32_t sq_entries, std::uint32_t cq_entries,
                                           const DmaBuffer& sq, const DmaBuffer& cq) {
  SubmissionEntry cmd{};
  cmd.opcode = static_cast<std::uint8_t>(AdminOpcode::kCreateIoCq);
  cmd.prp1 = cq.iova();
  cmd.cdw10 = qid | ((cq_entries - 1) << 16);
  cmd.cdw11 = kQueuePhysicallyContiguous;
  auto cpl = admin_command(cmd, {});
  if (!cpl.ok()) return cpl.status();
  if (!cpl->success()) {
    return Status::error(StatusCode::kInvalidArgument, "{}: Create I/O CQ {} of {} entries: {}", name(), qid,
                         cq_entries, describe_status(cpl->sct(), cpl->sc()));
  }
  cmd = SubmissionEntry{};
  cmd.opcode = static_cast<std::uint8_t>(AdminOpcode::kCreateIoSq);
  cmd.prp1 = sq.iova();
  cmd.cdw10 = qid | ((sq_entries - 1) << 16);
  cmd.cdw11 = kQueuePhysicallyContiguous | (std::uint32_t{qid} << 16);
  cpl = admin_command(cmd, {});
  if (!cpl.ok() || !cpl->success()) {
    Status why = cpl.ok() ? Status::error(StatusCode::kInvalidArgument, "{}: Create I/O SQ {} of {} entries: {}",
                                          name(), qid, sq_entries, describe_status(cpl->sct(), cpl->sc()))
                          : cpl.status();
    SubmissionEntry del{};
    del.opcode = static_cast<std::uint8_t>(AdminOpcode::kDeleteIoCq);
    del.cdw10 = qid;
    (void)admin_command(del, {});
    return why;
  }
  return {};
}

Status EmuController::delete_device_queues(std::uint16_t qid) {
  for (AdminOpcode op : {AdminOpcode::kDeleteIoSq, AdminOpcode::kDeleteIoCq}) {
    SubmissionEntry cmd{};
    cmd.opcode = static_cast<std::uint8_t>(op);
    cmd.cdw10 = qid;
    auto cpl = admin_command(cmd, {});
    if (!cpl.ok()) return cpl.status();
    if (!cpl->success()) {
      return Status::error(StatusCode::kIoError, "{}: Delete I/O {} {}: {}", name(),
                           op == AdminOpcode::kDeleteIoSq ? "SQ" : "CQ", qid, describe_status(cpl->sct(), cpl->sc()));
    }
  }
  return {};
}

void EmuController::release_qid(std::uint16_t qid) {
  std::lock_guard lock(qid_mutex_);
  qids_.release(qid, name());
}

Result<std::unique_ptr<QueuePair>> EmuController::create_io_qpair(const QueuePairOptions& options) {
  auto entries = io_queue_entries(name(), options, kMaxQueueEntriesSpec);
  if (!entries.ok()) return entries.status();
  std::uint32_t sq_entries = entries->sq;
  std::uint32_t cq_entries = entries->cq;
  std::uint16_t qid = 0;
  {
    std::lock_guard lock(qid_mutex_);
    auto acquired = qids_.acquire(name(), "the device granted");
    if (!acquired.ok()) return acquired.status();
    qid = *acquired;
  }
  auto sq = dma_alloc(std::size_t{sq_entries} * sizeof(SubmissionEntry));
  auto cq = dma_alloc(std::size_t{cq_entries} * sizeof(CompletionEntry));
  auto prp = dma_alloc(std::size_t{sq_entries - 1} * kPageBytes);
  Status s = !sq.ok() ? sq.status() : !cq.ok() ? cq.status() : !prp.ok() ? prp.status() : Status();
  if (s.ok()) s = create_device_queues(qid, sq_entries, cq_entries, *sq, *cq);
  if (!s.ok()) {
    release_qid(qid);
    return s;
  }
  QueuePairOptions qp_options = options;
  if (qp_options.name.empty()) qp_options.name = fmt::format("{}/q{}", name(), qid);
  auto transport =
      std::make_unique<Transport>(this, qid, std::move(sq).value(), sq_entries, std::move(cq).value(), cq_entries);
  return std::make_unique<QueuePair>(std::move(transport), std::move(prp).value(), namespaces_,
                                     info_.max_transfer_bytes, std::move(qp_options));
}

}  // namespace nvmux::nvme
