#include "nvmux/runtime/runtime.hpp"

#include <algorithm>
#include <bit>
#include <set>
#include <thread>

#include "futex.hpp"
#include "nvmux/common/counter.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/fence.hpp"
#include "nvmux/common/log.hpp"
#include "nvmux/common/tsc_clock.hpp"
#include "reactor.hpp"

namespace nvmux {

namespace {

// Process-unique lightweight-thread serials (0 is "none" in sender caches). RMW only at creation.
std::atomic<std::uint64_t> g_next_thread_serial{1};

// stop(): pause between quiescence checks.
constexpr auto kStopPollInterval = std::chrono::microseconds(200);

Status invalid(std::string message) { return Status(StatusCode::kInvalidArgument, std::move(message)); }

Status validate(const RuntimeOptions& o) {
  if (o.cores.empty()) return invalid("RuntimeOptions.cores is empty: give at least one core");
  if (o.cores.size() > kMaxReactors) {
    return invalid(
        fmt::format("RuntimeOptions.cores has {} entries, kMaxReactors is {}", o.cores.size(), kMaxReactors));
  }
  std::set<int> seen;
  for (int core : o.cores) {
    if (core < 0 || core >= online_cores()) {
      return invalid(
          fmt::format("RuntimeOptions.cores has core {}: this machine has cores 0..{}", core, online_cores() - 1));
    }
    if (!seen.insert(core).second) {
      return invalid(fmt::format("RuntimeOptions.cores lists core {} twice (one reactor per core)", core));
    }
  }
  if (o.dispatcher_core < -1 || o.dispatcher_core >= online_cores()) {
    return invalid(fmt::format("RuntimeOptions.dispatcher_core is {}: use -1 (unpinned) or a core in 0..{}",
                               o.dispatcher_core, online_cores() - 1));
  }
  if (o.lane_capacity < 2 || o.lane_capacity > kMaxLaneCapacity || !std::has_single_bit(o.lane_capacity)) {
    return invalid(fmt::format("RuntimeOptions.lane_capacity is {}: it must be a power of two in [2, {}]",
                               o.lane_capacity, kMaxLaneCapacity));
  }
  if (o.drain_batch < 1 || o.drain_batch > kMaxDrainBatch) {
    return invalid(
        fmt::format("RuntimeOptions.drain_batch is {}: it must be in [1, {}]", o.drain_batch, kMaxDrainBatch));
  }
  if (o.scheduler_period_us < 100 || o.scheduler_period_us > 60'000'000) {
    return invalid(
        fmt::format("RuntimeOptions.scheduler_period_us is {}: it must be in [100, 60000000]", o.scheduler_period_us));
  }
  if (!(o.busy_threshold > 0.0 && o.busy_threshold < 1.0)) {
    return invalid(fmt::format("RuntimeOptions.busy_threshold is {}: it must be in (0, 1)", o.busy_threshold));
  }
  if (o.idle_before_sleep_us > 60'000'000) {
    return invalid(fmt::format("RuntimeOptions.idle_before_sleep_us is {}: at most 60000000", o.idle_before_sleep_us));
  }
  if (o.max_sleep_us < 100 || o.max_sleep_us > 600'000'000) {
    return invalid(fmt::format("RuntimeOptions.max_sleep_us is {}: it must be in [100, 600000000]", o.max_sleep_us));
  }
  if (o.blocked_sender_recheck_us < 100 || o.blocked_sender_recheck_us > 600'000'000) {
    return invalid(fmt::format("RuntimeOptions.blocked_sender_recheck_us is {}: it must be in [100, 600000000]",
                               o.blocked_sender_recheck_us));
  }
  if (o.stop_drain_timeout_us > 600'000'000) {
    return invalid(
        fmt::format("RuntimeOptions.stop_drain_timeout_us is {}: at most 600000000", o.stop_drain_timeout_us));
  }
  return {};
}

}  // namespace

std::string_view to_string(SchedulerKind kind) { return kind == SchedulerKind::kStatic ? "static" : "dynamic"; }
std::string_view to_string(MessageScheme scheme) {
  return scheme == MessageScheme::kInboxPoller ? "inbox-poller" : "dispatcher";
}

Result<std::unique_ptr<Runtime>> Runtime::create(RuntimeOptions options) {
  NVMUX_RETURN_IF_ERROR(validate(options));
  std::unique_ptr<Runtime> runtime(new Runtime(std::move(options)));
  if (runtime->options_.scheme == MessageScheme::kDispatcher) {
    auto thread = runtime->add_thread("nvmux-dispatcher", std::nullopt, true);
    if (!thread.ok()) return thread.status();
    runtime->dispatcher_ = *thread;
  }
  return runtime;
}

Runtime::Runtime(RuntimeOptions options) : options_(std::move(options)) {
  for (std::size_t i = 0; i < options_.cores.size(); ++i) {
    reactors_.push_back(std::make_unique<detail::Reactor>(*this, static_cast<int>(i), options_.cores[i], false));
  }
  if (options_.scheme == MessageScheme::kDispatcher) {
    reactors_.push_back(std::make_unique<detail::Reactor>(*this, static_cast<int>(options_.cores.size()),
                                                          options_.dispatcher_core, true));
  }
}

Runtime::~Runtime() {
  Status s = stop();
  if (!s.ok()) NVMUX_LOG_WARN("runtime destroyed: {}", s.to_string());
  // Anything pushed after stop() (a sender that raced it) is dropped here, and counted.
  if (std::uint64_t late = drop_all_queued(); late != 0) {
    NVMUX_LOG_WARN("runtime destroyed: dropped {} message(s) sent after stop()", late);
  }
  std::lock_guard lock(lanes_mutex_);
  for (auto& lane : lanes_) {
    // Long-lived senders forget this lane at their next new lane; pairs with their acquire.
    lane->closed.store(true, std::memory_order_release);
  }
  lanes_.clear();
}

bool Runtime::started() const {
  State s = state_.load(std::memory_order_acquire);  // pairs with start()/stop()
  return s == State::kRunning || s == State::kStopping;
}

std::uint64_t Runtime::now_us() const { return TscClock::instance().now_ns() / 1000; }

Result<Thread*> Runtime::create_thread(std::string name, std::optional<int> bound_core) {
  return add_thread(std::move(name), bound_core, false);
}

Result<Thread*> Runtime::add_thread(std::string name, std::optional<int> bound_core, bool is_dispatcher) {
  State state = state_.load(std::memory_order_acquire);
  if (state == State::kStopping || state == State::kStopped) {
    return Status::error(StatusCode::kUnavailable, "create_thread('{}'): the runtime is {}", name,
                         state == State::kStopped ? "stopped" : "stopping");
  }
  if (name.empty()) return invalid("create_thread: the name is empty");
  detail::Reactor* reactor = nullptr;
  Thread* thread = nullptr;
  {
    std::lock_guard lock(threads_mutex_);
    if (threads_.size() >= kMaxThreads) {
      return Status::error(StatusCode::kOutOfRange, "create_thread('{}'): kMaxThreads ({}) reached", name, kMaxThreads);
    }
    for (const auto& t : threads_) {
      if (t->name() == name) {
        return Status::error(StatusCode::kAlreadyExists, "create_thread('{}'): a thread has that name already", name);
      }
    }
    if (is_dispatcher) {
      reactor = reactors_.back().get();
    } else if (bound_core) {
      auto it = std::find(options_.cores.begin(), options_.cores.end(), *bound_core);
      if (it == options_.cores.end()) {
        return Status::error(StatusCode::kInvalidArgument,
                             "create_thread('{}'): bound core {} has no reactor (RuntimeOptions.cores)", name,
                             *bound_core);
      }
      reactor = reactors_[static_cast<std::size_t>(it - options_.cores.begin())].get();
    } else {
      reactor = reactors_[next_placement_++ % options_.cores.size()].get();
    }
    std::uint64_t serial = g_next_thread_serial.fetch_add(1, std::memory_order_relaxed);  // unique id only
    threads_.push_back(std::unique_ptr<Thread>(new Thread(this, std::move(name), serial, bound_core, is_dispatcher)));
    thread = threads_.back().get();
    thread->reactor_.store(reactor, std::memory_order_release);  // until the reactor adopts it
    thread->reactor_index_.store(reactor->index(), std::memory_order_relaxed);
  }
  reactor->adopt(thread);
  return thread;
}

Status Runtime::start() {
  std::lock_guard lifecycle(lifecycle_mutex_);
  State state = state_.load(std::memory_order_acquire);
  if (state != State::kCreated) {
    return Status::error(StatusCode::kUnavailable, "start: the runtime is already {}",
                         state == State::kRunning ? "running" : "stopped (it does not restart)");
  }
  state_.store(State::kRunning, std::memory_order_release);  // senders may now block for space
  for (auto& reactor : reactors_) {
    Status s = reactor->launch();
    if (!s.ok()) {
      for (auto& r : reactors_) r->request_exit();
      for (auto& r : reactors_) r->join();
      state_.store(State::kStopped, std::memory_order_release);
      drop_all_queued();
      wake_blocked_senders();
      return s;
    }
  }
  return {};
}

Status Runtime::move_thread(Thread& thread, int reactor_index) {
  if (&thread.runtime() != this) {
    return Status::error(StatusCode::kInvalidArgument, "move_thread: '{}' belongs to another runtime", thread.name());
  }
  if (thread.is_dispatcher()) return invalid("move_thread: the dispatcher thread stays on its own reactor");
  if (thread.bound_core()) {
    return Status::error(StatusCode::kInvalidArgument, "move_thread: '{}' is bound to core {} and never moves",
                         thread.name(), *thread.bound_core());
  }
  if (reactor_index < 0 || reactor_index >= reactor_count()) {
    return Status::error(StatusCode::kInvalidArgument, "move_thread('{}'): reactor {} is not in 0..{}", thread.name(),
                         reactor_index, reactor_count() - 1);
  }
  request_move(thread, reactor_index);
  return {};
}

void Runtime::request_move(Thread& thread, int reactor_index) {
  thread.move_request_.store(reactor_index, std::memory_order_release);  // the owner reactor picks it up
  // A sleeping owner must wake to hand the thread over (its pre-sleep check looks at move_request_).
  if (detail::Reactor* r = thread.reactor_.load(std::memory_order_acquire)) r->wake();
}

Result<bool> Runtime::poll_thread(Thread& thread, std::uint64_t now_us) {
  if (&thread.runtime() != this) {
    return Status::error(StatusCode::kInvalidArgument, "poll_thread: '{}' belongs to another runtime", thread.name());
  }
  if (state_.load(std::memory_order_acquire) != State::kCreated) {
    return Status::error(StatusCode::kUnavailable,
                         "poll_thread('{}'): manual polling only works before start (reactors own the threads now)",
                         thread.name());
  }
  return thread.poll(now_us);
}

void Runtime::note_lane_retired(detail::Lane& lane) {
  std::lock_guard lock(lanes_mutex_);
  auto it = std::find_if(lanes_.begin(), lanes_.end(), [&lane](const auto& l) { return l.get() == &lane; });
  if (it != lanes_.end()) lanes_.erase(it);
  ++lanes_retired_;
  retired_lane_messages_ += lane.executed.load(std::memory_order_relaxed);
}

void Runtime::note_dropped(std::uint64_t n) {
  if (n != 0) dropped_messages_.fetch_add(n, std::memory_order_relaxed);  // a counter; rare path
}

std::uint64_t Runtime::drop_all_queued() {
  // Only with no reactor running: this thread is now every lane's consumer.
  std::uint64_t total = 0;
  std::lock_guard lock(lanes_mutex_);
  for (auto& lane : lanes_) {
    std::size_t n =
        lane->ring.consume([](detail::Message& m) { m.drop(); }, static_cast<std::size_t>(lane->ring.capacity()));
    single_writer_add(lane->dropped, n);
    total += n;
  }
  note_dropped(total);
  return total;
}

void Runtime::wake_blocked_senders() {
  std::lock_guard lock(lanes_mutex_);
  // Our state and head stores come before reading the flags; pairs with the sender's fence
  // between setting its flag and re-checking.
  full_fence();
  for (auto& lane : lanes_) detail::PrivateWakeWord(lane->producer_waiting).wake_fenced();
}

bool Runtime::quiescent_pass() {
  auto snapshot = [this](bool& empty) {
    std::uint64_t ran = 0;
    {
      std::lock_guard lock(threads_mutex_);
      for (const auto& t : threads_) {
        ran += t->messages_.load(std::memory_order_relaxed) + t->forwarded_.load(std::memory_order_relaxed);
      }
    }
    empty = true;
    std::lock_guard lock(lanes_mutex_);
    for (const auto& lane : lanes_) {
      if (lane->ring.size_approx() != 0) empty = false;
    }
    return ran;
  };
  std::vector<std::uint64_t> iterations;
  for (auto& r : reactors_) iterations.push_back(r->iterations.load(std::memory_order_relaxed));
  bool empty = false;
  std::uint64_t ran_before = snapshot(empty);
  if (!empty) {
    std::this_thread::sleep_for(kStopPollInterval);
    return false;
  }
  // Every reactor finishes the iteration it was in and one more: a message running during the first
  // look has finished (and counted) by then.
  std::uint64_t deadline_ns = monotonic_ns() + 1'000'000'000ull;
  for (std::size_t i = 0; i < reactors_.size(); ++i) {
    while (reactors_[i]->iterations.load(std::memory_order_relaxed) < iterations[i] + 2) {
      reactors_[i]->wake();  // a sleeping reactor has nothing running; wake it to prove it
      if (monotonic_ns() > deadline_ns) return false;
      std::this_thread::sleep_for(kStopPollInterval);
    }
  }
  std::uint64_t ran_after = snapshot(empty);
  return empty && ran_after == ran_before;
}

Status Runtime::stop() {
  std::lock_guard lifecycle(lifecycle_mutex_);
  State state = state_.load(std::memory_order_acquire);
  if (state == State::kStopped) return {};
  std::uint64_t dropped = 0;
  if (state == State::kCreated) {
    state_.store(State::kStopped, std::memory_order_release);  // senders see it before we drop
    dropped = drop_all_queued();
  } else {
    if (detail::Reactor::current_index() >= 0) {
      return Status::error(StatusCode::kWrongThread,
                           "Runtime::stop called on reactor {} ({}): it would wait for itself; call it from a thread "
                           "the runtime does not run",
                           detail::Reactor::current_index(), current_thread_label());
    }
    state_.store(State::kStopping, std::memory_order_release);  // foreign senders now get kUnavailable
    std::uint64_t deadline_ns = monotonic_ns() + options_.stop_drain_timeout_us * 1000;
    bool quiet = false;
    while (!quiet && monotonic_ns() < deadline_ns) quiet = quiescent_pass();
    if (!quiet)
      NVMUX_LOG_WARN("runtime stop: still busy after stop_drain_timeout_us ({} us)", options_.stop_drain_timeout_us);
    for (auto& r : reactors_) r->request_exit();
    for (auto& r : reactors_) r->join();
    state_.store(State::kStopped, std::memory_order_release);  // every sender now gets kUnavailable
    dropped = drop_all_queued();
  }
  wake_blocked_senders();
  if (dropped != 0) {
    return Status::error(StatusCode::kAborted,
                         "stop dropped {} queued message(s) without running them (sent during stop, sent by "
                         "pollers or messages that kept the runtime busy, or racing a thread's exit)",
                         dropped);
  }
  return {};
}

void Runtime::run_scheduler() {
  // Runs on reactor 0. Reads each thread's busy/idle TSC (single-writer counters) over the last
  // period, then: busy threads spread greedily over the least-loaded reactors, idle threads
  // gathered on the least-loaded one. Bound threads never move but count towards their reactor's load.
  struct Candidate {
    Thread* thread;
    double ratio;
    int current;
  };
  const int reactors = reactor_count();
  std::vector<double> load(static_cast<std::size_t>(reactors), 0.0);
  std::vector<Candidate> busy;
  std::vector<Candidate> idle;
  {
    std::lock_guard lock(threads_mutex_);
    for (const auto& t : threads_) {
      if (t->is_dispatcher() || t->state() == ThreadState::kExited) continue;
      std::uint64_t b = t->busy_tsc_.load(std::memory_order_relaxed);
      std::uint64_t i = t->idle_tsc_.load(std::memory_order_relaxed);
      std::uint64_t db = b - t->sched_busy_tsc_;
      std::uint64_t di = i - t->sched_idle_tsc_;
      t->sched_busy_tsc_ = b;
      t->sched_idle_tsc_ = i;
      double ratio = db + di == 0 ? 0.0 : static_cast<double>(db) / static_cast<double>(db + di);
      int current = t->reactor_index();
      if (current < 0 || current >= reactors) continue;
      if (t->bound_core() || t->move_request_.load(std::memory_order_relaxed) != -1) {
        load[static_cast<std::size_t>(current)] += ratio;
        continue;
      }
      (ratio >= options_.busy_threshold ? busy : idle).push_back({t.get(), ratio, current});
    }
  }
  std::sort(busy.begin(), busy.end(), [](const Candidate& a, const Candidate& b) { return a.ratio > b.ratio; });
  auto least_loaded = [&load]() { return static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin()); };
  // Hysteresis: stay unless another reactor is lighter by this much (avoids ping-pong).
  constexpr double kMoveGain = 0.1;
  for (Candidate& c : busy) {
    int best = least_loaded();
    int chosen = load[static_cast<std::size_t>(c.current)] <= load[static_cast<std::size_t>(best)] + kMoveGain
                     ? c.current
                     : best;
    load[static_cast<std::size_t>(chosen)] += c.ratio;
    if (chosen != c.current) request_move(*c.thread, chosen);
  }
  if (!idle.empty()) {
    int home = least_loaded();
    for (Candidate& c : idle) {
      if (c.current != home) request_move(*c.thread, home);
    }
  }
}

RuntimeStats Runtime::stats() const {
  RuntimeStats out;
  for (const auto& r : reactors_) {
    ReactorStats rs;
    rs.index = r->index();
    rs.core = options_.pin_reactors ? r->core() : -1;
    rs.dispatcher = r->is_dispatcher();
    rs.busy_ns = tsc_to_ns(r->busy_tsc.load(std::memory_order_relaxed));
    rs.idle_ns = tsc_to_ns(r->idle_tsc.load(std::memory_order_relaxed));
    rs.iterations = r->iterations.load(std::memory_order_relaxed);
    rs.sleeps = r->sleeps.load(std::memory_order_relaxed);
    rs.wakeups = r->wakeups.load(std::memory_order_relaxed);
    rs.yields = r->yields.load(std::memory_order_relaxed);
    rs.asleep = r->asleep();
    out.reactors.push_back(std::move(rs));
  }
  {
    std::lock_guard lock(threads_mutex_);
    for (const auto& t : threads_) {
      ThreadStats ts;
      ts.name = t->name();
      ts.serial = t->serial();
      ts.state = std::string(to_string(t->state()));
      ts.reactor = t->reactor_index();
      ts.bound_core = t->bound_core().value_or(-1);
      ts.busy_ns = tsc_to_ns(t->busy_tsc_.load(std::memory_order_relaxed));
      ts.idle_ns = tsc_to_ns(t->idle_tsc_.load(std::memory_order_relaxed));
      ts.polls = t->polls_.load(std::memory_order_relaxed);
      ts.messages = t->messages_.load(std::memory_order_relaxed);
      ts.forwarded = t->forwarded_.load(std::memory_order_relaxed);
      ts.pollers = t->poller_count();
      ts.moves = t->moves_.load(std::memory_order_relaxed);
      if (t->state() != ThreadState::kExited && ts.reactor >= 0 &&
          static_cast<std::size_t>(ts.reactor) < out.reactors.size()) {
        out.reactors[static_cast<std::size_t>(ts.reactor)].threads.push_back(ts.name);
      }
      out.threads.push_back(std::move(ts));
    }
  }
  std::lock_guard lock(lanes_mutex_);
  for (const auto& lane : lanes_) {
    LaneStats ls;
    ls.id = lane->id;
    ls.sender = lane->sender_name;
    ls.consumer = lane->consumer->name();
    ls.target = lane->target->name();
    ls.depth = lane->ring.size_approx();
    ls.high_water = lane->high_water.load(std::memory_order_relaxed);
    ls.sent = lane->sent.load(std::memory_order_relaxed);
    ls.messages = lane->executed.load(std::memory_order_relaxed);
    ls.full_events = lane->full_events.load(std::memory_order_relaxed);
    ls.sender_sleeps = lane->sender_sleeps.load(std::memory_order_relaxed);
    ls.dropped = lane->dropped.load(std::memory_order_relaxed);
    ls.sender_gone = lane->sender_gone.load(std::memory_order_relaxed);
    ls.batch_size = HistogramSummary::of(lane->batch_sizes);
    ls.latency_ns = HistogramSummary::of(lane->latency_ns);
    out.lanes.push_back(std::move(ls));
  }
  out.lanes_created = next_lane_id_ - 1;
  out.lanes_retired = lanes_retired_;
  out.retired_lane_messages = retired_lane_messages_;
  out.dropped_messages = dropped_messages_.load(std::memory_order_relaxed);
  return out;
}

}  // namespace nvmux
