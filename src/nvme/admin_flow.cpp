#include "admin_flow.hpp"

#include <algorithm>
#include <cstring>
#include <thread>

#include "nvmux/common/log.hpp"

namespace nvmux::nvme {

namespace {

std::string trim(const char* field, std::size_t width) {
  std::string s(field, width);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

// Runs `cmd` with `data`; a device error becomes kIoError naming `what`.
Status run(Controller& ctrl, const SubmissionEntry& cmd, IoVec data, std::string_view what) {
  auto cpl = ctrl.admin_command(cmd, data);
  if (!cpl.ok()) return cpl.status();
  if (!cpl->success()) {
    return Status::error(StatusCode::kIoError, "{}: {} failed: {}", ctrl.name(), what,
                         describe_status(cpl->sct(), cpl->sc()));
  }
  return {};
}

SubmissionEntry identify_command(IdentifyCns cns, std::uint32_t nsid) {
  SubmissionEntry cmd{};
  cmd.opcode = static_cast<std::uint8_t>(AdminOpcode::kIdentify);
  cmd.nsid = nsid;
  cmd.cdw10 = static_cast<std::uint32_t>(cns);
  return cmd;
}

}  // namespace

Result<std::uint32_t> identify_controller(Controller& ctrl, const DmaBuffer& page, ControllerInfo& info) {
  NVMUX_RETURN_IF_ERROR(run(ctrl, identify_command(IdentifyCns::kController, 0), page.whole(), "Identify Controller"));
  const auto* idc = reinterpret_cast<const IdentifyController*>(page.data());
  info.model = trim(idc->mn, sizeof(idc->mn));
  info.serial = trim(idc->sn, sizeof(idc->sn));
  info.firmware = trim(idc->fr, sizeof(idc->fr));
  info.vendor_id = idc->vid;
  info.controller_id = idc->cntlid;
  info.version = idc->ver;
  info.max_transfer_bytes = idc->mdts == 0 ? 0 : kPageBytes << std::min<std::uint32_t>(idc->mdts, 19);
  info.oncs = idc->oncs;
  info.volatile_write_cache = (idc->vwc & 1u) != 0;
  return std::uint32_t{idc->nn};
}

Result<std::vector<NamespaceInfo>> identify_namespaces(Controller& ctrl, const DmaBuffer& page) {
  NVMUX_RETURN_IF_ERROR(run(ctrl, identify_command(IdentifyCns::kActiveNamespaceList, 0), page.whole(),
                            "Identify active namespace list"));
  std::vector<std::uint32_t> nsids;
  const auto* list = reinterpret_cast<const std::uint32_t*>(page.data());
  for (std::uint32_t i = 0; i < kMaxNamespaces && list[i] != 0; ++i) nsids.push_back(list[i]);
  std::vector<NamespaceInfo> namespaces;
  for (std::uint32_t nsid : nsids) {
    if (nsid != namespaces.size() + 1) {
      return Status::error(StatusCode::kUnsupported,
                           "{}: active namespace {} follows {}: nvmux numbers namespaces densely from 1", ctrl.name(),
                           nsid, namespaces.size());
    }
    NVMUX_RETURN_IF_ERROR(run(ctrl, identify_command(IdentifyCns::kNamespace, nsid), page.whole(),
                              fmt::format("Identify Namespace {}", nsid)));
    const auto* ns = reinterpret_cast<const IdentifyNamespace*>(page.data());
    const LbaFormat& format = ns->lbaf[ns->flbas & 0xfu];
    if (format.ms != 0 || format.lbads < 9 || format.lbads > 16) {
      return Status::error(StatusCode::kUnsupported,
                           "{}: namespace {} is formatted with 2^{}-byte blocks and {} bytes of metadata; nvmux "
                           "drives 512 B .. 64 KiB blocks without metadata",
                           ctrl.name(), nsid, format.lbads, format.ms);
    }
    namespaces.push_back(NamespaceInfo{nsid, ns->nsze, 1u << format.lbads});
  }
  return namespaces;
}

Result<std::uint16_t> set_number_of_queues(Controller& ctrl, std::uint16_t wanted) {
  SubmissionEntry cmd{};
  cmd.opcode = static_cast<std::uint8_t>(AdminOpcode::kSetFeatures);
  cmd.cdw10 = static_cast<std::uint32_t>(FeatureId::kNumberOfQueues);
  cmd.cdw11 = (wanted - 1u) | ((wanted - 1u) << 16);  // 0's based, SQs and CQs
  auto cpl = ctrl.admin_command(cmd, {});
  if (!cpl.ok()) return cpl.status();
  if (!cpl->success()) {
    return Status::error(StatusCode::kIoError, "{}: Set Features (Number of Queues) failed: {}", ctrl.name(),
                         describe_status(cpl->sct(), cpl->sc()));
  }
  // The grant may exceed the request (the controller reports what it allocated); use no more than asked.
  const std::uint32_t granted = std::min(cpl->cdw0 & 0xffffu, cpl->cdw0 >> 16) + 1;
  return static_cast<std::uint16_t>(std::min<std::uint32_t>(granted, wanted));
}

Status create_io_queues(Controller& ctrl, std::uint16_t qid, std::uint32_t sq_entries, std::uint32_t cq_entries,
                        std::uint64_t sq_iova, std::uint64_t cq_iova) {
  SubmissionEntry cmd{};
  cmd.opcode = static_cast<std::uint8_t>(AdminOpcode::kCreateIoCq);
  cmd.prp1 = cq_iova;
  cmd.cdw10 = qid | ((cq_entries - 1) << 16);
  cmd.cdw11 = kQueuePhysicallyContiguous;  // IEN = 0: no interrupt vector, completions are polled
  auto cpl = ctrl.admin_command(cmd, {});
  if (!cpl.ok()) return cpl.status();
  if (!cpl->success()) {
    return Status::error(StatusCode::kInvalidArgument, "{}: Create I/O CQ {} of {} entries: {}", ctrl.name(), qid,
                         cq_entries, describe_status(cpl->sct(), cpl->sc()));
  }
  cmd = SubmissionEntry{};
  cmd.opcode = static_cast<std::uint8_t>(AdminOpcode::kCreateIoSq);
  cmd.prp1 = sq_iova;
  cmd.cdw10 = qid | ((sq_entries - 1) << 16);
  cmd.cdw11 = kQueuePhysicallyContiguous | (std::uint32_t{qid} << 16);
  cpl = ctrl.admin_command(cmd, {});
  if (!cpl.ok() || !cpl->success()) {
    Status why = cpl.ok() ? Status::error(StatusCode::kInvalidArgument, "{}: Create I/O SQ {} of {} entries: {}",
                                          ctrl.name(), qid, sq_entries, describe_status(cpl->sct(), cpl->sc()))
                          : cpl.status();
    SubmissionEntry del{};
    del.opcode = static_cast<std::uint8_t>(AdminOpcode::kDeleteIoCq);
    del.cdw10 = qid;
    (void)ctrl.admin_command(del, {});
    return why;
  }
  return {};
}

Status delete_io_queues(Controller& ctrl, std::uint16_t qid) {
  for (AdminOpcode op : {AdminOpcode::kDeleteIoSq, AdminOpcode::kDeleteIoCq}) {
    SubmissionEntry cmd{};
    cmd.opcode = static_cast<std::uint8_t>(op);
    cmd.cdw10 = qid;
    NVMUX_RETURN_IF_ERROR(
        run(ctrl, cmd, {}, fmt::format("Delete I/O {} {}", op == AdminOpcode::kDeleteIoSq ? "SQ" : "CQ", qid)));
  }
  return {};
}

Result<QueueMemory> alloc_queue_memory(Controller& ctrl, std::uint32_t sq_entries, std::uint32_t cq_entries) {
  auto sq = ctrl.dma_alloc(std::size_t{sq_entries} * sizeof(SubmissionEntry));
  if (!sq.ok()) return sq.status();
  auto cq = ctrl.dma_alloc(std::size_t{cq_entries} * sizeof(CompletionEntry));
  if (!cq.ok()) return cq.status();
  auto prp = ctrl.dma_alloc(std::size_t{sq_entries - 1} * kPageBytes);
  if (!prp.ok()) return prp.status();
  return QueueMemory{std::move(sq).value(), std::move(cq).value(), std::move(prp).value()};
}

std::unique_ptr<QueuePair> make_admin_qpair(Controller& ctrl, QueueMemory memory, std::uint32_t entries,
                                            std::uint64_t timeout_ms, const TransportMaker& make_transport) {
  QueuePairOptions options;
  options.name = ctrl.name() + "/admin";
  options.sq_entries = entries;
  options.access = QueuePairAccess::kCallerSerialised;  // the controller's admin mutex serialises every user
  options.timeout_us = timeout_ms * 1000;
  return std::make_unique<QueuePair>(make_transport(0, std::move(memory.sq), entries, std::move(memory.cq), entries),
                                     std::move(memory.prp_pages), std::vector<NamespaceInfo>{}, 0, options);
}

Result<std::unique_ptr<QueuePair>> create_device_qpair(Controller& ctrl, std::uint16_t qid, const QueueEntries& entries,
                                                       const QueuePairOptions& options,
                                                       const TransportMaker& make_transport) {
  auto memory = alloc_queue_memory(ctrl, entries.sq, entries.cq);
  if (!memory.ok()) return memory.status();
  NVMUX_RETURN_IF_ERROR(create_io_queues(ctrl, qid, entries.sq, entries.cq, memory->sq.iova(), memory->cq.iova()));
  QueuePairOptions qp_options = options;
  if (qp_options.name.empty()) qp_options.name = fmt::format("{}/q{}", ctrl.name(), qid);
  return std::make_unique<QueuePair>(
      make_transport(qid, std::move(memory->sq), entries.sq, std::move(memory->cq), entries.cq),
      std::move(memory->prp_pages), ctrl.namespaces(), ctrl.info().max_transfer_bytes, std::move(qp_options));
}

Result<CompletionEntry> wait_admin_command(QueuePair& admin, const SubmissionEntry& command, IoVec data,
                                           void (*step)(void*), void* step_ctx) {
  struct Waiter {
    bool done = false;
    IoCompletion completion;
  } waiter;
  auto on_done = [](void* ctx, const IoCompletion& c) {
    auto* w = static_cast<Waiter*>(ctx);
    w->completion = c;
    w->done = true;
  };
  NVMUX_RETURN_IF_ERROR(admin.submit_raw(command, data, on_done, &waiter));
  while (!waiter.done) {
    if (step != nullptr) step(step_ctx);
    auto n = admin.process_completions();
    if (!n.ok()) return n.status();  // the callback ran with kAborted too
    if (!waiter.done) std::this_thread::yield();
  }
  StatusCode code = waiter.completion.status.code();
  if (code == StatusCode::kTimeout || code == StatusCode::kAborted) return waiter.completion.status;
  return waiter.completion.cqe;  // success or a device status, for the caller to read
}

DeviceQueueTransport::~DeviceQueueTransport() {
  if (qid_ == 0) return;  // the admin queue lives as long as the controller is enabled
  Status s = delete_io_queues(*device_.ctrl, qid_);
  if (!s.ok()) NVMUX_LOG_ERROR("{}: deleting I/O queue {}: {}", device_.ctrl->name(), qid_, s.to_string());
  if (device_.release_qid != nullptr) device_.release_qid(device_.release_ctx, qid_);
}

Status DeviceQueueTransport::reset() {
  if (qid_ == 0) return Status::error(StatusCode::kUnsupported, "the admin queue is reset with the controller");
  if (!failure_.empty()) return Status::error(StatusCode::kUnavailable, "{}", failure_);
  NVMUX_RETURN_IF_ERROR(delete_io_queues(*device_.ctrl, qid_));
  std::memset(sq_.data(), 0, sq_.size());
  std::memset(cq_.data(), 0, cq_.size());  // phase 0 everywhere: nothing new yet
  return create_io_queues(*device_.ctrl, qid_, sq_entries_, cq_entries_, sq_.iova(), cq_.iova());
}

}  // namespace nvmux::nvme
