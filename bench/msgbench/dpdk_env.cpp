#include "dpdk_env.hpp"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_version.h>

#include <dirent.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"

namespace nvmux::msgbench {
namespace {

enum class EalState { kNotStarted, kRunning, kFailed, kShutDown };

std::mutex g_eal_mutex;
EalState g_eal_state = EalState::kNotStarted;
std::string g_eal_error;
std::string g_runtime_dir;

// Resets the CPU affinity of every thread in the process (the EAL pinned the main thread to lcore
// 0 and its interrupt thread to the other cores) so no mode starts from a pinned thread.
Status unpin_every_thread() {
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int c = 0; c < online_cores() && c < CPU_SETSIZE; ++c) CPU_SET(c, &all);
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return Status::from_errno(errno, "opendir(/proc/self/task)");
  Status result;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    pid_t tid = static_cast<pid_t>(std::strtol(entry->d_name, nullptr, 10));
    if (sched_setaffinity(tid, sizeof(all), &all) != 0 && errno != ESRCH && result.ok()) {
      result = Status::from_errno(errno, "sched_setaffinity(thread " + std::string(entry->d_name) + ", all cores)");
    }
  }
  closedir(dir);
  return result;
}

}  // namespace

Status ensure_dpdk_eal() {
  std::lock_guard lock(g_eal_mutex);
  switch (g_eal_state) {
    case EalState::kRunning: return {};
    case EalState::kFailed: return Status(StatusCode::kUnavailable, g_eal_error);
    case EalState::kShutDown:
      return Status::error(StatusCode::kUnavailable,
                           "the DPDK EAL was shut down and cannot start again in this process");
    case EalState::kNotStarted: break;
  }
  const char* level = std::getenv("NVMUX_DPDK_LOG_LEVEL");
  std::vector<std::string> args{"nvmux-msgbench",
                                "--no-huge",
                                "-m",
                                "256",
                                "--no-pci",
                                "--no-shconf",
                                "--file-prefix=nvmux-msgbench-" + std::to_string(getpid()),
                                "--no-telemetry",
                                "-l",
                                "0",
                                std::string("--log-level=") + (level != nullptr ? level : "warning")};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = rte_eal_init(static_cast<int>(args.size()), argv.data());
  if (rc < 0) {
    g_eal_state = EalState::kFailed;
    g_eal_error = fmt::format("rte_eal_init failed: {} (rte_errno {}); EAL arguments were: {}", rte_strerror(rte_errno),
                              rte_errno, fmt::join(args, " "));
    return Status(StatusCode::kUnavailable, g_eal_error);
  }
  g_eal_state = EalState::kRunning;
  g_runtime_dir = rte_eal_get_runtime_dir();
  return unpin_every_thread();
}

namespace {

// The runtime directory and, when no other DPDK process keeps one there, its parent. Caller holds
// g_eal_mutex.
void remove_runtime_dir_locked() {
  // With --no-shconf the directory stays empty; remove it so no DPDK state outlives the run.
  if (!g_runtime_dir.empty() && rmdir(g_runtime_dir.c_str()) != 0 && errno != ENOENT) {
    NVMUX_LOG_WARN("could not remove DPDK runtime directory {}: {}", g_runtime_dir, std::strerror(errno));
  }
  // Its parent (/var/run/dpdk) was created by the EAL too; rmdir removes it only when no other
  // DPDK process keeps a directory there.
  if (auto slash = g_runtime_dir.rfind('/'); slash != std::string::npos && slash > 0) {
    (void)rmdir(g_runtime_dir.substr(0, slash).c_str());
  }
}

}  // namespace

void shutdown_dpdk_eal() {
  std::lock_guard lock(g_eal_mutex);
  if (g_eal_state != EalState::kRunning) return;
  int rc = rte_eal_cleanup();
  if (rc != 0) NVMUX_LOG_WARN("rte_eal_cleanup failed: {}", rte_strerror(-rc));
  g_eal_state = EalState::kShutDown;
  remove_runtime_dir_locked();
}

void remove_dpdk_runtime_dir() {
  std::lock_guard lock(g_eal_mutex);
  if (g_eal_state == EalState::kRunning) remove_runtime_dir_locked();
}

std::string dpdk_version_string() { return rte_version(); }

}  // namespace nvmux::msgbench
