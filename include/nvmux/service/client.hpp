#pragma once
// The nvmuxd client library (C++). A Client is one session with the daemon: a control socket and
// one sealed memfd holding the session's queues and its data arena. A Queue submits requests into
// its SQ ring and reaps completions from its CQ ring: no syscall per I/O while the daemon polls.
// The C API (nvmux/nvmux.h) is a thin layer over these classes.
//
// Threading contract:
//   Client  thread-safe: namespace_info, create_queue, buf_alloc/buf_free and stats may be called
//           from any thread (control calls serialise on the session's socket).
//   Queue   one thread at a time: submit, poll and wait must not run concurrently on one Queue.
//           Callbacks run on the polling thread, inside poll()/wait(), and may submit again.
//   Destroy every Queue before its Client.
//
// Errors (Status codes; negative errno at the C ABI):
//   kUnavailable      the daemon is not running, hung up, or died (-ENOTCONN); detected within
//                     kLivenessCheckMs by poll() and wait()
//   kPermissionDenied the daemon's policy refused (-EACCES), with its reason
//   kWouldBlock       submit: the queue has `depth` requests in flight (-EAGAIN); poll and retry
//   kInvalidArgument  a buffer not from buf_alloc or not wholly inside it, a bad depth (-EINVAL)
//   kOutOfRange       an LBA range beyond the namespace, refused at submit (-ERANGE)
//   kNotFound         an nsid the daemon does not serve (-ENOENT)
//   kCorruption       the daemon's session memory did not validate (-EBADMSG)
// A completion's status is 0 or a negative errno: -EIO (device error; nvme_status has SCT/SC),
// -ETIMEDOUT, -EACCES (the policy refused that request), -EINVAL/-ERANGE (the daemon refused the
// descriptor), -ECANCELED (the daemon died, the queue was destroyed, or the daemon reset the
// backend queue pair after a device fault, with the request in flight).

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "nvmux/common/shm.hpp"
#include "nvmux/common/status.hpp"
#include "nvmux/nvmux.h"
#include "nvmux/ring/spsc_ring.hpp"
#include "nvmux/service/protocol.hpp"

namespace nvmux::service {

inline constexpr int kLivenessCheckMs = 100;  // how often a polling/waiting client checks the daemon

struct NamespaceInfo {
  std::uint32_t nsid = 0;
  std::uint32_t block_size = 0;
  std::uint64_t blocks = 0;
  bool read_only = false;
  std::uint32_t max_transfer_bytes = 0;
};

// One completion, the C API's struct nvmux_cpl: {status 0 or -errno, nvme_status, result}.
using Completion = nvmux_cpl;
// Callback for one request, the C API's nvmux_io_cb: runs once, on the thread that polls.
using CompletionFn = nvmux_io_cb;

struct DaemonStats {
  std::uint64_t sessions = 0;
  std::uint64_t queues = 0;
  std::uint64_t in_flight = 0;
  std::uint64_t sessions_closed = 0;
};

class Queue;

class Client {
 public:
  // Connects to nvmuxd at `socket_path` ("" = default_socket_path()) and sets up the session.
  // `arena_bytes` 0 asks for kDefaultArenaBytes.
  static Result<std::unique_ptr<Client>> connect(std::string_view socket_path = {}, std::size_t arena_bytes = 0);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Result<NamespaceInfo> namespace_info(std::uint32_t nsid);
  // A queue of `depth` requests in flight (1..kMaxQueueDepth).
  Result<std::unique_ptr<Queue>> create_queue(std::uint32_t depth);
  // Daemon-wide counters (for tools and tests).
  Result<DaemonStats> daemon_stats();

  // Page-aligned memory in the shared arena, or nullptr when `bytes` is 0 or the arena is
  // exhausted. Thread-safe.
  void* buf_alloc(std::size_t bytes);
  // Returns memory from buf_alloc; anything else is ignored (returns false).
  bool buf_free(void* buf);

  std::uint64_t session_id() const { return session_id_; }
  std::size_t arena_bytes() const { return arena_bytes_; }
  // Whether the daemon is known to be gone (the session cannot be used again; reconnect).
  bool disconnected() const { return disconnected_.load(std::memory_order_acquire); }  // pairs with mark_gone

 private:
  friend class Queue;
  Client() = default;
  Result<ControlMessage> call(ControlMessage request, int* fd_out = nullptr);
  // Checks the control socket for a hang-up without blocking; true when the daemon is gone.
  bool check_gone();
  void mark_gone();
  // The arena offset of [buf, buf + bytes), or an error when it is not inside one allocation.
  Result<std::uint64_t> arena_offset_of(const void* buf, std::size_t bytes) const;

  int socket_ = -1;
  std::uint32_t next_seq_ = 1;
  std::mutex control_mutex_;
  SharedMemory memory_;
  std::uint64_t session_id_ = 0;
  std::byte* arena_ = nullptr;
  std::size_t arena_bytes_ = 0;
  std::atomic<bool> disconnected_{false};

  mutable std::mutex arena_mutex_;
  std::map<std::size_t, std::size_t> free_;   // offset -> bytes, coalesced
  std::map<std::size_t, std::size_t> taken_;  // offset -> bytes
};

class Queue {
 public:
  ~Queue();  // asks the daemon to drain and close the queue; callbacks of requests still in
             // flight then run with -ECANCELED
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  // Submits one request. Buffers come from Client::buf_alloc. Errors: see the top of this file.
  Status read(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, void* buf, CompletionFn cb, void* ctx);
  Status write(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, const void* buf, CompletionFn cb,
               void* ctx);
  Status flush(std::uint32_t nsid, CompletionFn cb, void* ctx);
  Status write_zeroes(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, CompletionFn cb, void* ctx);
  Status deallocate(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, CompletionFn cb, void* ctx);

  // Submits a descriptor exactly as given, without the library's checks (only `tag` is replaced by
  // the library's own): for tools that test the daemon's validation (nvmux-torture, tests). The
  // daemon answers a bad one with an error completion. Errors: kWouldBlock, kUnavailable.
  Status submit_descriptor(const IoDescriptor& descriptor, CompletionFn cb, void* ctx);

  // Runs up to `max` completions (0: all ready); returns how many ran. Errors: kUnavailable once
  // the daemon is gone (after the callbacks of everything in flight ran with -ECANCELED).
  Result<std::uint32_t> poll(std::uint32_t max = 0);
  // Sleeps until a completion is ready or `timeout_ms` passed (< 0: no limit), then polls.
  Result<std::uint32_t> wait(int timeout_ms);

  std::uint32_t depth() const { return depth_; }
  std::uint32_t in_flight() const { return in_flight_; }
  std::uint32_t index() const { return index_; }

 private:
  friend class Client;
  Queue(Client& client, std::uint32_t index, std::uint32_t depth, int owner_eventfd, RingProducer<IoDescriptor> sq,
        RingConsumer<IoCompletion> cq, QueueWake* wake);
  Status submit(IoOpcode op, std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, std::uint64_t arena_offset,
                CompletionFn cb, void* ctx);
  Status submit_data(IoOpcode op, std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, const void* buf,
                     CompletionFn cb, void* ctx);
  void wake_owner();
  void cancel_all();
  bool daemon_gone();
  Result<NamespaceInfo> namespace_of(std::uint32_t nsid);

  struct Slot {
    CompletionFn cb = nullptr;
    void* ctx = nullptr;
    std::uint32_t generation = 0;
    bool busy = false;
  };

  Client& client_;
  std::uint32_t index_;
  std::uint32_t depth_;
  int owner_eventfd_;
  RingProducer<IoDescriptor> sq_;
  RingConsumer<IoCompletion> cq_;
  QueueWake* wake_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<NamespaceInfo> namespaces_;  // by nsid, filled on first use (blocks == 0: unknown)
  std::uint32_t in_flight_ = 0;
  std::uint64_t last_liveness_ns_ = 0;
  bool gone_ = false;
};

}  // namespace nvmux::service
