#include "nvmux/common/stop_signals.hpp"

#include <csignal>

namespace nvmux {
namespace {

std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "set from a signal handler");

// Async-signal-safe: a lock-free compare-exchange. Keeps the first signal.
void on_stop_signal(int signo) {
  int none = 0;
  g_stop_signal.compare_exchange_strong(none, signo, std::memory_order_relaxed);
}

}  // namespace

void catch_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

const std::atomic<int>& stop_signal() { return g_stop_signal; }

}  // namespace nvmux
