#include "daemon.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>

#include "control_socket.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"
#include "validate.hpp"

namespace nvmux::service {

namespace {

constexpr int kPollTimeoutMs = 1000;
constexpr auto kDrainLogEvery = std::chrono::seconds(10);

std::string human_bytes(std::uint64_t bytes) {
  if (bytes >= (std::uint64_t{1} << 30)) return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1 << 30));
  if (bytes >= (std::uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
  return fmt::format("{} KiB", bytes >> 10);
}

Status make_socket_dir(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) return {};
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::from_errno(ec.value(), fmt::format("creating the socket directory {}", dir.string()));
  return {};
}

}  // namespace

Result<std::unique_ptr<Daemon>> Daemon::create(DaemonOptions options) {
  std::unique_ptr<Daemon> d(new Daemon());
  d->socket_path_ = options.socket_path.empty() ? default_socket_path() : options.socket_path;
  if (d->socket_path_.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::error(StatusCode::kInvalidArgument, "--socket {}: longer than {} bytes", d->socket_path_,
                         sizeof(sockaddr_un{}.sun_path) - 1);
  }
  d->rpc_socket_path_ =
      options.rpc_socket_path.empty() ? rpc::rpc_socket_beside(d->socket_path_) : options.rpc_socket_path;
  if (d->rpc_socket_path_.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::error(StatusCode::kInvalidArgument, "--rpc-socket {}: longer than {} bytes", d->rpc_socket_path_,
                         sizeof(sockaddr_un{}.sun_path) - 1);
  }
  if (options.qpair_entries < 2 || options.qpair_entries > 65536 || !std::has_single_bit(options.qpair_entries)) {
    return Status::error(StatusCode::kInvalidArgument, "--qpair-entries {}: a power of two in 2..65536",
                         options.qpair_entries);
  }
  if (options.policy_path.empty()) {
    d->policy_ = Policy::default_for(geteuid());
  } else {
    auto policy = Policy::load(options.policy_path);
    if (!policy.ok()) return policy.status();
    d->policy_ = *policy;
  }
  if (options.cores.empty()) {
    for (int c = 0; c < online_cores(); ++c) options.cores.push_back(c);
  }
  for (int c : options.cores) {
    if (c < 0 || c >= online_cores()) {
      return Status::error(StatusCode::kInvalidArgument, "--cores: core {} does not exist (this machine has 0..{})", c,
                           online_cores() - 1);
    }
  }
  d->options_ = options;

  // Signals are taken through a signalfd: block them before any thread exists, so all inherit it.
  if (options.handle_signals) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);  // reloads the policy
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    d->signal_fd_ = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (d->signal_fd_ < 0) return Status::from_errno(errno, "signalfd");
  }
  d->event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (d->event_fd_ < 0) return Status::from_errno(errno, "eventfd");

  // Refuse before touching the device when another daemon serves the socket.
  NVMUX_RETURN_IF_ERROR(d->open_socket());
  NVMUX_RETURN_IF_ERROR(d->open_rpc_socket());
  d->add_rpc_methods();
  d->started_ns_ = monotonic_ns();

  auto controller = nvme::open_controller(options.backend);
  if (!controller.ok()) return controller.status();
  d->controller_ = std::move(*controller);

  RuntimeOptions ro;
  ro.cores = options.cores;
  ro.interrupt_mode = true;  // idle owners sleep
  ro.pin_reactors = options.pin_reactors;
  auto runtime = Runtime::create(ro);
  if (!runtime.ok()) return runtime.status();
  d->runtime_ = std::move(*runtime);
  NVMUX_RETURN_IF_ERROR(d->runtime_->start());

  std::uint32_t granted = d->controller_->info().io_queues;
  d->max_owners_ = std::min<std::uint32_t>(
      {granted == 0 ? 1 : granted, kMaxOwners, options.max_qpairs == 0 ? kMaxOwners : options.max_qpairs});
  // One owner up front: a queue pair the device refuses is an error at start, not at first connect.
  auto first = d->owner_for_new_queue();
  if (!first.ok()) return first.status();
  return d;
}

Daemon::~Daemon() {
  for (auto& [id, s] : sessions_) {
    if (s->socket >= 0) ::close(s->socket);
  }
  sessions_.clear();
  owners_.clear();  // each destroys its queue pair on its own thread
  if (runtime_) (void)runtime_->stop();
  controller_.reset();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(socket_path_.c_str());
  }
  close_rpc();
  if (signal_fd_ >= 0) ::close(signal_fd_);
  if (event_fd_ >= 0) ::close(event_fd_);
}

Status Daemon::open_socket() {
  NVMUX_RETURN_IF_ERROR(make_socket_dir(socket_path_));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path_.data(), socket_path_.size());
  // A live daemon answers a connect; a stale socket file from a dead one refuses it.
  int probe = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (probe < 0) return Status::from_errno(errno, "socket");
  int rc = ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  ::close(probe);
  if (rc == 0) {
    return Status::error(StatusCode::kAlreadyExists, "another nvmuxd is serving {}; stop it or pick another --socket",
                         socket_path_);
  }
  struct stat st {};
  if (err == ECONNREFUSED && ::lstat(socket_path_.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) {
    return Status::error(StatusCode::kAlreadyExists, "--socket {} exists and is not a socket; not replacing it",
                         socket_path_);
  }
  if (err == ECONNREFUSED) {
    NVMUX_LOG_INFO("replacing the stale socket file {} (no daemon answers it)", socket_path_);
    ::unlink(socket_path_.c_str());
  }
  listen_fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) return Status::from_errno(errno, "socket");
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int e = errno;
    ::close(listen_fd_);
    listen_fd_ = -1;
    return Status::from_errno(e, fmt::format("bind {}", socket_path_));
  }
  // Anyone may reach the socket; the policy (SO_PEERCRED) decides who gets a session, and says why not.
  ::chmod(socket_path_.c_str(), 0666);
  if (::listen(listen_fd_, 64) != 0) return Status::from_errno(errno, fmt::format("listen {}", socket_path_));
  return {};
}

std::string Daemon::ready_line() const {
  std::string out =
      fmt::format("nvmuxd: ready on {} (backend {}", socket_path_, nvme::to_string(options_.backend.backend));
  for (const nvme::NamespaceInfo& ns : controller_->namespaces()) {
    out += fmt::format(", ns {}: {} blocks x {} B = {}", ns.nsid, ns.blocks, ns.block_size,
                       human_bytes(ns.blocks * ns.block_size));
  }
  out += fmt::format("; up to {} queue pairs on cores {}; admin on {})", max_owners_, fmt::join(options_.cores, ","),
                     rpc_socket_path_);
  return out;
}

DaemonCounters Daemon::counters() const {
  DaemonCounters c;
  c.sessions = sessions_.size();
  for (const auto& [id, s] : sessions_) {
    c.queues += s->queue_count;
    c.session_memory_bytes += s->memory.size();
  }
  c.registered_regions = controller_->registered_regions();
  for (const auto& o : owners_) c.in_flight += o->in_flight();
  c.sessions_closed = sessions_closed_;
  c.sessions_refused = sessions_refused_;
  return c;
}

void Daemon::request_stop() {
  stop_.store(true, std::memory_order_release);  // pairs with run()'s load
  std::uint64_t one = 1;
  (void)!::write(event_fd_, &one, sizeof(one));
}

void Daemon::note_queue_failed(std::uint64_t session_id, std::string reason) {
  {
    std::lock_guard lock(failed_mutex_);
    failed_sessions_.emplace_back(session_id, std::move(reason));
  }
  std::uint64_t one = 1;
  (void)!::write(event_fd_, &one, sizeof(one));
}

Status Daemon::run() {
  std::vector<pollfd> fds;
  std::vector<std::uint64_t> session_of;  // parallel to fds: session id, or 0
  while (!stop_.load(std::memory_order_acquire)) {
    fds.clear();
    session_of.clear();
    auto add = [&](int fd, std::uint64_t session) {
      fds.push_back(pollfd{fd, POLLIN, 0});
      session_of.push_back(session);
    };
    add(listen_fd_, 0);
    add(event_fd_, 0);
    if (signal_fd_ >= 0) add(signal_fd_, 0);
    const std::size_t rpc_listen = fds.size();
    add(rpc_listen_fd_, 0);
    const std::size_t first_rpc = fds.size();
    for (const RpcConnection& c : rpc_connections_) add(c.fd, 0);
    const std::size_t first_owner = fds.size();
    for (const auto& o : owners_) add(o->wake_fd(), 0);
    const std::size_t first_session = fds.size();
    for (const auto& [id, s] : sessions_) add(s->socket, id);
    int n = ::poll(fds.data(), fds.size(), kPollTimeoutMs);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno(errno, "poll");
    }
    if (signal_fd_ >= 0 && (fds[2].revents & POLLIN) != 0) {
      signalfd_siginfo info{};
      if (::read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
        if (info.ssi_signo == SIGHUP) {
          NVMUX_LOG_INFO("nvmuxd: SIGHUP received; reloading the policy");
          (void)reload_policy();  // logs either way
        } else {
          NVMUX_LOG_INFO("nvmuxd: {} received; shutting down", strsignal(static_cast<int>(info.ssi_signo)));
          stop_.store(true, std::memory_order_release);
        }
      }
    }
    // Admin requests first (they may end sessions), dropping connections that hung up.
    std::vector<RpcConnection> kept;
    for (std::size_t i = first_rpc; i < first_owner; ++i) {
      RpcConnection& c = rpc_connections_[i - first_rpc];
      if (fds[i].revents == 0 || serve_rpc(c)) {
        kept.push_back(std::move(c));
      } else {
        ::close(c.fd);
      }
    }
    rpc_connections_.swap(kept);
    if ((fds[rpc_listen].revents & POLLIN) != 0) accept_rpc();
    if ((fds[1].revents & POLLIN) != 0) {
      std::uint64_t count;
      (void)!::read(event_fd_, &count, sizeof(count));
      std::vector<std::pair<std::uint64_t, std::string>> failed;
      {
        std::lock_guard lock(failed_mutex_);
        failed.swap(failed_sessions_);
      }
      for (auto& [id, why] : failed) close_session(id, "its rings failed validation: " + why);
    }
    for (std::size_t i = first_owner; i < first_session; ++i) {
      if ((fds[i].revents & POLLIN) != 0) owners_[i - first_owner]->on_wake_fd();
    }
    for (std::size_t i = first_session; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto it = sessions_.find(session_of[i]);
      if (it != sessions_.end()) serve(*it->second);
    }
    if ((fds[0].revents & POLLIN) != 0) accept_session();
  }
  // Shutdown: stop accepting, drain every session's in-flight I/O, then hang up on each.
  ::close(listen_fd_);
  listen_fd_ = -1;
  ::unlink(socket_path_.c_str());
  close_rpc();
  std::vector<std::uint64_t> ids;
  for (const auto& [id, s] : sessions_) ids.push_back(id);
  for (std::uint64_t id : ids) close_session(id, "the daemon is shutting down");
  owners_.clear();
  Status stopped = runtime_->stop();
  NVMUX_LOG_INFO("nvmuxd: stopped ({} sessions served, {} refused)", sessions_closed_, sessions_refused_);
  return stopped;
}

void Daemon::accept_session() {
  while (true) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;  // EAGAIN: none left (other errors: the client went away first)
    if (sessions_.size() >= kMaxSessions) {
      NVMUX_LOG_WARN("refusing a connection: {} sessions is the limit", kMaxSessions);
      ++sessions_refused_;
      ::close(fd);
      continue;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      ::close(fd);
      continue;
    }
    auto s = std::make_unique<Session>();
    s->id = next_session_id_++;
    s->socket = fd;
    s->pid = cred.pid;
    s->uid = cred.uid;
    s->gid = cred.gid;
    sessions_.emplace(s->id, std::move(s));
  }
}

void Daemon::serve(Session& s) {
  std::uint64_t id = s.id;
  auto received = receive_control(s.socket, 0);
  if (!received.ok()) {
    if (received.status().code() == StatusCode::kTimeout) return;  // spurious wake-up
    close_session(id, received.status().code() == StatusCode::kUnavailable ? "the client hung up"
                                                                           : received.status().to_string());
    return;
  }
  if (received->fd >= 0) {
    ::close(received->fd);  // clients never send descriptors
    close_session(id, "the client sent a file descriptor");
    return;
  }
  ControlMessage m = received->message;  // a private copy: check it, then use only it
  auto type = admit_control_message(m, received->bytes, s.ready);
  if (!type.ok()) {
    close_session(id, type.status().message());
    return;
  }
  switch (*type) {
    case ControlType::kHello: on_hello(s, m); break;
    case ControlType::kNamespaceInfo: on_namespace_info(s, m); break;
    case ControlType::kQueueCreate: on_queue_create(s, m); break;
    case ControlType::kQueueDestroy: on_queue_destroy(s, m); break;
    case ControlType::kDaemonStats: {
      ControlMessage r = m;
      DaemonCounters c = counters();
      r.arg0 = c.sessions;
      r.arg1 = c.queues;
      r.arg2 = c.in_flight;
      r.arg3 = c.sessions_closed;
      reply(s, r);
      break;
    }
  }
}

void Daemon::reply(Session& s, ControlMessage r, int fd) {
  r.status = 0;
  if (Status sent = send_control(s.socket, r, fd); !sent.ok()) {
    NVMUX_LOG_DEBUG("session {}: reply not sent: {}", s.id, sent.to_string());
  }
}

void Daemon::refuse(Session& s, ControlMessage r, const Status& why) {
  r.status = why.to_errno();
  r.arg0 = r.arg1 = r.arg2 = r.arg3 = 0;
  set_reason(r, why.message());
  NVMUX_LOG_WARN("session {} (pid {}, uid {}): refused: {}", s.id, s.pid, s.uid, why.message());
  (void)send_control(s.socket, r);
}

void Daemon::on_hello(Session& s, const ControlMessage& m) {
  NVMUX_ASSERT(!s.ready, "session {}: admit_control_message let a second hello through", s.id);
  auto grant = policy_->grant_for(s.uid, s.gid);
  if (!grant.ok()) {
    ++sessions_refused_;
    refuse(s, m, grant.status());
    close_session(s.id, "refused by the policy");
    return;
  }
  auto arena_bytes = session_arena_bytes(m.arg0, grant->max_arena_bytes);
  if (!arena_bytes.ok()) {
    ++sessions_refused_;
    refuse(s, m, arena_bytes.status());
    close_session(s.id, "arena too large");
    return;
  }
  std::uint64_t arena = *arena_bytes;
  auto memory = SharedMemory::create(fmt::format("nvmux-session-{}", s.id), session_bytes(arena));
  if (!memory.ok()) {
    refuse(s, m, memory.status());
    close_session(s.id, "no memory for the session");
    return;
  }
  s.memory = std::move(*memory);
  std::byte* arena_ptr = s.memory.data() + kArenaOffset;
  auto region = controller_->register_memory(std::span<std::byte>(arena_ptr, arena));
  if (!region.ok()) {
    refuse(s, m, region.status());
    close_session(s.id, "arena not registered with the controller");
    return;
  }
  s.arena = std::move(*region);
  SessionHeader h{};
  h.magic = kSessionMagic;
  h.layout_version = kProtocolVersion;
  h.max_queues = kMaxQueues;
  h.session_id = s.id;
  h.total_bytes = session_bytes(arena);
  h.queue_block_bytes = kQueueBlockBytes;
  h.queues_offset = kQueuesOffset;
  h.arena_offset = kArenaOffset;
  h.arena_bytes = arena;
  h.daemon_pid = static_cast<std::uint32_t>(getpid());
  std::memcpy(s.memory.data(), &h, sizeof(h));
  s.grant = std::make_shared<const Grant>(std::move(*grant));
  s.ready = true;
  ControlMessage r = m;
  r.arg0 = s.id;
  r.arg1 = s.memory.size();
  r.arg2 = controller_->namespaces().size();
  r.arg3 = static_cast<std::uint64_t>(getpid());
  NVMUX_LOG_INFO("session {} opened: pid {}, uid {}, gid {} ({}), arena {}", s.id, s.pid, s.uid, s.gid, s.grant->rule,
                 human_bytes(arena));
  reply(s, r, s.memory.fd());
}

void Daemon::on_namespace_info(Session& s, const ControlMessage& m) {
  const auto& namespaces = controller_->namespaces();
  if (m.arg0 == 0 || m.arg0 > namespaces.size()) {
    refuse(
        s, m,
        Status::error(StatusCode::kNotFound, "no namespace {} (this daemon serves 1..{})", m.arg0, namespaces.size()));
    return;
  }
  const NamespaceGrant* g = s.grant->find(static_cast<std::uint32_t>(m.arg0));
  if (g == nullptr) {
    refuse(s, m, Status::error(StatusCode::kPermissionDenied, "namespace {} is not granted to uid {}", m.arg0, s.uid));
    return;
  }
  const nvme::NamespaceInfo& ns = namespaces[m.arg0 - 1];
  ControlMessage r = m;
  r.arg0 = ns.blocks;
  r.arg1 = ns.block_size;
  r.arg2 = g->writable ? 0 : 1;
  r.arg3 = controller_->info().max_transfer_bytes;
  if (r.arg3 == 0 || r.arg3 > nvme::QueuePair::kMaxTransferBytesLimit) r.arg3 = nvme::QueuePair::kMaxTransferBytesLimit;
  reply(s, r);
}

Result<Owner*> Daemon::owner_for_new_queue() {
  for (std::size_t i = 0; i < owners_.size(); ++i) {
    if (owner_queue_counts_[i] == 0) return owners_[i].get();
  }
  if (owners_.size() < max_owners_) {
    nvme::QueuePairOptions qo;
    qo.sq_entries = options_.qpair_entries;
    qo.delayed_doorbell = true;
    qo.timeout_us = options_.io_timeout_ms * 1000;
    qo.max_retries = options_.io_retries;
    auto index = static_cast<std::uint32_t>(owners_.size());
    int core = options_.cores[index % options_.cores.size()];
    auto owner = Owner::create(*runtime_, *controller_, core, index, qo,
                               [this](std::uint64_t id, std::string why) { note_queue_failed(id, std::move(why)); });
    if (owner.ok()) {
      owners_.push_back(std::move(*owner));
      owner_queue_counts_.push_back(0);
      return owners_.back().get();
    }
    if (owners_.empty()) return owner.status();
    NVMUX_LOG_WARN("no queue pair for a new owner ({}); sharing the existing {}", owner.status().to_string(),
                   owners_.size());
    max_owners_ = static_cast<std::uint32_t>(owners_.size());
  }
  std::size_t best = 0;
  for (std::size_t i = 1; i < owners_.size(); ++i) {
    if (owner_queue_counts_[i] < owner_queue_counts_[best]) best = i;
  }
  return owners_[best].get();
}

void Daemon::on_queue_create(Session& s, const ControlMessage& m) {
  std::uint64_t depth = m.arg0;
  if (depth == 0 || depth > kMaxQueueDepth) {
    refuse(s, m, Status::error(StatusCode::kInvalidArgument, "queue depth {} is outside 1..{}", depth, kMaxQueueDepth));
    return;
  }
  std::uint32_t max_queues = std::min<std::uint32_t>(kMaxQueues, s.grant->max_queues);
  if (s.queue_count >= max_queues) {
    refuse(s, m, Status::error(StatusCode::kPermissionDenied, "the session has {} queues, its limit", s.queue_count));
    return;
  }
  if (s.depth_total + depth > s.grant->max_in_flight) {
    refuse(
        s, m,
        Status::error(StatusCode::kPermissionDenied, "{} more in flight would pass the session's limit of {} ({} used)",
                      depth, s.grant->max_in_flight, s.depth_total));
    return;
  }
  std::uint32_t index = 0;
  while (s.queues[index].queue != nullptr) ++index;
  auto owner = owner_for_new_queue();
  if (!owner.ok()) {
    refuse(s, m, owner.status());
    return;
  }
  std::uint64_t capacity = std::bit_ceil(depth);
  std::byte* block = s.memory.data() + queue_block_offset(index);
  std::memset(block, 0, sizeof(QueueWake));
  auto sq = create_ring<IoDescriptor>(std::span<std::byte>(block + kQueueSqOffset, kQueueCqOffset - kQueueSqOffset),
                                      capacity);
  auto cq = create_ring<IoCompletion>(std::span<std::byte>(block + kQueueCqOffset, kQueueBlockBytes - kQueueCqOffset),
                                      capacity);
  NVMUX_ASSERT(sq.ok() && cq.ok(), "queue rings must fit their block: {} / {}", sq.status().to_string(),
               cq.status().to_string());
  auto q = std::make_unique<ServiceQueue>();
  q->session_id = s.id;
  q->index = index;
  q->grant = s.grant;
  q->namespaces = controller_->namespaces();
  q->sq = RingConsumer<IoDescriptor>(*sq, Peer::kUntrusted);
  q->cq = RingProducer<IoCompletion>(*cq, Peer::kUntrusted);
  q->wake = reinterpret_cast<QueueWake*>(block);
  q->arena_iova = s.arena.iova();
  q->arena_bytes = s.arena.size();
  ServiceQueue* raw = q.get();
  if (Status a = (*owner)->attach(std::move(q)); !a.ok()) {
    refuse(s, m, a);
    return;
  }
  std::size_t owner_index = (*owner)->index();
  ++owner_queue_counts_[owner_index];
  s.queues[index] = QueueSlot{*owner, raw, static_cast<std::uint32_t>(depth)};
  ++s.queue_count;
  s.depth_total += static_cast<std::uint32_t>(depth);
  ControlMessage r = m;
  r.arg0 = index;
  r.arg1 = capacity;
  NVMUX_LOG_DEBUG("session {}: queue {} (depth {}) on owner{}", s.id, index, depth, owner_index);
  reply(s, r, (*owner)->wake_fd());
}

Status Daemon::close_queue(Session& s, std::uint32_t index) {
  QueueSlot& slot = s.queues[index];
  if (slot.queue == nullptr) {
    return Status::error(StatusCode::kNotFound, "queue {} is not open", index);
  }
  std::promise<void> closed;
  auto done = closed.get_future();
  slot.queue->on_closed = [&closed] { closed.set_value(); };
  NVMUX_RETURN_IF_ERROR(slot.owner->close(slot.queue));
  // In-flight commands finish into the arena we still map (the device may still be writing it).
  while (done.wait_for(kDrainLogEvery) != std::future_status::ready) {
    NVMUX_LOG_WARN("session {} queue {}: still waiting for in-flight commands to finish", s.id, index);
  }
  --owner_queue_counts_[slot.owner->index()];
  --s.queue_count;
  s.depth_total -= slot.depth;
  slot = QueueSlot{};
  return {};
}

void Daemon::on_queue_destroy(Session& s, const ControlMessage& m) {
  if (m.arg0 >= kMaxQueues) {
    refuse(s, m, Status::error(StatusCode::kInvalidArgument, "queue {} is outside 0..{}", m.arg0, kMaxQueues - 1));
    return;
  }
  Status closed = close_queue(s, static_cast<std::uint32_t>(m.arg0));
  if (!closed.ok()) {
    refuse(s, m, closed);
    return;
  }
  reply(s, m);
}

void Daemon::close_session(std::uint64_t id, const std::string& why) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  std::uint32_t queues = s.queue_count;
  for (std::uint32_t i = 0; i < kMaxQueues; ++i) {
    if (s.queues[i].queue != nullptr) {
      Status c = close_queue(s, i);
      if (!c.ok()) NVMUX_LOG_ERROR("session {} queue {}: {}", id, i, c.to_string());
    }
  }
  if (s.ready) {
    NVMUX_LOG_INFO("session {} closed (pid {}, uid {}): {}; {} queue(s) drained and freed", id, s.pid, s.uid, why,
                   queues);
    ++sessions_closed_;
  }
  ::close(s.socket);
  sessions_.erase(it);  // unregisters the arena, then unmaps the memfd
  for (const auto& o : owners_) o->on_memory_unregistered();
}

}  // namespace nvmux::service
