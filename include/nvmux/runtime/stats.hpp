#pragma once
// RuntimeStats: a snapshot of every reactor, thread and live lane, taken by Runtime::stats().
//
// Threading: a plain value; Runtime::stats() may run on any thread at any time, and reads counters
// that each have one writer (relaxed atomics), so a snapshot is consistent per counter, not across
// counters (a lane's depth and its message count may be a few messages apart).

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nvmux/common/histogram.hpp"

namespace nvmux {

struct HistogramSummary {
  std::uint64_t count = 0;
  std::uint64_t min = 0;
  std::uint64_t max = 0;
  double mean = 0;
  std::uint64_t p50 = 0;
  std::uint64_t p99 = 0;
  std::uint64_t p999 = 0;

  static HistogramSummary of(const Histogram& histogram);
};

struct ReactorStats {
  int index = 0;
  int core = -1;  // -1: not pinned
  bool dispatcher = false;
  std::uint64_t busy_ns = 0;
  std::uint64_t idle_ns = 0;
  std::uint64_t iterations = 0;
  std::uint64_t sleeps = 0;          // times it went to sleep (interrupt mode)
  std::uint64_t wakeups = 0;         // sleeps ended by a sender's wake-up (others ended by a timer)
  std::uint64_t yields = 0;          // sched_yield calls while idle (polling mode)
  bool asleep = false;               // sleeping at the time of the snapshot
  std::vector<std::string> threads;  // names of the threads it runs now
};

struct ThreadStats {
  std::string name;
  std::uint64_t serial = 0;
  std::string state;
  int reactor = -1;
  int bound_core = -1;  // -1: not bound
  std::uint64_t busy_ns = 0;
  std::uint64_t idle_ns = 0;
  std::uint64_t polls = 0;
  std::uint64_t messages = 0;   // messages run on this thread
  std::uint64_t forwarded = 0;  // messages relayed to other threads (the dispatcher)
  std::uint64_t pollers = 0;
  std::uint64_t moves = 0;  // times a scheduler or move_thread moved it
};

struct LaneStats {
  std::uint64_t id = 0;
  std::string sender;    // "tid 1234 'name'" for a foreign pthread, else the thread's name
  std::string consumer;  // the thread that drains it (the target, or the dispatcher)
  std::string target;    // the thread the messages run on
  std::uint64_t depth = 0;
  std::uint64_t high_water = 0;
  std::uint64_t sent = 0;
  std::uint64_t messages = 0;  // run or forwarded
  std::uint64_t full_events = 0;
  std::uint64_t sender_sleeps = 0;  // times the sender slept (futex) on the full lane
  std::uint64_t dropped = 0;
  bool sender_gone = false;
  HistogramSummary batch_size;
  HistogramSummary latency_ns;  // sampled enqueue-to-execute (1 in kLatencySampleEveryMsgs)
};

struct RuntimeStats {
  std::vector<ReactorStats> reactors;
  std::vector<ThreadStats> threads;
  std::vector<LaneStats> lanes;  // live lanes only
  std::uint64_t lanes_created = 0;
  std::uint64_t lanes_retired = 0;
  std::uint64_t retired_lane_messages = 0;  // messages run on lanes that were retired since
  std::uint64_t dropped_messages = 0;       // destroyed without running (exited targets, stop)

  nlohmann::json to_json() const;
};

}  // namespace nvmux
