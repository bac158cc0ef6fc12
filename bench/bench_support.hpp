#pragma once
// What nvmux's Google Benchmark programs (ring_bench, nvme_bench) share: command-line handling
// that makes every run a comparison of medians, and a reporter that keeps those medians.
//
// Takes nvmux's own flags out of argv and hands the rest to Google Benchmark after defaults that
// make every run a comparison of medians:
//   --json FILE   where the program writes its medians and ratios
//   --quick       3 repetitions of 0.1 s each instead of 5 of 0.5 s (make demo, smoke runs)
// Defaults: repetitions, min time, random interleaving, aggregates only, and no colour when stdout
// is not a terminal. Any --benchmark_* flag the user gives comes later and wins.

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

namespace nvmux::bench {

struct BenchArgs {
  std::string json_path;
  bool quick = false;
  std::string repetitions;  // e.g. "benchmark_repetitions=5", for the parameter line
};

// Parses argv and initialises Google Benchmark. Returns false (after Google Benchmark has said
// why) when an argument is not recognised.
inline bool init_bench(int argc, char** argv, BenchArgs& out) {
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) {
      out.json_path = argv[++i];
    } else if (a == "--quick") {
      out.quick = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  static std::vector<std::string> defaults;  // Google Benchmark keeps pointers into argv
  defaults = {out.quick ? "--benchmark_repetitions=3" : "--benchmark_repetitions=5",
              out.quick ? "--benchmark_min_time=0.1" : "--benchmark_min_time=0.5",
              "--benchmark_enable_random_interleaving=true", "--benchmark_report_aggregates_only=true"};
  if (isatty(STDOUT_FILENO) == 0) defaults.emplace_back("--benchmark_color=false");  // clean logs
  out.repetitions = defaults[0].substr(2);
  static std::vector<char*> all;
  all = {rest[0]};
  for (auto& d : defaults) all.push_back(d.data());
  all.insert(all.end(), rest.begin() + 1, rest.end());
  int all_argc = static_cast<int>(all.size());
  benchmark::Initialize(&all_argc, all.data());
  return !benchmark::ReportUnrecognizedArguments(all_argc, all.data());
}

// The median run (or the only run, without repetitions) of every benchmark, by name
// ("function" or "function/args"), printed as usual on the console as well.
class MedianReporter : public benchmark::ConsoleReporter {
 public:
  struct Median {
    std::map<std::string, double> counters;  // user counters and items_per_second
    double real_time_ns = 0;                 // per iteration
    double counter(const std::string& name) const {
      auto it = counters.find(name);
      return it == counters.end() ? 0.0 : it->second;
    }
  };
  std::map<std::string, Median> medians;

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
      bool single = run.run_type == Run::RT_Iteration && run.repetitions <= 1;
      if (!median && !single) continue;
      Median m;
      for (const auto& [name, c] : run.counters) m.counters[name] = c.value;
      m.real_time_ns = run.GetAdjustedRealTime();  // time unit is ns (the default)
      std::string key = run.run_name.function_name;
      if (!run.run_name.args.empty()) key += "/" + run.run_name.args;
      medians[key] = std::move(m);
    }
  }
};

}  // namespace nvmux::bench
