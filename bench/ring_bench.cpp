// ring_bench: nvmux::SpscRing against boost::lockfree::spsc_queue and moodycamel::ReaderWriterQueue,
// side by side in one run on the same machine.
//
//   stream_single/<queue>   producer (core 0) -> consumer (core 1), one element per call
//   stream_bulk32/<queue>   the same with the queues' own bulk calls, 32 elements per call
//                           (ReaderWriterQueue has no bulk calls, so it has no row here)
//   pingpong/<queue>        round trip: A pushes to B over one ring, B answers over another
//
// Every queue holds 1024 uint64_t slots. By default each benchmark repeats 5 times in random
// interleaved order and the summary compares medians. Extra flags (before Google Benchmark's own):
//   --json FILE   write the medians and ratios as JSON
//   --quick       shorter runs (3 repetitions, 0.1 s each); see bench_args.hpp
#include <benchmark/benchmark.h>

#include <readerwriterqueue.h>
#include "bench_support.hpp"

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "nvmux/common/cpu.hpp"
#include "nvmux/ring/spsc_ring.hpp"

namespace {

using Item = std::uint64_t;
constexpr std::size_t kCapacity = 1024;
constexpr std::size_t kBulk = 32;
constexpr std::size_t kItemsPerIteration = 4096;
constexpr int kProducerCore = 0;
constexpr int kConsumerCore = 1;

// One interface over the three queues so every benchmark body is written once.
struct NvmuxQueue {
  static constexpr const char* kName = "nvmux";
  nvmux::SpscRing<Item> ring{kCapacity};
  bool push(Item v) { return ring.try_push(v); }
  bool pop(Item& v) { return ring.try_pop(v); }
  std::size_t push_bulk(const Item* v, std::size_t n) { return ring.push_bulk({v, n}); }
  std::size_t pop_bulk(Item* v, std::size_t n) { return ring.pop_bulk({v, n}); }
};

struct BoostQueue {
  static constexpr const char* kName = "boost";
  boost::lockfree::spsc_queue<Item, boost::lockfree::capacity<kCapacity>> queue;
  bool push(Item v) { return queue.push(v); }
  bool pop(Item& v) { return queue.pop(v); }
  std::size_t push_bulk(const Item* v, std::size_t n) { return queue.push(v, n); }
  std::size_t pop_bulk(Item* v, std::size_t n) { return queue.pop(v, n); }
};

struct MoodycamelQueue {
  static constexpr const char* kName = "moodycamel";
  moodycamel::ReaderWriterQueue<Item> queue{kCapacity};
  bool push(Item v) { return queue.try_enqueue(v); }  // try_: never allocates
  bool pop(Item& v) { return queue.try_dequeue(v); }
};

void pin_or_skip(benchmark::State& state, int core) {
  if (nvmux::online_cores() <= core) return;  // fewer cores: run unpinned
  if (auto s = nvmux::pin_current_thread(core); !s.ok()) state.SkipWithError(s.to_string().c_str());
}

// Runs the consumer until `stop` is set and the queue is empty; counts what it received.
template <class Q, bool kBulkCalls>
void consume_until_stopped(Q& q, std::atomic<bool>& stop, std::uint64_t& received, std::uint64_t& errors) {
  (void)nvmux::pin_current_thread(kConsumerCore);
  Item expect = 0;
  Item buf[kBulk];
  for (;;) {
    std::size_t n = 0;
    if constexpr (kBulkCalls) {
      n = q.pop_bulk(buf, kBulk);
    } else {
      n = q.pop(buf[0]) ? 1 : 0;
    }
    for (std::size_t i = 0; i < n; ++i) errors += (buf[i] != expect++);
    received += n;
    if (n == 0) {
      if (stop.load(std::memory_order_acquire)) {
        // The producer is done; one more look catches what it pushed before setting stop.
        if constexpr (kBulkCalls) {
          n = q.pop_bulk(buf, kBulk);
        } else {
          n = q.pop(buf[0]) ? 1 : 0;
        }
        if (n == 0) return;
        for (std::size_t i = 0; i < n; ++i) errors += (buf[i] != expect++);
        received += n;
        continue;
      }
      nvmux::cpu_relax();
    }
  }
}

template <class Q, bool kBulkCalls>
void stream(benchmark::State& state) {
  auto q = std::make_unique<Q>();
  std::atomic<bool> stop{false};
  std::uint64_t received = 0, errors = 0;
  std::thread consumer([&] { consume_until_stopped<Q, kBulkCalls>(*q, stop, received, errors); });
  pin_or_skip(state, kProducerCore);
  Item next = 0;
  Item buf[kBulk];
  for (auto _ : state) {
    for (std::size_t sent = 0; sent < kItemsPerIteration;) {
      if constexpr (kBulkCalls) {
        for (std::size_t i = 0; i < kBulk; ++i) buf[i] = next + i;
        std::size_t done = 0;
        while (done < kBulk) {
          std::size_t n = q->push_bulk(buf + done, kBulk - done);
          if (n == 0) nvmux::cpu_relax();
          done += n;
        }
        next += kBulk;
        sent += kBulk;
      } else {
        while (!q->push(next)) nvmux::cpu_relax();
        ++next;
        ++sent;
      }
    }
  }
  stop.store(true, std::memory_order_release);
  consumer.join();
  (void)nvmux::unpin_current_thread();
  if (errors != 0 || received != next) state.SkipWithError("consumer saw lost or reordered items");
  state.SetItemsProcessed(static_cast<std::int64_t>(next));
}

template <class Q>
void pingpong(benchmark::State& state) {
  auto there = std::make_unique<Q>();
  auto back = std::make_unique<Q>();
  constexpr Item kStop = ~Item{0};
  std::thread echo([&] {
    (void)nvmux::pin_current_thread(kConsumerCore);
    Item v = 0;
    for (;;) {
      if (!there->pop(v)) {
        nvmux::cpu_relax();
        continue;
      }
      while (!back->push(v)) nvmux::cpu_relax();
      if (v == kStop) return;
    }
  });
  pin_or_skip(state, kProducerCore);
  Item seq = 0, got = 0;
  std::uint64_t errors = 0;
  for (auto _ : state) {
    while (!there->push(seq)) nvmux::cpu_relax();
    while (!back->pop(got)) nvmux::cpu_relax();
    errors += (got != seq++);
  }
  while (!there->push(kStop)) nvmux::cpu_relax();
  while (!back->pop(got)) nvmux::cpu_relax();
  echo.join();
  (void)nvmux::unpin_current_thread();
  if (errors != 0) state.SkipWithError("ping-pong answered with the wrong value");
  state.SetItemsProcessed(static_cast<std::int64_t>(seq));  // round trips
}

}  // namespace

BENCHMARK(stream<NvmuxQueue, false>)->Name("stream_single/nvmux")->UseRealTime();
BENCHMARK(stream<BoostQueue, false>)->Name("stream_single/boost")->UseRealTime();
BENCHMARK(stream<MoodycamelQueue, false>)->Name("stream_single/moodycamel")->UseRealTime();
BENCHMARK(stream<NvmuxQueue, true>)->Name("stream_bulk32/nvmux")->UseRealTime();
BENCHMARK(stream<BoostQueue, true>)->Name("stream_bulk32/boost")->UseRealTime();
BENCHMARK(pingpong<NvmuxQueue>)->Name("pingpong/nvmux")->UseRealTime();
BENCHMARK(pingpong<BoostQueue>)->Name("pingpong/boost")->UseRealTime();
BENCHMARK(pingpong<MoodycamelQueue>)->Name("pingpong/moodycamel")->UseRealTime();

int main(int argc, char** argv) {
  nvmux::bench::BenchArgs args;
  if (!nvmux::bench::init_bench(argc, argv, args)) return 1;
  const std::string& json_path = args.json_path;

  std::printf("ring_bench: %zu-slot queues of %zu-byte items, producer core %d, consumer core %d, %s\n", kCapacity,
              sizeof(Item), kProducerCore, kConsumerCore, args.repetitions.c_str());
  nvmux::bench::MedianReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  struct Row {
    double items_per_sec = 0;
    double ns_per_iteration = 0;
  };
  std::map<std::string, Row> rows;
  for (const auto& [name, m] : reporter.medians) rows[name] = Row{m.counter("items_per_second"), m.real_time_ns};
  auto ratio = [&rows](const std::string& a, const std::string& b, bool higher_is_better) -> double {
    if (!rows.count(a) || !rows.count(b)) return 0;
    return higher_is_better ? rows[a].items_per_sec / rows[b].items_per_sec
                            : rows[b].ns_per_iteration / rows[a].ns_per_iteration;
  };
  struct Target {
    const char* what;
    std::string ours, theirs;
    bool throughput;
    double target;
  };
  std::vector<Target> targets{
      {"single-element streaming, nvmux / boost (throughput)", "stream_single/nvmux", "stream_single/boost", true, 1.0},
      {"bulk-of-32 streaming, nvmux / boost (throughput)", "stream_bulk32/nvmux", "stream_bulk32/boost", true, 1.25},
      {"ping-pong round trip, boost / nvmux (time)", "pingpong/nvmux", "pingpong/boost", false, 1.0},
      {"single-element streaming, nvmux / moodycamel", "stream_single/nvmux", "stream_single/moodycamel", true, 0},
      {"ping-pong round trip, moodycamel / nvmux", "pingpong/nvmux", "pingpong/moodycamel", false, 0},
  };
  std::printf("\nSummary (medians; ratio > 1 means nvmux is better)\n");
  std::printf("  %-28s %14s %14s\n", "benchmark", "M items/s", "ns/iteration");
  for (auto& [name, row] : rows) {
    std::printf("  %-28s %14.1f %14.1f\n", name.c_str(), row.items_per_sec / 1e6, row.ns_per_iteration);
  }
  nlohmann::json out;
  out["params"] = {
      {"capacity", kCapacity},          {"item_bytes", sizeof(Item)},     {"bulk", kBulk},
      {"producer_core", kProducerCore}, {"consumer_core", kConsumerCore}, {"repetitions", args.repetitions}};
  for (auto& [name, row] : rows)
    out["medians"][name] = {{"items_per_sec", row.items_per_sec}, {"ns", row.ns_per_iteration}};
  std::printf("\n  %-56s %7s %8s\n", "comparison", "ratio", "target");
  for (auto& t : targets) {
    double r = ratio(t.ours, t.theirs, t.throughput);
    std::string target = t.target > 0 ? (">= " + std::to_string(t.target).substr(0, 4)) : "-";
    std::printf("  %-56s %7.2f %8s%s\n", t.what, r, target.c_str(),
                t.target > 0 && r < t.target ? "  (below target)" : "");
    out["ratios"].push_back({{"comparison", t.what}, {"ratio", r}, {"target", t.target}});
  }
  if (!json_path.empty()) {
    std::ofstream(json_path) << out.dump(2) << "\n";
    std::printf("\nwrote %s\n", json_path.c_str());
  }
  return 0;
}
