// nvmux-top: a live view of nvmuxd, like spdk_top and top, read from its admin socket each second.
//
//   nvmux-top --socket /tmp/nvmux.sock          # keys: 1 sessions, 2 queue pairs, 3 reactors,
//                                               # 4 lanes; i/p/f sort sessions by IOPS, pid or
//                                               # in flight; q quits
//   nvmux-top --socket /tmp/nvmux.sock --once   # every view once (rates over --interval-ms), for scripts
//
// Exit codes: 0 quit with q (or --once printed), 1 the daemon is not running (--once), 2 bad usage.
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include "cli.hpp"

#include "nvmux/common/cpu.hpp"
#include "nvmux/service/protocol.hpp"
#include "rpc.hpp"
#include "rpc_client.hpp"

namespace {

using nlohmann::json;

enum class View { kSessions, kQpairs, kReactors, kLanes };
enum class SortBy { kIops, kPid, kInFlight };

// json members: a failed allocation while sampling ends the tool, which is what it should do.
struct Sample {  // NOLINT(bugprone-exception-escape)
  json version, sessions, qpairs, runtime;
  std::uint64_t at_ns = 0;
};

// Every method the view needs, or the reason the daemon did not answer.
nvmux::Result<Sample> sample(const std::string& rpc_socket) {
  Sample s;
  for (auto [method, out] : {std::pair{"nvmuxd_get_version", &s.version}, std::pair{"session_get_list", &s.sessions},
                             std::pair{"qpair_get_stats", &s.qpairs}, std::pair{"runtime_get_stats", &s.runtime}}) {
    auto r = nvmux::service::rpc::call(rpc_socket, method, json::object(), 5000);
    if (!r.ok()) return r.status();
    if (!r->contains("result")) {
      return nvmux::Status::error(nvmux::StatusCode::kInternal, "{}: {}", method, (*r)["error"].dump());
    }
    *out = (*r)["result"];
  }
  s.at_ns = nvmux::monotonic_ns();
  return s;
}

// The per-second rate of `field` of the element of `now` whose `key` matches one in `before`.
double rate(const json& before, const json& now, const char* key, const char* field, double seconds) {
  for (const json& b : before) {
    if (b.value(key, json()) == now.value(key, json()) && seconds > 0) {
      const auto was = b.value(field, std::uint64_t{0}), is = now.value(field, std::uint64_t{0});
      return is >= was ? static_cast<double>(is - was) / seconds : 0.0;
    }
  }
  return 0.0;
}

// The p99 latency (us) nvmuxd reports for a session or queue pair: since it began, not per refresh.
double p99_us(const json& row) { return row.value("latency_us", json::object()).value("p99", 0.0); }

std::string header(const Sample& s) {
  const json& v = s.version;
  return fmt::format("nvmux-top: nvmuxd {} (pid {}, {} backend) on {}, up {:.0f} s: {} session(s), {} queue pair(s)\n",
                     v.value("version", "?"), v.value("pid", 0), v.value("backend", "?"), v.value("socket", "?"),
                     v.value("uptime_s", 0.0), s.sessions.size(), s.qpairs.size());
}

std::string sessions_view(const Sample& before, const Sample& now, SortBy sort) {
  const double seconds = static_cast<double>(now.at_ns - before.at_ns) / 1e9;
  struct Row {
    json s;
    double reads, writes, mib;
  };
  std::vector<Row> rows;
  for (const json& s : now.sessions) {
    const double mib = (rate(before.sessions, s, "id", "bytes_read", seconds) +
                        rate(before.sessions, s, "id", "bytes_written", seconds)) /
                       1048576.0;
    rows.push_back(
        {s, rate(before.sessions, s, "id", "reads", seconds), rate(before.sessions, s, "id", "writes", seconds), mib});
  }
  std::sort(rows.begin(), rows.end(), [sort](const Row& a, const Row& b) {
    switch (sort) {
      case SortBy::kPid: return a.s.value("pid", 0) < b.s.value("pid", 0);
      case SortBy::kInFlight: return a.s.value("in_flight", 0u) > b.s.value("in_flight", 0u);
      case SortBy::kIops: break;
    }
    return a.reads + a.writes > b.reads + b.writes;
  });
  std::string out =
      fmt::format("{:>8} {:>8} {:>6} {:>6} {:>9} {:>11} {:>11} {:>9} {:>9} {:>8} {:>8}\n", "SESSION", "PID", "UID",
                  "QUEUES", "INFLIGHT", "READ/s", "WRITE/s", "MiB/s", "P99us", "ERRORS", "REFUSED");
  for (const Row& r : rows) {
    out += fmt::format("{:>8} {:>8} {:>6} {:>6} {:>9} {:>11.0f} {:>11.0f} {:>9.1f} {:>9.1f} {:>8} {:>8}\n",
                       r.s.value("id", 0), r.s.value("pid", 0), r.s.value("uid", 0), r.s.value("queues", 0),
                       r.s.value("in_flight", 0), r.reads, r.writes, r.mib, p99_us(r.s), r.s.value("errors", 0),
                       r.s.value("refused", 0));
  }
  if (rows.empty()) out += "  (no sessions)\n";
  return out;
}

std::string qpairs_view(const Sample& before, const Sample& now) {
  const double seconds = static_cast<double>(now.at_ns - before.at_ns) / 1e9;
  std::string out = fmt::format("{:>6} {:>5} {:>10} {:>5} {:>7} {:>9} {:>12} {:>9} {:>9} {:>8} {:>8} {:>8}\n", "QPAIR",
                                "QID", "THREAD", "CORE", "QUEUES", "INFLIGHT", "COMMANDS/s", "MAXDEPTH", "P99us",
                                "ERRORS", "TIMEOUTS", "RETRIES");
  for (const json& q : now.qpairs) {
    out += fmt::format("{:>6} {:>5} {:>10} {:>5} {:>7} {:>9} {:>12.0f} {:>9} {:>9.1f} {:>8} {:>8} {:>8}\n",
                       q.value("index", 0), q.value("qid", 0), q.value("thread", "?"), q.value("core", -1),
                       q.value("client_queues", 0), q.value("in_flight", 0),
                       rate(before.qpairs, q, "index", "completed", seconds), q.value("max_depth", 0), p99_us(q),
                       q.value("device_errors", 0), q.value("timeouts", 0), q.value("retries", 0));
  }
  return out;
}

std::string reactors_view(const Sample& before, const Sample& now) {
  std::string out =
      fmt::format("{:>8} {:>5} {:>7} {:>10} {:>8}  {}\n", "REACTOR", "CORE", "BUSY%", "SLEEPS/s", "ASLEEP", "THREADS");
  const double seconds = static_cast<double>(now.at_ns - before.at_ns) / 1e9;
  for (const json& r : now.runtime.value("reactors", json::array())) {
    double busy = 0;
    for (const json& b : before.runtime.value("reactors", json::array())) {
      if (b.value("index", -1) != r.value("index", -2)) continue;
      const double db = static_cast<double>(r.value("busy_ns", 0ull) - b.value("busy_ns", 0ull));
      const double di = static_cast<double>(r.value("idle_ns", 0ull) - b.value("idle_ns", 0ull));
      busy = db + di > 0 ? 100.0 * db / (db + di) : 0;
    }
    std::string threads;
    for (const json& t : r.value("threads", json::array()))
      threads += (threads.empty() ? "" : ",") + t.get<std::string>();
    out += fmt::format("{:>8} {:>5} {:>7.1f} {:>10.0f} {:>8}  {}\n", r.value("index", 0), r.value("core", -1), busy,
                       rate(before.runtime.value("reactors", json::array()), r, "index", "sleeps", seconds),
                       r.value("asleep", false) ? "yes" : "no", threads);
  }
  return out;
}

std::string lanes_view(const Sample& now) {
  std::string out = fmt::format("{:>6} {:>28} {:>14} {:>7} {:>10} {:>12} {:>6}\n", "LANE", "SENDER", "TARGET", "DEPTH",
                                "HIGHWATER", "MESSAGES", "FULL");
  const json lanes = now.runtime.value("lanes", json::array());
  for (const json& l : lanes) {
    out += fmt::format("{:>6} {:>28.28} {:>14.14} {:>7} {:>10} {:>12} {:>6}\n", l.value("id", 0),
                       l.value("sender", "?"), l.value("target", "?"), l.value("depth", 0), l.value("high_water", 0),
                       l.value("messages", 0), l.value("full_events", 0));
  }
  if (lanes.empty()) out += "  (no live lanes)\n";
  return out;
}

std::string view_text(View view, const Sample& before, const Sample& now, SortBy sort) {
  switch (view) {
    case View::kSessions: return sessions_view(before, now, sort);
    case View::kQpairs: return qpairs_view(before, now);
    case View::kReactors: return reactors_view(before, now);
    case View::kLanes: return lanes_view(now);
  }
  return {};
}

termios saved_termios;
bool raw_mode = false;
void restore_terminal() {
  if (raw_mode) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
  raw_mode = false;
  std::fputs("\x1b[?25h", stdout);  // the cursor back
  std::fflush(stdout);
}
void on_signal(int) {
  restore_terminal();
  _exit(0);
}

}  // namespace

int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"nvmux-top: a live view of nvmuxd (sessions, queue pairs, reactors, lanes) from its admin socket"};
  std::string socket, rpc_socket;
  int interval_ms = 1000;
  bool once = false;
  app.add_option("--socket", socket, "nvmuxd's data socket: its admin socket is beside it (NAME.rpc.sock)");
  app.add_option("--rpc-socket", rpc_socket, "the admin socket itself (overrides --socket)");
  app.add_option("--interval-ms", interval_ms, "refresh period (and, with --once, the rate window)")
      ->capture_default_str();
  app.add_flag("--once", once, "print every view once and exit (for scripts)");
  if (auto done = nvmux::apps::parse_command_line(app, "nvmux-top", argc, argv)) return *done;
  if (interval_ms < 100 || interval_ms > 60'000) {
    std::fprintf(stderr, "nvmux-top: --interval-ms %d: 100..60000\n", interval_ms);
    return 2;
  }
  if (rpc_socket.empty()) {
    rpc_socket =
        nvmux::service::rpc::rpc_socket_beside(socket.empty() ? nvmux::service::default_socket_path() : socket);
  }

  auto first = sample(rpc_socket);
  if (once) {
    if (!first.ok()) {
      std::fprintf(stderr, "nvmux-top: %s\n", first.status().message().c_str());
      return 1;
    }
    ::usleep(static_cast<useconds_t>(interval_ms) * 1000);
    auto second = sample(rpc_socket);
    if (!second.ok()) {
      std::fprintf(stderr, "nvmux-top: %s\n", second.status().message().c_str());
      return 1;
    }
    std::string out = header(*second);
    for (View v : {View::kSessions, View::kQpairs, View::kReactors, View::kLanes}) {
      out += "\n" + view_text(v, *first, *second, SortBy::kIops);
    }
    std::fputs(out.c_str(), stdout);
    return 0;
  }

  if (::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &saved_termios) == 0) {
    termios raw = saved_termios;
    raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    ::tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    raw_mode = true;
  }
  ::signal(SIGINT, on_signal);
  ::signal(SIGTERM, on_signal);
  std::atexit(restore_terminal);
  View view = View::kSessions;
  SortBy sort = SortBy::kIops;
  Sample before = first.ok() ? *first : Sample{};
  std::string last_error = first.ok() ? "" : first.status().message();
  while (true) {
    pollfd p{STDIN_FILENO, POLLIN, 0};
    if (::poll(&p, 1, interval_ms) > 0) {
      char key = 0;
      if (::read(STDIN_FILENO, &key, 1) == 1) {
        switch (key) {
          case 'q': return 0;
          case '1': view = View::kSessions; break;
          case '2': view = View::kQpairs; break;
          case '3': view = View::kReactors; break;
          case '4': view = View::kLanes; break;
          case 'i': sort = SortBy::kIops; break;
          case 'p': sort = SortBy::kPid; break;
          case 'f': sort = SortBy::kInFlight; break;
          default: break;
        }
      }
    }
    auto now = sample(rpc_socket);
    std::string screen = "\x1b[?25l\x1b[H\x1b[2J";
    if (!now.ok()) {
      screen += fmt::format("nvmux-top: {}; trying again every {} ms (q quits)\n", now.status().message(), interval_ms);
    } else {
      if (before.at_ns == 0) before = *now;
      screen += header(*now);
      screen +=
          "views: [1] sessions [2] queue pairs [3] reactors [4] lanes   sort sessions: [i]ops [p]id [f] in "
          "flight   [q]uit\n\n";
      screen += view_text(view, before, *now, sort);
      before = *now;
    }
    std::fputs(screen.c_str(), stdout);
    std::fflush(stdout);
  }
}
