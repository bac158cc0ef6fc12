#pragma once
// An Owner is one backend queue pair and the runtime Thread that owns it (bound to a core, never
// moved). Its poller drains the SQ rings of the client queues attached to it (round-robin, in
// batches), copies and validates each descriptor, submits it to the queue pair, and posts
// completions into the client's CQ ring, waking a sleeping client once per batch.
//
// Threading: OWNER-THREAD-ONLY except where noted. The control thread reaches an owner only by
// send_msg (attach, close) and reads the atomic counters. A ServiceQueue belongs to its owner
// from attach until the owner reports it closed.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nvmux/common/cpu.hpp"
#include "nvmux/common/histogram.hpp"
#include "nvmux/nvme/controller.hpp"
#include "nvmux/runtime/runtime.hpp"
#include "nvmux/service/protocol.hpp"
#include "policy.hpp"
#include "validate.hpp"

namespace nvmux::service {

inline constexpr std::uint32_t kDrainBatch = 32;           // descriptors per queue per poll
inline constexpr std::uint64_t kArmIdleAfterNs = 200'000;  // idle this long, then ask clients to wake us

// Counters a queue keeps for the admin view (owner writes, any thread reads).
struct QueueCounters {
  std::atomic<std::uint64_t> submitted{0};
  std::atomic<std::uint64_t> completed{0};
  std::atomic<std::uint64_t> refused{0};  // descriptors answered with an error without reaching the device
  std::atomic<std::uint64_t> errors{0};   // completions with a non-zero status
  std::atomic<std::uint64_t> reads{0};    // successful reads, and their bytes
  std::atomic<std::uint64_t> bytes_read{0};
  std::atomic<std::uint64_t> writes{0};  // successful writes, and their bytes
  std::atomic<std::uint64_t> bytes_written{0};
  // Requests that reached the device: TSC ticks from the owner copying the descriptor out of the
  // SQ to reaping its completion (so it leaves out the time a descriptor waited in the SQ).
  Histogram latency_tsc;
};

// The daemon's side of one client queue.
struct ServiceQueue {
  std::uint64_t session_id = 0;
  std::uint32_t index = 0;
  std::shared_ptr<const Grant> grant;
  std::vector<nvme::NamespaceInfo> namespaces;  // by nsid - 1
  RingConsumer<IoDescriptor> sq;                // untrusted producer: the client
  RingProducer<IoCompletion> cq;                // untrusted consumer: the client
  QueueWake* wake = nullptr;
  std::uint64_t arena_iova = 0;  // the session arena as registered with the controller
  std::uint64_t arena_bytes = 0;
  std::uint32_t in_flight = 0;  // owner thread only
  bool closing = false;
  bool failed = false;
  bool posted = false;              // completions posted since the last wake check
  std::function<void()> on_closed;  // runs on the owner thread once closed and drained
  QueueCounters counters;
};

// A snapshot of one owner and its queue pair, for the admin socket.
struct OwnerStats {
  std::uint32_t index = 0;
  std::string thread;
  int core = -1;
  std::uint16_t qid = 0;     // the backend queue pair's NVMe queue id
  std::uint32_t queues = 0;  // client queues attached
  std::uint64_t in_flight = 0;
  nvme::QueuePairStats qpair;
  Histogram latency_tsc;  // every request of every queue on this queue pair (see QueueCounters)
};

class Owner {
 public:
  // Creates the Thread (bound to `core`) and, on it, the queue pair. Blocks until the queue pair
  // exists. `on_queue_failed(session_id, reason)` runs on the owner thread when a client corrupts
  // its rings. Errors: from create_thread / create_io_qpair.
  static Result<std::unique_ptr<Owner>> create(Runtime& runtime, nvme::Controller& controller, int core,
                                               std::uint32_t index, const nvme::QueuePairOptions& qpair_options,
                                               std::function<void(std::uint64_t, std::string)> on_queue_failed);
  ~Owner();

  // Any thread: hands `queue` to the owner (send_msg). The owner drains it from its next poll.
  Status attach(std::unique_ptr<ServiceQueue> queue);
  // Any thread: stops draining `queue`, waits for its in-flight requests, then runs
  // queue->on_closed on the owner thread and frees it.
  Status close(ServiceQueue* queue);

  // Any thread: a session's arena was unregistered; one poll of the queue pair lets a backend that
  // pins registered memory (uring's buffer table) let go of it now, not at the next command.
  void on_memory_unregistered();

  // The eventfd clients write to wake this owner (the control thread watches it).
  int wake_fd() const { return wake_fd_; }
  // Control thread: the eventfd fired; wakes the owner's Thread.
  void on_wake_fd();

  Thread& thread() const { return *thread_; }
  std::uint32_t index() const { return index_; }
  // Any thread.
  std::uint64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  // Any thread but the owner's: a snapshot taken on the owner thread (the queue pair's counters
  // are the owner's alone). Blocks until the owner ran the message. Errors: send_msg's.
  Result<OwnerStats> stats();

 private:
  Owner() = default;
  PollerResult poll();
  std::uint32_t drain(ServiceQueue& q);
  // How many descriptors `q` may hand over now (CQ room, free requests, the batch); 0 also when
  // its CQ turned out corrupt (the queue is failed then).
  std::uint64_t room_for(ServiceQueue& q);
  // `drained_tsc`: when the batch holding `d` was taken from the SQ.
  void handle(ServiceQueue& q, const IoDescriptor& d, std::uint64_t drained_tsc);
  // 0 or -errno for a descriptor copied out of shared memory (validate_descriptor against the
  // queue's session); nothing is read twice.
  int validate(const ServiceQueue& q, const IoDescriptor& d) const;
  void post(ServiceQueue& q, std::uint64_t tag, int status, std::uint16_t nvme_status, std::uint32_t result);
  void wake_clients();
  void arm_idle(bool arm);
  void finish_closed();
  void fail_queue(ServiceQueue& q, std::string reason);
  static void on_complete(void* ctx, const nvme::IoCompletion& completion);

  struct Request {
    Owner* owner = nullptr;
    ServiceQueue* queue = nullptr;
    std::uint64_t tag = 0;
    IoOpcode opcode = IoOpcode::kRead;
    std::uint32_t bytes = 0;  // data moved by a read or a write
    std::uint64_t drained_tsc = 0;
    nvme::DsmRange range{};
  };

  std::uint32_t index_ = 0;
  Thread* thread_ = nullptr;
  Poller* poller_ = nullptr;
  int wake_fd_ = -1;
  std::unique_ptr<nvme::QueuePair> qpair_;
  std::vector<std::unique_ptr<ServiceQueue>> queues_;
  std::vector<Request> requests_;
  std::vector<Request*> free_requests_;
  std::size_t next_queue_ = 0;
  std::uint64_t last_work_tsc_ = 0;
  std::uint64_t reap_tsc_ = 0;  // when this poll started reaping completions
  Histogram latency_tsc_;
  const std::uint64_t arm_idle_after_tsc_ = ns_to_tsc(kArmIdleAfterNs);
  bool armed_ = false;
  std::atomic<std::uint64_t> in_flight_{0};
  std::function<void(std::uint64_t, std::string)> on_queue_failed_;
};

}  // namespace nvmux::service
