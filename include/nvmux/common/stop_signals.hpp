#pragma once
// SIGINT and SIGTERM as a request to stop early, for the command-line tools (nvmux-perf,
// nvmux-msgbench): the first one sets a flag the run polls — the run ends early, the tool prints
// and writes its partial results marked interrupted, cleans up and exits 128 + N (130 SIGINT,
// 143 SIGTERM). A second one of the same signal kills at once (SA_RESETHAND: default action).
//
// Threading: catch_stop_signals() from main before the run starts; stop_signal() from any thread.

#include <atomic>

namespace nvmux {

// Installs the SIGINT and SIGTERM handlers.
void catch_stop_signals();
// The first SIGINT/SIGTERM caught since catch_stop_signals(), 0 while none was. Set from a signal
// handler (a lock-free atomic); poll it with a relaxed load.
const std::atomic<int>& stop_signal();
// The exit status of a tool that signal `signo` stopped early: 128 + signo, as a shell reports it.
constexpr int exit_status_for_signal(int signo) { return 128 + signo; }

}  // namespace nvmux
