#pragma once
// nvmuxd's engine: owns the controller and every queue pair, serves sessions over a Unix socket.
// apps/nvmuxd is a thin main over it; tests run it in-process or as a child.
//
//   control thread (run())        accepts, reads SO_PEERCRED, applies the policy, creates each
//                                 session's sealed memfd, creates queues, tears down sessions;
//                                 poll()s its sockets, the signal fd and the owners' wake fds, so
//                                 it sleeps when nothing happens
//   owner Threads (runtime)       one per backend queue pair, bound to a core (see owner.hpp);
//                                 control work reaches them by send_msg
//
// Threading: create() and run() from one thread; request_stop() from any thread or a signal
// handler context is not needed: run() watches SIGINT/SIGTERM itself through a signalfd.
//
// Errors (create): kInvalidArgument (bad options, naming the flag), kAlreadyExists (another live
// nvmuxd serves the socket), and whatever opening the controller or the socket returns.

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nvmux/common/shm.hpp"
#include "nvmux/nvme/backend.hpp"
#include "nvmux/runtime/runtime.hpp"
#include "owner.hpp"
#include "policy.hpp"
#include "rpc.hpp"

namespace nvmux::service {

inline constexpr std::size_t kMaxSessions = 256;
inline constexpr std::uint32_t kMaxOwners = 64;

struct DaemonOptions {
  std::string socket_path;  // "" = default_socket_path()
  nvme::BackendOptions backend;
  std::vector<int> cores;        // empty: every online core
  std::uint32_t max_qpairs = 0;  // 0: as many as the controller grants (each client queue gets its own until then)
  std::uint32_t qpair_entries = 1024;
  std::uint64_t io_timeout_ms = 30'000;
  std::uint32_t io_retries = 2;
  std::string policy_path;      // "" = Policy::default_for(geteuid())
  std::string rpc_socket_path;  // the admin (JSON-RPC) socket; "" = rpc::rpc_socket_beside(socket)
  bool handle_signals = true;   // run() stops on SIGINT/SIGTERM (blocked in every thread)
  bool pin_reactors = true;
};

struct DaemonCounters {
  std::uint64_t sessions = 0;
  std::uint64_t queues = 0;
  std::uint64_t in_flight = 0;
  std::uint64_t sessions_closed = 0;
  std::uint64_t sessions_refused = 0;
  std::uint64_t registered_regions = 0;    // client arenas the controller can reach now
  std::uint64_t session_memory_bytes = 0;  // the sessions' shared memory the daemon has mapped
};

class Daemon {
 public:
  static Result<std::unique_ptr<Daemon>> create(DaemonOptions options);
  ~Daemon();

  // Serves until request_stop() or a signal; then drains and shuts down (see docs/service.md).
  Status run();
  // Any thread.
  void request_stop();

  const std::string& socket_path() const { return socket_path_; }
  const std::string& rpc_socket_path() const { return rpc_socket_path_; }
  // "ready on PATH (…namespaces…)" as printed by nvmuxd.
  std::string ready_line() const;
  // Control thread (or after run() returned).
  DaemonCounters counters() const;

 private:
  struct Session;
  Daemon() = default;
  Status open_socket();
  void accept_session();
  void serve(Session& s);
  void reply(Session& s, ControlMessage reply, int fd = -1);
  void refuse(Session& s, ControlMessage reply, const Status& why);
  void on_hello(Session& s, const ControlMessage& m);
  void on_namespace_info(Session& s, const ControlMessage& m);
  void on_queue_create(Session& s, const ControlMessage& m);
  void on_queue_destroy(Session& s, const ControlMessage& m);
  Status close_queue(Session& s, std::uint32_t index);
  void close_session(std::uint64_t id, const std::string& why);
  Result<Owner*> owner_for_new_queue();
  void note_queue_failed(std::uint64_t session_id, std::string reason);

  // The admin socket (admin.cpp): JSON-RPC 2.0, one request per line, served on the control thread.
  struct RpcConnection {
    int fd = -1;
    std::string input;  // bytes received, up to the next newline
  };
  Status open_rpc_socket();
  void accept_rpc();
  // Reads what the connection sent and answers every complete line; false when it is to be closed.
  bool serve_rpc(RpcConnection& c);
  void close_rpc();
  void add_rpc_methods();
  // Loads --policy again; the old policy stays when the new file does not load (and says why).
  Status reload_policy();
  std::string metrics_text();

  struct QueueSlot {
    Owner* owner = nullptr;
    ServiceQueue* queue = nullptr;  // owned by the owner once attached
    std::uint32_t depth = 0;
  };
  struct Session {
    std::uint64_t id = 0;
    int socket = -1;
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    bool ready = false;  // hello done
    std::shared_ptr<const Grant> grant;
    SharedMemory memory;
    nvme::ForeignRegion arena;
    std::array<QueueSlot, kMaxQueues> queues{};
    std::uint32_t queue_count = 0;
    std::uint32_t depth_total = 0;
  };

  DaemonOptions options_;
  std::string socket_path_;
  int listen_fd_ = -1;
  int signal_fd_ = -1;
  int event_fd_ = -1;  // owners ask the control thread to close a session
  std::atomic<bool> stop_{false};
  std::unique_ptr<nvme::Controller> controller_;
  std::unique_ptr<Runtime> runtime_;
  std::vector<std::unique_ptr<Owner>> owners_;
  std::vector<std::uint32_t> owner_queue_counts_;  // control thread
  std::uint32_t max_owners_ = 0;
  std::shared_ptr<const Policy> policy_;
  std::map<std::uint64_t, std::unique_ptr<Session>> sessions_;
  std::uint64_t next_session_id_ = 1;
  std::uint64_t sessions_closed_ = 0;
  std::uint64_t sessions_refused_ = 0;

  std::string rpc_socket_path_;
  int rpc_listen_fd_ = -1;
  std::vector<RpcConnection> rpc_connections_;
  rpc::Dispatcher rpc_;
  std::uint64_t started_ns_ = 0;
  std::uint64_t policy_reloads_ = 0;

  std::mutex failed_mutex_;
  std::vector<std::pair<std::uint64_t, std::string>> failed_sessions_;  // from owner threads
};

}  // namespace nvmux::service
