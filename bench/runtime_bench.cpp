// Micro-benchmarks of the runtime's message path: the cost of one send plus its share of a drain
// on one OS thread (no cache-line transfer), and a plain pthread streaming to a thread on a
// reactor (the real cross-core path, back-pressure included).
#include <benchmark/benchmark.h>

#include <atomic>
#include <thread>

#include "nvmux/runtime/runtime.hpp"

namespace nvmux {
namespace {

// One OS thread sends a batch and then polls the target by hand: the per-message CPU cost.
void BM_SendAndDrainSameThread(benchmark::State& state) {
  const auto batch = static_cast<int>(state.range(0));
  auto rt = Runtime::create({}).value();
  Thread* t = rt->create_thread("target").value();
  std::uint64_t ran = 0;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      if (!try_send_msg(*t, [&ran] { ++ran; }).ok()) state.SkipWithError("lane full");
    }
    while (rt->poll_thread(*t, 0).value()) {
    }
  }
  benchmark::DoNotOptimize(ran);
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_SendAndDrainSameThread)->Arg(1)->Arg(32);

// The calling pthread streams messages to a lightweight thread on a reactor; waits for the last.
void BM_SendToReactor(benchmark::State& state) {
  RuntimeOptions options;
  options.cores = {std::thread::hardware_concurrency() > 1 ? 1 : 0};
  options.scheme = state.range(0) == 0 ? MessageScheme::kInboxPoller : MessageScheme::kDispatcher;
  auto rt = Runtime::create(options).value();
  Thread* t = rt->create_thread("target").value();
  if (!rt->start().ok()) state.SkipWithError("start failed");
  std::atomic<std::uint64_t> ran{0};
  std::uint64_t sent = 0;
  for (auto _ : state) {
    if (!send_msg(*t, [&ran] { ran.store(ran.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }).ok()) {
      state.SkipWithError("send failed");
      break;
    }
    ++sent;
  }
  while (ran.load(std::memory_order_relaxed) != sent) std::this_thread::yield();
  state.SetItemsProcessed(static_cast<std::int64_t>(sent));
  state.SetLabel(std::string(to_string(options.scheme)));
  (void)rt->stop();
}
BENCHMARK(BM_SendToReactor)->Arg(0)->Arg(1)->UseRealTime();

}  // namespace
}  // namespace nvmux

BENCHMARK_MAIN();
