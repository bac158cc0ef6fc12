// WakeWord under real concurrency: a producer hands stamped sequence numbers to a consumer through
// a one-slot mailbox, and each side sleeps on its WakeWord whenever the slot is not its turn (no
// spinning first, so nearly every hand-over crosses the sleep protocol). Both threads of one
// process (private scope) and two processes across fork() on a MAP_SHARED page (shared scope).
// Every element is checked (order, payload); a lost wake-up shows as a sleep that ran out its
// safety-net timeout, which fails the test. Bounded in count and in wall-clock time.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <new>
#include <thread>

#include "futex.hpp"
#include "nvmux/common/cache_line.hpp"
#include "support/test_scale.hpp"

namespace nvmux::detail {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kSafetyNetUs = 3'000'000;         // a sleep this long means a lost wake-up
constexpr auto kRunBound = std::chrono::seconds(60);      // the producer stops handing out after this
constexpr auto kGiveUpBound = std::chrono::seconds(120);  // a side whose peer vanished gives up
constexpr std::uint64_t kEnd = UINT64_MAX;                // the last value: no more elements
constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ull;  // payload = seq * kGolden
constexpr std::uint64_t kFullHandovers = 100'000;         // scaled down under sanitizers

// Lives in one page, private or MAP_SHARED. Each side's words on their own line.
struct Mailbox {
  alignas(kCacheLineBytes) std::atomic<std::uint64_t> slot{0};           // 0: empty; else the seq (or kEnd)
  std::uint64_t payload = 0;                                             // plain data, published by slot
  alignas(kCacheLineBytes) std::atomic<std::uint32_t> consumer_word{0};  // the consumer sleeps here
  alignas(kCacheLineBytes) std::atomic<std::uint32_t> producer_word{0};  // the producer sleeps here
};

struct SideStats {
  std::uint64_t slept = 0;   // sleeps that blocked in FUTEX_WAIT
  std::uint64_t woken = 0;   // of those, ended by the other side's wake
  std::uint64_t lost = 0;    // of those, ran out the safety net: a lost wake-up
  std::uint64_t errors = 0;  // elements out of order or with a wrong payload
  std::uint64_t handed = 0;  // elements handed over (without kEnd)
  bool gave_up = false;      // the peer did not take its turn within kGiveUpBound
};

// Waits until ready() holds, sleeping on `own` between checks. False: gave up at `give_up_at`.
template <FutexScope Scope, class Ready>
bool wait_for(std::atomic<std::uint32_t>& own, Ready ready, Clock::time_point give_up_at, SideStats& stats) {
  WakeWord<Scope> word(own);
  while (!ready()) {
    auto start = Clock::now();
    if (start >= give_up_at) {
      stats.gave_up = true;
      return false;
    }
    SleepResult r = word.sleep_unless(ready, kSafetyNetUs);
    if (r == SleepResult::kReady) return true;
    ++stats.slept;
    if (r == SleepResult::kWoken) ++stats.woken;
    if (r == SleepResult::kTimedOut && Clock::now() - start >= std::chrono::microseconds(kSafetyNetUs)) ++stats.lost;
  }
  return true;
}

template <FutexScope Scope>
SideStats produce(Mailbox& box, std::uint64_t count) {
  SideStats stats;
  const auto stop_at = Clock::now() + kRunBound;
  const auto give_up_at = Clock::now() + kGiveUpBound;
  auto empty = [&box] { return box.slot.load(std::memory_order_acquire) == 0; };  // the consumer's store
  for (std::uint64_t seq = 1;; ++seq) {
    if (!wait_for<Scope>(box.producer_word, empty, give_up_at, stats)) break;
    const bool last = seq > count || Clock::now() >= stop_at;
    box.payload = last ? 0 : seq * kGolden;
    box.slot.store(last ? kEnd : seq, std::memory_order_release);  // payload before the slot
    WakeWord<Scope>(box.consumer_word).wake();
    if (last) break;
    ++stats.handed;
  }
  return stats;
}

template <FutexScope Scope>
SideStats consume(Mailbox& box) {
  SideStats stats;
  const auto give_up_at = Clock::now() + kGiveUpBound;
  std::uint64_t value = 0;
  auto full = [&box, &value] { return (value = box.slot.load(std::memory_order_acquire)) != 0; };
  for (std::uint64_t expected = 1;; ++expected) {
    if (!wait_for<Scope>(box.consumer_word, full, give_up_at, stats)) break;
    if (value == kEnd) break;
    if (value != expected || box.payload != value * kGolden) {
      ++stats.errors;
      expected = value;  // resynchronise: count each broken element once
    }
    ++stats.handed;
    box.slot.store(0, std::memory_order_release);  // we read the payload before freeing the slot
    WakeWord<Scope>(box.producer_word).wake();
  }
  return stats;
}

void expect_sound(const SideStats& s, const char* side) {
  EXPECT_EQ(s.lost, 0u) << side << ": a sleep ran out its " << kSafetyNetUs << " us safety net (lost wake-up)";
  EXPECT_EQ(s.errors, 0u) << side << ": elements out of order or with a wrong payload";
  EXPECT_FALSE(s.gave_up) << side << ": its peer stopped taking turns";
}

TEST(WakeWordStressTest, ThreadsHandEveryStampedElementOverWithoutLostWakeups) {
  const std::uint64_t count = test::stress_count(kFullHandovers, 20'000);
  Mailbox box;
  SideStats producer_stats;
  std::thread producer([&] { producer_stats = produce<FutexScope::kPrivate>(box, count); });
  SideStats consumer_stats = consume<FutexScope::kPrivate>(box);
  producer.join();

  expect_sound(producer_stats, "producer");
  expect_sound(consumer_stats, "consumer");
  EXPECT_EQ(consumer_stats.handed, producer_stats.handed) << "every element handed out arrived";
  EXPECT_GT(producer_stats.handed, 0u);
  EXPECT_GT(consumer_stats.slept + producer_stats.slept, 0u) << "the sleep protocol was never exercised";
  std::printf(
      "%llu of %llu hand-overs; consumer slept %llu (woken %llu), producer slept %llu (woken %llu)\n",
      static_cast<unsigned long long>(consumer_stats.handed), static_cast<unsigned long long>(count),
      static_cast<unsigned long long>(consumer_stats.slept), static_cast<unsigned long long>(consumer_stats.woken),
      static_cast<unsigned long long>(producer_stats.slept), static_cast<unsigned long long>(producer_stats.woken));
}

// The shared scope across fork(): the child produces into a MAP_SHARED mailbox, the parent
// consumes. The child reports its own soundness through its exit code.
TEST(WakeWordStressTest, ProcessesHandEveryStampedElementOverThroughASharedWord) {
  const std::uint64_t count = test::stress_count(kFullHandovers / 4, 5'000);
  void* page = ::mmap(nullptr, sizeof(Mailbox), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  Mailbox* box = new (page) Mailbox();

  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    SideStats s = produce<FutexScope::kShared>(*box, count);
    ::_exit(s.lost != 0 ? 2 : (s.gave_up ? 4 : (s.handed == 0 ? 3 : 0)));
  }
  SideStats consumer_stats = consume<FutexScope::kShared>(*box);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the producer process died: status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: the producer lost a wake-up; 3: it handed nothing over; 4: it gave up";
  expect_sound(consumer_stats, "consumer");
  EXPECT_GT(consumer_stats.handed, 0u);
  EXPECT_GT(consumer_stats.slept, 0u) << "the consumer never slept: the shared futex was not exercised";
  std::printf("%llu of %llu hand-overs across processes; consumer slept %llu (woken %llu)\n",
              static_cast<unsigned long long>(consumer_stats.handed), static_cast<unsigned long long>(count),
              static_cast<unsigned long long>(consumer_stats.slept),
              static_cast<unsigned long long>(consumer_stats.woken));
  box->~Mailbox();
  ::munmap(page, sizeof(Mailbox));
}

}  // namespace
}  // namespace nvmux::detail
