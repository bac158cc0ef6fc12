// nvmux-verify: a verifying client of nvmuxd. Random writes and reads over one partition of a
// namespace; every block written is stamped and every block read is checked.
//
//   nvmux-verify --socket /tmp/nvmux.sock -t 5                  # the whole namespace
//   for k in 0 1 2 3; do nvmux-verify --partition $k/4 -t 10 & done; wait
//   nvmux-verify --daemon-stats                                  # sessions, queues, in flight
//
// Exit codes: 0 every read matched and no I/O failed, 1 mismatches, I/O errors or a failure on the
// way (no daemon, refused), 2 bad usage.
#include <unistd.h>

#include <cstdio>
#include "cli.hpp"

#include "nvmux/common/log.hpp"
#include "nvmux/service/client.hpp"
#include "verify.hpp"

// An exception escaping main ends the tool with its message (CLI11 and std::bad_alloc only).
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  nvmux::init_logging("warn");
  CLI::App app{"nvmux-verify: random verified writes and reads through nvmuxd"};
  nvmux::verify::VerifyParams p;
  std::string partition = "0/1";
  bool stats_only = false, quiet = false;
  app.add_option("--socket", p.socket, "nvmuxd's socket (default: $NVMUX_SOCKET or the default path)");
  app.add_option("--nsid", p.nsid, "namespace")->capture_default_str();
  app.add_option("--partition", partition, "verify only the K-th of N equal LBA ranges (K/N, K from 0)")
      ->capture_default_str();
  app.add_option("-q,--queue-depth", p.depth, "requests in flight (1..1024)")->capture_default_str();
  app.add_option("--io-blocks", p.io_blocks, "blocks per request (1..256)")->capture_default_str();
  app.add_option("-t,--time", p.seconds, "seconds to run")->capture_default_str();
  app.add_option("--write-percent", p.write_percent, "share of writes (0..100)")->capture_default_str();
  app.add_option("--seed", p.seed, "stamp and random seed")->capture_default_str();
  app.add_flag("--daemon-stats", stats_only, "print the daemon's session counters and exit");
  app.add_flag("--quiet", quiet, "no progress line");
  app.footer("Exit codes: 0 all verified, 1 mismatches / I/O errors / failure, 2 bad usage.");
  if (auto done = nvmux::apps::parse_command_line(app, "nvmux-verify", argc, argv)) return *done;
  const int pid = static_cast<int>(getpid());
  if (stats_only) {
    auto client = nvmux::service::Client::connect(p.socket);
    if (!client.ok()) {
      std::fprintf(stderr, "nvmux-verify: %s\n", client.status().message().c_str());
      return 1;
    }
    auto stats = (*client)->daemon_stats();
    if (!stats.ok()) {
      std::fprintf(stderr, "nvmux-verify: %s\n", stats.status().message().c_str());
      return 1;
    }
    // This query is a session itself: report the others.
    std::printf(
        "nvmuxd: %llu other session(s) open, %llu queue(s), %llu request(s) in flight, %llu session(s) closed\n",
        static_cast<unsigned long long>(stats->sessions - 1), static_cast<unsigned long long>(stats->queues),
        static_cast<unsigned long long>(stats->in_flight), static_cast<unsigned long long>(stats->sessions_closed));
    return 0;
  }
  if (auto parsed = nvmux::parse_partition(partition); parsed.ok()) {
    p.partition = *parsed;
  } else {
    std::fprintf(stderr, "nvmux-verify: %s\n", parsed.status().message().c_str());
    return 2;
  }
  const bool tty = !quiet && isatty(STDERR_FILENO) != 0;
  auto report = nvmux::verify::run_verify(p, [&](double elapsed) {
    if (tty) std::fprintf(stderr, "\r  nvmux-verify[%d]: %.0f / %.0f s ", pid, elapsed, p.seconds);
  });
  if (tty) std::fprintf(stderr, "\r%50s\r", "");
  if (!report.ok()) {
    std::fprintf(stderr, "nvmux-verify[%d]: %s\n", pid, report.status().message().c_str());
    return report.status().code() == nvmux::StatusCode::kInvalidArgument ? 2 : 1;
  }
  const auto& r = *report;
  double iops = static_cast<double>(r.writes + r.reads) / r.seconds;
  std::printf(
      "nvmux-verify[%d] partition %u/%u (LBAs %llu..%llu): %llu writes, %llu reads verified, %.0f IOPS, "
      "%llu mismatches, %llu I/O errors\n",
      pid, p.partition.index, p.partition.count, static_cast<unsigned long long>(r.first_lba),
      static_cast<unsigned long long>(r.first_lba + r.lbas - 1), static_cast<unsigned long long>(r.writes),
      static_cast<unsigned long long>(r.reads), iops, static_cast<unsigned long long>(r.mismatches),
      static_cast<unsigned long long>(r.io_errors));
  if (!r.first_error.empty()) std::printf("  first error: %s\n", r.first_error.c_str());
  return r.mismatches == 0 && r.io_errors == 0 ? 0 : 1;
}
