#include "owner.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <future>

#include "../runtime/futex.hpp"  // header-only
#include "nvmux/common/counter.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/fence.hpp"
#include "nvmux/common/log.hpp"

namespace nvmux::service {

namespace {

constexpr auto kSetupWait = std::chrono::seconds(30);

// Runs `fn` on `thread` and waits for it (setup and teardown only).
template <class F>
Status run_on(Thread& thread, F fn) {
  struct Call {
    F fn;
    std::promise<Status> done;
  } call{std::move(fn), {}};
  auto result = call.done.get_future();
  NVMUX_RETURN_IF_ERROR(send_msg(thread, [c = &call] { c->done.set_value(c->fn()); }));
  if (result.wait_for(kSetupWait) != std::future_status::ready) {
    // The message still references `call`: waiting on is the only safe choice.
    NVMUX_LOG_ERROR("thread {} has not run a setup message for {} s; still waiting", thread.name(), kSetupWait.count());
    result.wait();
  }
  return result.get();
}

int nvme_status_to_errno(const nvme::IoCompletion& c) {
  switch (c.status.code()) {
    case StatusCode::kOk: return 0;
    case StatusCode::kIoError: return -EIO;
    case StatusCode::kTimeout: return -ETIMEDOUT;
    case StatusCode::kAborted: return -ECANCELED;
    default: return c.status.to_errno();
  }
}

}  // namespace

Result<std::unique_ptr<Owner>> Owner::create(Runtime& runtime, nvme::Controller& controller, int core,
                                             std::uint32_t index, const nvme::QueuePairOptions& qpair_options,
                                             std::function<void(std::uint64_t, std::string)> on_queue_failed) {
  std::unique_ptr<Owner> owner(new Owner());
  owner->index_ = index;
  owner->on_queue_failed_ = std::move(on_queue_failed);
  owner->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (owner->wake_fd_ < 0) return Status::from_errno(errno, "eventfd for an owner");
  auto thread = runtime.create_thread(fmt::format("owner{}", index), core);
  if (!thread.ok()) return thread.status();
  owner->thread_ = *thread;
  Owner* o = owner.get();
  nvme::QueuePairOptions options = qpair_options;
  options.name = fmt::format("{}/owner{}", controller.name(), index);
  NVMUX_RETURN_IF_ERROR(run_on(*o->thread_, [o, &controller, &options]() -> Status {
    auto qp = controller.create_io_qpair(options);
    if (!qp.ok()) return qp.status();
    o->qpair_ = std::move(qp).value();
    o->requests_.resize(o->qpair_->capacity());
    for (Request& r : o->requests_) {
      r.owner = o;
      o->free_requests_.push_back(&r);
    }
    auto poller = o->thread_->register_poller("drain", [o] { return o->poll(); });
    if (!poller.ok()) return poller.status();
    o->poller_ = *poller;
    return Status();
  }));
  return owner;
}

Owner::~Owner() {
  if (qpair_ && thread_ != nullptr) {
    // The queue pair is destroyed on its owner thread, as its contract requires.
    Status s = run_on(*thread_, [this]() -> Status {
      // Nothing of this Owner may run after it is gone: the poller first, then the queue pair.
      Status unregistered = thread_->unregister_poller(poller_);
      qpair_.reset();
      (void)thread_->exit();
      return unregistered;
    });
    if (!s.ok()) NVMUX_LOG_ERROR("owner{}: queue pair not destroyed on its thread: {}", index_, s.to_string());
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Status Owner::attach(std::unique_ptr<ServiceQueue> queue) {
  ServiceQueue* q = queue.release();
  Status s = send_msg(*thread_, [this, q] {
    detail::SharedWakeWord(q->wake->owner_idle).disarm();
    queues_.emplace_back(q);
    armed_ = false;  // the next idle period arms every queue, this one included
    last_work_tsc_ = read_tsc();
  });
  if (!s.ok()) delete q;
  return s;
}

Result<OwnerStats> Owner::stats() {
  OwnerStats out;
  out.index = index_;
  out.thread = thread_->name();
  out.core = thread_->bound_core().value_or(-1);
  out.in_flight = in_flight();
  NVMUX_RETURN_IF_ERROR(run_on(*thread_, [this, &out]() -> Status {
    out.queues = static_cast<std::uint32_t>(queues_.size());
    out.qid = qpair_->qid();
    out.qpair = qpair_->stats();
    out.latency_tsc = latency_tsc_;
    return {};
  }));
  return out;
}

Status Owner::close(ServiceQueue* queue) {
  return send_msg(*thread_, [this, queue] {
    queue->closing = true;
    finish_closed();
  });
}

void Owner::on_memory_unregistered() {
  // Best effort: a full lane only delays the release to the queue pair's next command.
  (void)try_send_msg(*thread_, [this] {
    if (qpair_->state() == nvme::QueuePair::State::kActive) (void)qpair_->process_completions();
  });
}

void Owner::on_wake_fd() {
  std::uint64_t count = 0;
  while (::read(wake_fd_, &count, sizeof(count)) > 0) {
  }
  // Any message wakes a sleeping reactor; the poller then drains.
  (void)try_send_msg(*thread_, [] {});
}

PollerResult Owner::poll() {
  std::uint32_t work = 0;
  const std::size_t n = queues_.size();
  for (std::size_t i = 0; i < n; ++i) {
    ServiceQueue& q = *queues_[(next_queue_ + i) % n];
    if (!q.closing && !q.failed) work += drain(q);
  }
  if (n != 0) next_queue_ = (next_queue_ + 1) % n;
  if (qpair_->outstanding() != 0 || qpair_->state() == nvme::QueuePair::State::kFailed) {
    reap_tsc_ = read_tsc();  // one clock read stamps every completion this call reaps
    auto reaped = qpair_->process_completions();
    if (reaped.ok()) {
      work += *reaped;
    } else if (reaped.status().code() == StatusCode::kAborted) {
      NVMUX_LOG_ERROR("owner{}: queue pair failed ({}); resetting it", index_, qpair_->failure().to_string());
      Status reset = qpair_->reset();  // aborted commands completed with -ECANCELED
      if (!reset.ok()) NVMUX_LOG_ERROR("owner{}: reset failed: {}", index_, reset.to_string());
    }
  }
  wake_clients();
  finish_closed();
  // The TSC, not clock_gettime: this runs on every poll, and a vDSO clock read per poll was half
  // of a spinning owner's time (perf record, bench/service_compare).
  std::uint64_t now = read_tsc();
  // Commands on the device: keep polling for their completions (the reactor must not sleep).
  if (work != 0 || qpair_->outstanding() != 0) {
    last_work_tsc_ = now;
    if (armed_) arm_idle(false);
    return PollerResult::kBusy;
  }
  if (!armed_ && qpair_->outstanding() == 0 && now - last_work_tsc_ >= arm_idle_after_tsc_) {
    arm_idle(true);
    // Re-check after arming (Dekker with the client's push + fence + check). Descriptors its CQ
    // has no room for are not work: a client that stops reading its CQ must not keep us spinning
    // (its next push or kick wakes us).
    for (auto& q : queues_) {
      if (!q->closing && !q->failed && q->sq.refresh_available() != 0 && room_for(*q) != 0) {
        arm_idle(false);
        return PollerResult::kBusy;
      }
    }
  }
  return PollerResult::kIdle;
}

// The sleeper side of the WakeWord protocol for an owner that sleeps in its reactor and is woken
// through the eventfd: arm (or disarm) every queue's owner_idle, one fence, then the caller
// re-checks the SQs. armed_ is our own record; the words are the client's to clear (or scribble).
void Owner::arm_idle(bool arm) {
  for (auto& q : queues_) {
    detail::SharedWakeWord owner_idle(q->wake->owner_idle);
    if (arm) {
      owner_idle.arm();
    } else {
      owner_idle.disarm();
    }
  }
  armed_ = arm;
  full_fence();  // flags before the re-check of the SQs
}

std::uint64_t Owner::room_for(ServiceQueue& q) {
  // Accept only what is sure to fit: every accepted request needs one CQ slot, and the qpair needs
  // a free command id.
  std::uint64_t cq_free = q.cq.refresh_free();
  if (q.cq.failed()) {
    fail_queue(q, q.cq.status().message());
    return 0;
  }
  std::uint64_t room = cq_free > q.in_flight ? cq_free - q.in_flight : 0;
  room = std::min<std::uint64_t>(room, free_requests_.size());
  return std::min<std::uint64_t>(room, kDrainBatch);
}

std::uint32_t Owner::drain(ServiceQueue& q) {
  const std::uint64_t room = room_for(q);
  if (room == 0) return 0;
  // The consumer is untrusted: handle() gets a private copy of each descriptor.
  std::uint64_t drained_tsc = 0;  // read once per batch, and only for a batch that has something
  std::size_t got = q.sq.consume(
      [this, &q, &drained_tsc](IoDescriptor& d) {
        if (drained_tsc == 0) drained_tsc = read_tsc();
        handle(q, d, drained_tsc);
      },
      static_cast<std::size_t>(room));
  if (q.sq.failed()) fail_queue(q, q.sq.status().message());
  return static_cast<std::uint32_t>(got);
}

int Owner::validate(const ServiceQueue& q, const IoDescriptor& d) const {
  return validate_descriptor(d, ValidationContext{q.namespaces, *q.grant, q.arena_bytes, qpair_->max_transfer_bytes()});
}

void Owner::handle(ServiceQueue& q, const IoDescriptor& d, std::uint64_t drained_tsc) {
  int refused = validate(q, d);
  if (refused != 0) {
    single_writer_add(q.counters.refused);
    ++q.in_flight;  // post() gives it back
    post(q, d.tag, refused, 0, 0);
    return;
  }
  Request* r = free_requests_.back();
  free_requests_.pop_back();
  r->queue = &q;
  r->tag = d.tag;
  r->drained_tsc = drained_tsc;
  Status s;
  auto op = static_cast<IoOpcode>(d.opcode);
  const nvme::NamespaceInfo& ns = q.namespaces[d.nsid - 1];  // accepted: nsid names a namespace
  nvme::IoVec data{q.arena_iova + d.arena_offset, d.blocks * ns.block_size};
  r->opcode = op;
  r->bytes = data.bytes;
  switch (op) {
    case IoOpcode::kRead: s = qpair_->read(d.nsid, d.lba, d.blocks, data, &Owner::on_complete, r); break;
    case IoOpcode::kWrite: s = qpair_->write(d.nsid, d.lba, d.blocks, data, &Owner::on_complete, r); break;
    case IoOpcode::kFlush: s = qpair_->flush(d.nsid, &Owner::on_complete, r); break;
    case IoOpcode::kWriteZeroes: s = qpair_->write_zeroes(d.nsid, d.lba, d.blocks, &Owner::on_complete, r); break;
    case IoOpcode::kDeallocate:
      r->range = nvme::DsmRange{0, d.blocks, d.lba};
      s = qpair_->deallocate(d.nsid, std::span<const nvme::DsmRange>(&r->range, 1), &Owner::on_complete, r);
      break;
  }
  ++q.in_flight;
  if (!s.ok()) {
    free_requests_.push_back(r);
    post(q, d.tag, s.to_errno(), 0, 0);
    return;
  }
  single_writer_add(in_flight_);
  single_writer_add(q.counters.submitted);
}

void Owner::on_complete(void* ctx, const nvme::IoCompletion& c) {
  auto* r = static_cast<Request*>(ctx);
  Owner* o = r->owner;
  ServiceQueue& q = *r->queue;
  single_writer_add(o->in_flight_, static_cast<std::uint64_t>(-1));  // wraps: minus one
  // Only a completion outside a reap (a queue pair destroyed at shutdown) can predate the stamp.
  const std::uint64_t latency = o->reap_tsc_ > r->drained_tsc ? o->reap_tsc_ - r->drained_tsc : 0;
  q.counters.latency_tsc.record(latency);
  o->latency_tsc_.record(latency);
  std::uint16_t nvme_status =
      c.status.code() == StatusCode::kIoError ? static_cast<std::uint16_t>((c.cqe.sct() << 8) | c.cqe.sc()) : 0;
  if (c.status.ok() && r->opcode == IoOpcode::kRead) {
    single_writer_add(q.counters.reads);
    single_writer_add(q.counters.bytes_read, r->bytes);
  } else if (c.status.ok() && r->opcode == IoOpcode::kWrite) {
    single_writer_add(q.counters.writes);
    single_writer_add(q.counters.bytes_written, r->bytes);
  }
  o->post(q, r->tag, nvme_status_to_errno(c), nvme_status, c.cqe.cdw0);
  o->free_requests_.push_back(r);
}

void Owner::post(ServiceQueue& q, std::uint64_t tag, int status, std::uint16_t nvme_status, std::uint32_t result) {
  NVMUX_ASSERT(q.in_flight > 0, "owner{}: completion for session {} queue {} with nothing in flight", index_,
               q.session_id, q.index);
  --q.in_flight;
  single_writer_add(q.counters.completed);
  if (status != 0) single_writer_add(q.counters.errors);
  if (q.failed) return;  // its rings are no longer trusted; the session is being closed
  IoCompletion c{tag, status, nvme_status, 0, result, 0};
  // Room was reserved when the request was accepted; a full ring means the client broke head.
  if (!q.cq.try_push(c)) {
    fail_queue(q, q.cq.failed() ? q.cq.status().message() : "completion ring full despite the reservation");
    return;
  }
  q.posted = true;
}

void Owner::wake_clients() {
  bool any = false;
  for (auto& q : queues_) any = any || q->posted;
  if (!any) return;
  full_fence();  // CQ tails before the waiting flags (the WakeWord protocol, shared scope)
  for (auto& q : queues_) {
    if (!q->posted) continue;
    q->posted = false;
    // The client writes this word: whatever it holds costs us at most one FUTEX_WAKE per batch.
    detail::SharedWakeWord(q->wake->client_waiting).wake_fenced();
  }
}

void Owner::fail_queue(ServiceQueue& q, std::string reason) {
  if (q.failed) return;
  q.failed = true;
  NVMUX_LOG_WARN("session {} queue {}: {}; closing the session", q.session_id, q.index, reason);
  if (on_queue_failed_) on_queue_failed_(q.session_id, std::move(reason));
}

void Owner::finish_closed() {
  for (std::size_t i = 0; i < queues_.size();) {
    ServiceQueue& q = *queues_[i];
    if (!q.closing || q.in_flight != 0) {
      ++i;
      continue;
    }
    if (q.on_closed) q.on_closed();
    queues_.erase(queues_.begin() + static_cast<std::ptrdiff_t>(i));
  }
  if (next_queue_ >= queues_.size()) next_queue_ = 0;
}

}  // namespace nvmux::service
