// nvmuxd's admin socket: JSON-RPC 2.0 over a Unix stream socket, one request per line, answered
// on the control thread between data-socket events (docs/admin.md). Only the daemon's own uid and
// root may connect: the methods can end sessions and reload the policy.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "daemon.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"
#include "nvmux/nvme/emu.hpp"

#ifndef NVMUX_VERSION
#define NVMUX_VERSION "unknown"
#endif

namespace nvmux::service {

namespace {

constexpr std::size_t kMaxRpcConnections = 16;
constexpr int kRpcSendTimeoutMs = 1000;  // an admin client that does not read its answer is dropped

using nlohmann::json;

json policy_json(const Policy& policy) {
  json rules = json::array();
  for (const PolicyRule& r : policy.rules()) {
    json rule;
    if (r.uid) rule["uid"] = *r.uid;
    if (r.gid) rule["gid"] = *r.gid;
    json namespaces = json::array();
    for (const NamespaceGrant& g : r.grant.namespaces) {
      json ranges = json::array();
      for (const auto& [first, last] : g.lba_ranges) ranges.push_back({first, last});
      namespaces.push_back({{"nsid", g.nsid}, {"access", g.writable ? "rw" : "ro"}, {"lba_ranges", ranges}});
    }
    rule["namespaces"] = namespaces;
    rule["max_queues"] = r.grant.max_queues;
    rule["max_arena_bytes"] = r.grant.max_arena_bytes;
    rule["max_in_flight"] = r.grant.max_in_flight;
    rules.push_back(rule);
  }
  return rules;
}

// The quantiles every latency view reports: the admin JSON's name, Prometheus' label, percent.
struct LatencyQuantile {
  const char* name;
  const char* label;
  double percent;
};
constexpr LatencyQuantile kLatencyQuantiles[] = {
    {"p50", "0.5", 50.0}, {"p90", "0.9", 90.0}, {"p99", "0.99", 99.0}, {"p999", "0.999", 99.9}};

// TSC ticks as microseconds, to the nanosecond (a billion ticks converted keeps the fraction).
double ticks_to_us(double ticks) {
  return std::round(ticks * static_cast<double>(tsc_to_ns(1'000'000'000)) / 1e9) / 1e3;
}

// A histogram of TSC ticks as microseconds: count, mean, the quantiles above and max, since the
// queue (or queue pair) began.
json latency_json(const Histogram& tsc) {
  json out{{"count", tsc.count()}, {"mean", ticks_to_us(tsc.mean())}};
  for (const LatencyQuantile& q : kLatencyQuantiles) {
    out[q.name] = ticks_to_us(static_cast<double>(tsc.percentile(q.percent)));
  }
  out["max"] = ticks_to_us(static_cast<double>(tsc.max()));
  return out;
}

json qpair_json(const OwnerStats& o) {
  const nvme::QueuePairStats& q = o.qpair;
  json errors = json::object();
  for (const auto& [status, count] : q.errors_by_status) errors[fmt::format("{:#06x}", status)] = count;
  return {{"index", o.index},
          {"thread", o.thread},
          {"core", o.core},
          {"qid", o.qid},
          {"client_queues", o.queues},
          {"in_flight", o.in_flight},
          {"submitted", q.submitted},
          {"completed", q.completed},
          {"device_errors", q.device_errors},
          {"timeouts", q.timeouts},
          {"retries", q.retries},
          {"aborted", q.aborted},
          {"late_completions", q.late_completions},
          {"queue_full", q.queue_full},
          {"depth", q.depth},
          {"max_depth", q.max_depth},
          {"errors_by_status", errors},
          {"latency_us", latency_json(o.latency_tsc)}};
}

}  // namespace

Status Daemon::open_rpc_socket() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, rpc_socket_path_.data(), rpc_socket_path_.size());
  // The data socket was just taken, so no live daemon serves this one: a file left here is stale.
  struct stat st {};
  if (::lstat(rpc_socket_path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::error(StatusCode::kAlreadyExists, "--rpc-socket {} exists and is not a socket; not replacing it",
                           rpc_socket_path_);
    }
    ::unlink(rpc_socket_path_.c_str());
  }
  rpc_listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (rpc_listen_fd_ < 0) return Status::from_errno(errno, "socket");
  if (::bind(rpc_listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Status::from_errno(errno, fmt::format("bind {}", rpc_socket_path_));
  }
  ::chmod(rpc_socket_path_.c_str(), 0600);  // the daemon's uid (and root); checked again per peer
  if (::listen(rpc_listen_fd_, 8) != 0) return Status::from_errno(errno, fmt::format("listen {}", rpc_socket_path_));
  return {};
}

void Daemon::close_rpc() {
  for (RpcConnection& c : rpc_connections_) ::close(c.fd);
  rpc_connections_.clear();
  if (rpc_listen_fd_ >= 0) {
    ::close(rpc_listen_fd_);
    ::unlink(rpc_socket_path_.c_str());
  }
  rpc_listen_fd_ = -1;
}

void Daemon::accept_rpc() {
  while (true) {
    int fd = ::accept4(rpc_listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != 0 && cred.uid != geteuid())) {
      NVMUX_LOG_WARN("admin socket: refused pid {} uid {} (only uid {} and root)", cred.pid, cred.uid, geteuid());
      ::close(fd);
      continue;
    }
    if (rpc_connections_.size() >= kMaxRpcConnections) {
      NVMUX_LOG_WARN("admin socket: refused pid {}: {} admin connections is the limit", cred.pid, kMaxRpcConnections);
      ::close(fd);
      continue;
    }
    timeval tv{kRpcSendTimeoutMs / 1000, static_cast<suseconds_t>(kRpcSendTimeoutMs % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);  // answers block (bounded by SO_SNDTIMEO)
    rpc_connections_.push_back(RpcConnection{fd, {}});
  }
}

bool Daemon::serve_rpc(RpcConnection& c) {
  char buf[4096];
  const ssize_t n = ::recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT);
  if (n == 0) return false;
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  c.input.append(buf, static_cast<std::size_t>(n));
  std::size_t newline;
  while ((newline = c.input.find('\n')) != std::string::npos) {
    std::string response = rpc_.handle(std::string_view(c.input).substr(0, newline));
    c.input.erase(0, newline + 1);
    if (response.empty()) continue;  // a notification
    response += '\n';
    for (std::size_t sent = 0; sent < response.size();) {
      const ssize_t w = ::send(c.fd, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
      if (w <= 0) return false;
      sent += static_cast<std::size_t>(w);
    }
  }
  if (c.input.size() > rpc::kMaxRequestBytes) {
    const std::string refusal = rpc_.handle(c.input) + "\n";  // answers "too long"
    (void)::send(c.fd, refusal.data(), refusal.size(), MSG_NOSIGNAL);
    return false;
  }
  return true;
}

Status Daemon::reload_policy() {
  if (options_.policy_path.empty()) {
    return Status::error(StatusCode::kInvalidArgument,
                         "nvmuxd runs without --policy (only its own uid and root); nothing to reload");
  }
  auto policy = Policy::load(options_.policy_path);
  if (!policy.ok()) {
    NVMUX_LOG_WARN("policy reload: kept the old policy: {}", policy.status().to_string());
    return Status(policy.status().code(), fmt::format("kept the old policy: {}", policy.status().message()));
  }
  policy_ = *policy;
  ++policy_reloads_;
  NVMUX_LOG_INFO("policy reloaded from {} ({} rules); open sessions keep the grants they had", options_.policy_path,
                 policy_->rules().size());
  return {};
}

std::string Daemon::metrics_text() {
  const DaemonCounters c = counters();
  std::string out;
  auto metric = [&out](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  metric("nvmuxd_sessions", "gauge", "Client sessions open.", c.sessions);
  metric("nvmuxd_queues", "gauge", "Client queues open.", c.queues);
  metric("nvmuxd_in_flight", "gauge", "Requests on the device.", c.in_flight);
  metric("nvmuxd_sessions_closed_total", "counter", "Sessions closed since the start.", c.sessions_closed);
  metric("nvmuxd_sessions_refused_total", "counter", "Connections refused since the start.", c.sessions_refused);
  metric("nvmuxd_policy_reloads_total", "counter", "Successful policy reloads.", policy_reloads_);
  metric("nvmuxd_registered_regions", "gauge", "Client arenas registered with the controller.", c.registered_regions);
  metric("nvmuxd_session_memory_bytes", "gauge", "Session shared memory mapped by the daemon.", c.session_memory_bytes);
  const std::pair<const char*, std::uint64_t nvme::QueuePairStats::*> per_qpair[] = {
      {"submitted", &nvme::QueuePairStats::submitted},
      {"completed", &nvme::QueuePairStats::completed},
      {"device_errors", &nvme::QueuePairStats::device_errors},
      {"timeouts", &nvme::QueuePairStats::timeouts},
      {"retries", &nvme::QueuePairStats::retries},
      {"aborted", &nvme::QueuePairStats::aborted}};
  std::vector<OwnerStats> owners;
  for (const auto& o : owners_) {
    if (auto s = o->stats(); s.ok()) owners.push_back(std::move(*s));
  }
  for (const auto& [what, field] : per_qpair) {
    out += fmt::format("# HELP nvmuxd_qpair_{}_total Commands {} by each backend queue pair.\n", what, what);
    out += fmt::format("# TYPE nvmuxd_qpair_{}_total counter\n", what);
    for (const OwnerStats& o : owners) {
      out +=
          fmt::format("nvmuxd_qpair_{}_total{{qpair=\"{}\",core=\"{}\"}} {}\n", what, o.index, o.core, o.qpair.*field);
    }
  }
  // A summary (quantiles since the start, _sum and _count), as client libraries export latencies.
  out += "# HELP nvmuxd_qpair_latency_seconds From taking a request off its ring to reaping its completion.\n";
  out += "# TYPE nvmuxd_qpair_latency_seconds summary\n";
  for (const OwnerStats& o : owners) {
    const std::string labels = fmt::format("qpair=\"{}\",core=\"{}\"", o.index, o.core);
    for (const LatencyQuantile& q : kLatencyQuantiles) {
      out += fmt::format("nvmuxd_qpair_latency_seconds{{{},quantile=\"{}\"}} {:.9f}\n", labels, q.label,
                         ticks_to_us(static_cast<double>(o.latency_tsc.percentile(q.percent))) / 1e6);
    }
    const double sum_ticks = o.latency_tsc.mean() * static_cast<double>(o.latency_tsc.count());
    out += fmt::format("nvmuxd_qpair_latency_seconds_sum{{{}}} {:.9f}\n", labels, ticks_to_us(sum_ticks) / 1e6);
    out += fmt::format("nvmuxd_qpair_latency_seconds_count{{{}}} {}\n", labels, o.latency_tsc.count());
  }
  return out;
}

void Daemon::add_rpc_methods() {
  using rpc::Error;
  rpc_.add("nvmuxd_get_version", "version, protocol, pid, sockets, uptime", [this](const json&) -> rpc::Reply {
    return json{{"version", NVMUX_VERSION},
                {"protocol", kProtocolVersion},
                {"pid", ::getpid()},
                {"socket", socket_path_},
                {"rpc_socket", rpc_socket_path_},
                {"backend", nvme::to_string(options_.backend.backend)},
                {"uptime_s", static_cast<double>(monotonic_ns() - started_ns_) / 1e9}};
  });
  rpc_.add("nvmuxd_get_stats",
           "the daemon's totals: sessions, queues, in flight, closed and refused sessions, registered arenas, "
           "mapped session memory, policy reloads",
           [this](const json&) -> rpc::Reply {
             const DaemonCounters c = counters();
             return json{{"sessions", c.sessions},
                         {"queues", c.queues},
                         {"in_flight", c.in_flight},
                         {"sessions_closed", c.sessions_closed},
                         {"sessions_refused", c.sessions_refused},
                         {"registered_regions", c.registered_regions},
                         {"session_memory_bytes", c.session_memory_bytes},
                         {"policy_reloads", policy_reloads_}};
           });
  rpc_.add("ns_get_list", "the namespaces served: nsid, blocks, block size, bytes", [this](const json&) -> rpc::Reply {
    json list = json::array();
    for (const nvme::NamespaceInfo& ns : controller_->namespaces()) {
      list.push_back({{"nsid", ns.nsid},
                      {"blocks", ns.blocks},
                      {"block_size", ns.block_size},
                      {"bytes", ns.blocks * ns.block_size}});
    }
    return list;
  });
  rpc_.add("session_get_list",
           "open sessions: id, pid, uid, gid, queues, in flight, I/Os, errors, reads and writes with their bytes",
           [this](const json&) -> rpc::Reply {
             json list = json::array();
             for (const auto& [id, s] : sessions_) {
               std::uint64_t submitted = 0, completed = 0, refused = 0, errors = 0;
               std::uint64_t reads = 0, writes = 0, bytes_read = 0, bytes_written = 0;
               Histogram latency;
               for (const QueueSlot& q : s->queues) {
                 if (q.queue == nullptr) continue;
                 const QueueCounters& c = q.queue->counters;  // each has one writer: relaxed reads
                 latency.merge(c.latency_tsc);
                 submitted += c.submitted.load(std::memory_order_relaxed);
                 completed += c.completed.load(std::memory_order_relaxed);
                 refused += c.refused.load(std::memory_order_relaxed);
                 errors += c.errors.load(std::memory_order_relaxed);
                 reads += c.reads.load(std::memory_order_relaxed);
                 writes += c.writes.load(std::memory_order_relaxed);
                 bytes_read += c.bytes_read.load(std::memory_order_relaxed);
                 bytes_written += c.bytes_written.load(std::memory_order_relaxed);
               }
               const std::uint64_t accepted = submitted + refused;
               list.push_back({{"id", id},
                               {"pid", s->pid},
                               {"uid", s->uid},
                               {"gid", s->gid},
                               {"rule", s->grant ? s->grant->rule : std::string("(no hello yet)")},
                               {"queues", s->queue_count},
                               {"in_flight", accepted > completed ? accepted - completed : 0},
                               {"ios", completed},
                               {"errors", errors},
                               {"refused", refused},
                               {"reads", reads},
                               {"writes", writes},
                               {"bytes_read", bytes_read},
                               {"bytes_written", bytes_written},
                               {"arena_bytes", s->memory.size()},
                               {"latency_us", latency_json(latency)}});
             }
             return list;
           });
  rpc_.add("session_kill", "params: id. Ends a session as if its client had hung up",
           [this](const json& params) -> rpc::Reply {
             auto id = rpc::required_u64(params, "id");
             if (const auto* e = std::get_if<Error>(&id)) return *e;
             const std::uint64_t session = std::get<std::uint64_t>(id);
             if (sessions_.count(session) == 0) return Error{-ENOENT, fmt::format("no session {}", session)};
             close_session(session, "ended through the admin socket (session_kill)");
             return true;
           });
  rpc_.add("qpair_get_stats", "each backend queue pair: owner thread and core, commands, timeouts, retries",
           [this](const json&) -> rpc::Reply {
             json list = json::array();
             for (const auto& o : owners_) {
               auto s = o->stats();
               if (!s.ok()) return Error{rpc::kInternalError, s.status().to_string()};
               list.push_back(qpair_json(*s));
             }
             return list;
           });
  rpc_.add("runtime_get_stats", "reactors (busy, idle, sleeps), threads and lanes (depth, high water)",
           [this](const json&) -> rpc::Reply { return runtime_->stats().to_json(); });
  rpc_.add("policy_get", "the policy in force: its file and client rules", [this](const json&) -> rpc::Reply {
    return json{{"path", options_.policy_path.empty() ? json(nullptr) : json(options_.policy_path)},
                {"clients", policy_json(*policy_)}};
  });
  rpc_.add("policy_reload", "loads --policy again (as SIGHUP does); a bad file keeps the old policy",
           [this](const json&) -> rpc::Reply {
             Status s = reload_policy();
             if (!s.ok()) return Error{s.to_errno(), s.message()};
             return json{{"path", options_.policy_path}, {"clients", policy_->rules().size()}};
           });
  rpc_.add("metrics_get", "the counters in Prometheus' text format (a string)",
           [this](const json&) -> rpc::Reply { return metrics_text(); });
  // Fault injection, emu backend only (as SPDK's bdev_error_inject_error): for tests and drills.
  rpc_.add("emu_inject_fault",
           "emu only. params: kind (status|delay|drop|duplicate|bad_cid), qid (default: every I/O queue), opcode, "
           "skip, count (0: every one), sct, sc, dnr, delay_us",
           [this](const json& params) -> rpc::Reply {
             auto* emu = dynamic_cast<nvme::EmuController*>(controller_.get());
             if (emu == nullptr) return Error{-ENOTSUP, "fault injection needs --backend emu"};
             static const std::map<std::string, nvme::FaultRule::Kind> kinds = {
                 {"status", nvme::FaultRule::Kind::kStatus},
                 {"delay", nvme::FaultRule::Kind::kDelay},
                 {"drop", nvme::FaultRule::Kind::kDrop},
                 {"duplicate", nvme::FaultRule::Kind::kDuplicate},
                 {"bad_cid", nvme::FaultRule::Kind::kBadCid}};
             const std::string kind = params.value("kind", std::string());
             auto k = kinds.find(kind);
             if (k == kinds.end()) {
               return Error{rpc::kInvalidParams,
                            fmt::format("kind '{}': one of status, delay, drop, duplicate, bad_cid", kind)};
             }
             nvme::FaultRule rule;
             rule.kind = k->second;
             rule.qid = params.value("qid", nvme::FaultRule::kAnyIoQueue);
             rule.opcode = params.value("opcode", nvme::FaultRule::kAnyOpcode);
             rule.skip = params.value("skip", 0u);
             rule.count = params.value("count", 1u);
             rule.status =
                 nvme::make_status(static_cast<nvme::StatusCodeType>(params.value("sct", 0u) & 7),
                                   static_cast<std::uint8_t>(params.value("sc", 6u)), params.value("dnr", false));
             rule.delay_us = params.value("delay_us", std::uint64_t{0});
             if (rule.qid == 0)
               return Error{rpc::kInvalidParams, "qid 0 is the admin queue; faults are for I/O queues"};
             emu->inject_fault(rule);
             NVMUX_LOG_WARN("admin socket: emu fault injected: {} on qid {} (count {})", kind, rule.qid, rule.count);
             return true;
           });
  rpc_.add("emu_clear_faults", "emu only: removes every injected fault", [this](const json&) -> rpc::Reply {
    auto* emu = dynamic_cast<nvme::EmuController*>(controller_.get());
    if (emu == nullptr) return Error{-ENOTSUP, "fault injection needs --backend emu"};
    emu->clear_faults();
    return true;
  });
  rpc_.add("rpc_get_methods", "every method with its help", [this](const json&) -> rpc::Reply {
    json out = json::object();
    for (const auto& [name, help] : rpc_.methods()) out[name] = help;
    return out;
  });
}

}  // namespace nvmux::service
