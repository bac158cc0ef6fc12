// nvmux-torture: attacks a running nvmuxd as a hostile client would (tests/tools/torture.hpp) and
// reports whether the daemon held. Run it beside a verifying client to see that the neighbours
// are unaffected (docs/service.md, "Failures and attacks"):
//
//   nvmuxd --socket /tmp/nvmux.sock --ns ram:size=256M &
//   nvmux-verify --socket /tmp/nvmux.sock --partition 1/2 -t 60 &
//   nvmux-torture --socket /tmp/nvmux.sock --rounds 1000 --descriptors 1000000 --partition 0/2
//
// Exit codes: 0 the daemon held (no failure found), 1 a failure (a dead or hung daemon, a bad
// descriptor that succeeded, a completion nobody asked for, an overflowed ring, an unsealed memfd),
// 2 bad usage or no daemon to attack.
#include <unistd.h>

#include <cstdio>
#include "cli.hpp"

#include "nvmux/common/log.hpp"
#include "nvmux/common/partition.hpp"
#include "nvmux/service/client.hpp"
#include "torture.hpp"

int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  nvmux::init_logging("warn");
  CLI::App app{"nvmux-torture: attack nvmuxd as a hostile client and report whether it held"};
  nvmux::torture::TortureParams p;
  std::string partition;
  app.add_option("--socket", p.socket, "nvmuxd's socket (default: $NVMUX_SOCKET, else the per-user default)");
  app.add_option("--rounds", p.rounds, "attack rounds, over every attack kind in turn")->capture_default_str();
  app.add_option("--descriptors", p.descriptors, "hostile descriptors in all")->capture_default_str();
  app.add_option("--seed", p.seed, "random seed")->capture_default_str();
  app.add_option("--partition", partition,
                 "K/N: valid writes go only to this range of namespace 1 (default: no valid writes at all)");
  app.add_option("--detection-timeout-ms", p.detection_timeout_ms,
                 "a session with impossible ring indices must be closed within this")
      ->capture_default_str();
  app.add_option("--attacks", p.attacks, "only these attack kinds, in turn (default: every one)")->delimiter(',');
  app.add_option("--unread-hold-ms", p.unread_hold_ms, "how long an unread round leaves its CQ full")
      ->capture_default_str();
  if (auto done = nvmux::apps::parse_command_line(app, "nvmux-torture", argc, argv)) return *done;
  if (p.rounds == 0 || p.rounds > 100'000'000 || p.descriptors > 1'000'000'000) {
    std::fprintf(stderr, "nvmux-torture: --rounds 1..1e8, --descriptors at most 1e9\n");
    return 2;
  }
  if (!partition.empty()) {
    auto parsed = nvmux::parse_partition(partition);
    if (!parsed.ok()) {
      std::fprintf(stderr, "nvmux-torture: %s\n", parsed.status().message().c_str());
      return 2;
    }
    auto client = nvmux::service::Client::connect(p.socket);
    if (!client.ok()) {
      std::fprintf(stderr, "nvmux-torture: %s\n", client.status().to_string().c_str());
      return 2;
    }
    auto ns = (*client)->namespace_info(1);
    if (!ns.ok()) {
      std::fprintf(stderr, "nvmux-torture: namespace 1: %s\n", ns.status().to_string().c_str());
      return 2;
    }
    const auto units = nvmux::partition_units(*parsed, ns->blocks, 1);
    p.lba_first = units.first_unit;
    p.lba_count = units.units;
  }
  const bool tty = isatty(STDERR_FILENO) != 0;
  auto report = nvmux::torture::run_torture(p, [&](std::uint64_t round) {
    if (tty && (round % 10 == 0 || round == p.rounds)) {
      std::fprintf(stderr, "\r  round %llu / %llu   ", static_cast<unsigned long long>(round),
                   static_cast<unsigned long long>(p.rounds));
    }
  });
  if (tty) std::fprintf(stderr, "\r%40s\r", "");
  if (!report.ok()) {
    std::fprintf(stderr, "nvmux-torture: %s\n", report.status().to_string().c_str());
    return 2;
  }
  std::fputs(nvmux::torture::format_report(*report).c_str(), stdout);
  return report->failures.empty() ? 0 : 1;
}
