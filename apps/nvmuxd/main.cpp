// nvmuxd: owns an NVMe controller and every queue pair on it, and serves client processes through
// shared-memory rings (docs/service.md).
//
//   nvmuxd                                            # emu, one 1 GiB RAM namespace, default socket
//   nvmuxd --socket /tmp/nvmux.sock --ns file:/var/lib/db.img,size=4G
//   nvmuxd --backend uring --ns bdev:/dev/nvme0n1 --cores 1 --policy /etc/nvmux/policy.json
//   nvmuxd --backend vfio --pci 0000:00:04.0                 # docs/vfio.md
//
// Exit codes: 0 stopped cleanly (SIGINT/SIGTERM), 1 failed while running or starting, 2 bad usage.
#include <cstdio>

#include "cli.hpp"
#include "daemon.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"

// An exception escaping main ends the tool with its message (CLI11 and std::bad_alloc only).
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"nvmuxd: one process owns the NVMe device; many client processes share it through it"};
  nvmux::service::DaemonOptions options;
  std::string backend = "emu", cores, emu_engine = "inline", log_level = "info";
  std::vector<std::string> ns_args;
  bool buffered = false;
  app.add_option("--socket", options.socket_path,
                 "Unix socket to serve (default: $NVMUX_SOCKET, /run/nvmux/nvmuxd.sock for root, else "
                 "$XDG_RUNTIME_DIR/nvmux/nvmuxd.sock)");
  app.add_option("--backend", backend,
                 "emu (software NVMe controller), uring (io_uring on files/block devices) or vfio (a PCIe controller "
                 "bound to vfio-pci)")
      ->capture_default_str();
  app.add_option("--pci", options.backend.pci_address, "vfio: the controller's PCI address, e.g. 0000:00:04.0");
  app.add_option("--ns", ns_args,
                 "namespace, as nvmux-perf names them: ram:size=1G | null:size=1G | file:PATH[,size=1G] | "
                 "bdev:/dev/X (repeatable; emu default ram:size=1G)");
  app.add_option("--cores", cores, "cores for the queue-pair owner threads, e.g. 0 or 0,1 or 0-3 (default: all)");
  app.add_option("--policy", options.policy_path,
                 "JSON access policy (default: only this daemon's uid and root, full access); SIGHUP reloads it");
  app.add_option("--rpc-socket", options.rpc_socket_path,
                 "the admin socket, JSON-RPC 2.0 (default: beside --socket, NAME.rpc.sock); see nvmux-ctl");
  app.add_option("--max-qpairs", options.max_qpairs, "backend queue pairs at most (0: as many as the device grants)")
      ->check(CLI::Range(0u, 64u))
      ->capture_default_str();
  app.add_option("--qpair-entries", options.qpair_entries, "entries per backend queue pair (power of two)")
      ->check(CLI::Range(2u, 65536u))
      ->capture_default_str();
  app.add_option("--io-timeout-ms", options.io_timeout_ms, "a command not completed by then fails with -ETIMEDOUT")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{3'600'000}))
      ->capture_default_str();
  app.add_option("--emu-engine", emu_engine, "emu device engine: inline (works inside the owner's poll) or thread")
      ->capture_default_str();
  app.add_option("--emu-latency-us", options.backend.emu_latency_us, "emu: fixed latency added to every I/O")
      ->check(CLI::Range(0u, 1'000'000u));
  app.add_flag("--buffered", buffered, "uring: use the page cache instead of O_DIRECT");
  app.add_flag("--sqpoll", options.backend.uring_sqpoll, "uring: a kernel thread polls the submission queue");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  app.footer("Exit codes: 0 stopped by SIGINT/SIGTERM, 1 failed, 2 bad usage.");
  if (auto done = nvmux::apps::parse_command_line(app, "nvmuxd", argc, argv)) return *done;
  nvmux::init_logging(log_level);
  auto usage = [](const nvmux::Status& s) {
    std::fprintf(stderr, "nvmuxd: %s\n", s.message().c_str());
    return 2;
  };
  auto b = nvmux::nvme::parse_backend(backend);
  if (!b.ok()) return usage(b.status());
  options.backend.backend = *b;
  for (const auto& a : ns_args) {
    auto ns = nvmux::nvme::parse_namespace_arg(a);
    if (!ns.ok()) return usage(ns.status());
    options.backend.namespaces.push_back(*ns);
  }
  if (!cores.empty()) {
    auto list = nvmux::parse_core_list(cores, "--cores");
    if (!list.ok()) return usage(list.status());
    options.cores = *list;
  }
  if (emu_engine != "thread" && emu_engine != "inline") {
    return usage(
        nvmux::Status::error(nvmux::StatusCode::kInvalidArgument, "--emu-engine {}: inline or thread", emu_engine));
  }
  options.backend.emu_inline_engine = emu_engine == "inline";
  options.backend.uring_direct = !buffered;

  auto daemon = nvmux::service::Daemon::create(options);
  if (!daemon.ok()) {
    std::fprintf(stderr, "nvmuxd: %s\n", daemon.status().to_string().c_str());
    return daemon.status().code() == nvmux::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::printf("%s\n", (*daemon)->ready_line().c_str());
  std::fflush(stdout);
  nvmux::Status s = (*daemon)->run();
  if (!s.ok()) {
    std::fprintf(stderr, "nvmuxd: %s\n", s.to_string().c_str());
    return 1;
  }
  return 0;
}
