#pragma once
// The DPDK environment abstraction layer (EAL), started once per process on first use and torn
// down by shutdown_dpdk_eal(). Built only when DPDK was found (NVMUX_MSGBENCH_HAVE_DPDK).
//
// EAL settings (no hardware, no root-only state left behind):
//   --no-huge -m 256     anonymous memory instead of hugepages (none are reserved on this machine)
//   --no-pci             no device probing
//   --no-shconf          no shared config file: nothing for a secondary process to attach to
//   --file-prefix=nvmux-msgbench-<pid>   a runtime directory of our own, removed again at shutdown
//   --no-telemetry       no telemetry socket or thread
//   -l 0                 one lcore; the EAL pins the calling thread to it, so ensure_dpdk_eal()
//                        resets the affinity of every thread of the process to all cores afterwards
//   --log-level=...      warnings and errors only (NVMUX_DPDK_LOG_LEVEL overrides)
//
// Threading: thread-safe (a mutex guards the one-time start). DPDK cannot start again after
// rte_eal_cleanup(), so after shutdown_dpdk_eal() ensure_dpdk_eal() returns kUnavailable.

#include <string>

#include "nvmux/common/status.hpp"

namespace nvmux::msgbench {

// Errors: kUnavailable (rte_eal_init failed; the message carries rte_errno's text), kInternal.
Status ensure_dpdk_eal();
// rte_eal_cleanup() and removal of the runtime directory; a no-op when the EAL never started.
void shutdown_dpdk_eal();
// Removes the runtime directory only, leaving the EAL running: for a process about to _Exit while
// threads still use DPDK objects. A no-op when the EAL never started.
void remove_dpdk_runtime_dir();
// "DPDK 22.11.x" (the library's own rte_version()).
std::string dpdk_version_string();

}  // namespace nvmux::msgbench
