// WakeWord, driven from one OS thread wherever the protocol allows it: the waker of an awake
// sleeper writes nothing (the word sits in a read-only page), a sleeper whose re-check finds work
// does not sleep, a wake that lands between the re-check and the futex wait is not lost, a
// timeout ends a sleep, garbage in a shared word costs a spurious return and nothing else. One
// real-thread case: of many wakers of one sleep, exactly one owes the syscall.
#include "futex.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace nvmux::detail {
namespace {

// One page holding a zeroed wake word, which the test can make read-only.
class WordPage {
 public:
  WordPage() {
    page_ = ::mmap(nullptr, page_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(page_, MAP_FAILED);
    word_ = new (page_) std::atomic<std::uint32_t>(0);
  }
  ~WordPage() { ::munmap(page_, page_bytes()); }
  WordPage(const WordPage&) = delete;
  WordPage& operator=(const WordPage&) = delete;

  std::atomic<std::uint32_t>& word() { return *word_; }
  void make_read_only() { ASSERT_EQ(::mprotect(page_, page_bytes(), PROT_READ), 0); }

 private:
  static std::size_t page_bytes() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }
  void* page_ = nullptr;
  std::atomic<std::uint32_t>* word_ = nullptr;
};

template <class Scope>
class WakeWordTest : public ::testing::Test {};

struct PrivateScope {
  static constexpr FutexScope kScope = FutexScope::kPrivate;
};
struct SharedScope {
  static constexpr FutexScope kScope = FutexScope::kShared;
};
using Scopes = ::testing::Types<PrivateScope, SharedScope>;
TYPED_TEST_SUITE(WakeWordTest, Scopes);

TYPED_TEST(WakeWordTest, WakerOfAnAwakeSleeperWritesNothingAndMakesNoSyscall) {
  WordPage page;
  page.make_read_only();  // any store or RMW would fault here: the awake path is one load
  WakeWord<TypeParam::kScope> word(page.word());
  EXPECT_FALSE(word.wake());
  EXPECT_FALSE(word.wake_fenced());
  EXPECT_FALSE(word.claim_fenced());
  EXPECT_FALSE(word.armed());
}

TYPED_TEST(WakeWordTest, SleeperThatFindsWorkAfterTheFenceDoesNotSleep) {
  WordPage page;
  WakeWord<TypeParam::kScope> word(page.word());
  int blocks = 0;
  std::uint32_t seen_by_recheck = 0;
  SleepResult r = word.sleep_unless(
      [&] {
        seen_by_recheck = page.word().load();  // the re-check runs with the flag published
        return true;
      },
      UINT64_MAX,  // would hang if it slept
      [&] { ++blocks; });
  EXPECT_EQ(r, SleepResult::kReady);
  EXPECT_EQ(seen_by_recheck, 1u);
  EXPECT_EQ(blocks, 0);
  EXPECT_EQ(page.word().load(), 0u) << "a sleeper that did not sleep leaves the flag idle";
}

TYPED_TEST(WakeWordTest, TimeoutEndsASleepAndDisarms) {
  WordPage page;
  WakeWord<TypeParam::kScope> word(page.word());
  int blocks = 0;
  auto start = std::chrono::steady_clock::now();
  SleepResult r = word.sleep_unless([] { return false; }, 2'000, [&] { ++blocks; });
  auto slept = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r, SleepResult::kTimedOut);
  EXPECT_EQ(blocks, 1);
  EXPECT_GE(slept, std::chrono::microseconds(1'000));  // it did wait (generous: timer slack)
  EXPECT_LT(slept, std::chrono::seconds(20));
  EXPECT_EQ(page.word().load(), 0u);
}

// The lost-wake-up window: the sleeper re-checked and found nothing, then a waker publishes and
// wakes before the sleeper reaches FUTEX_WAIT. The waker's clear makes the futex compare fail,
// so the sleep ends at once (an unbounded timeout would hang the test otherwise).
TYPED_TEST(WakeWordTest, WakeBetweenRecheckAndFutexWaitIsNotLost) {
  WordPage page;
  WakeWord<TypeParam::kScope> word(page.word());
  bool woke = false;
  SleepResult r = word.sleep_unless([] { return false; }, UINT64_MAX, [&] { woke = word.wake(); });
  EXPECT_TRUE(woke) << "the waker saw the armed flag and owed the syscall";
  EXPECT_EQ(r, SleepResult::kWoken);
  EXPECT_EQ(page.word().load(), 0u);
}

TYPED_TEST(WakeWordTest, OneSleepOwesOneWakeSyscall) {
  WordPage page;
  WakeWord<TypeParam::kScope> word(page.word());
  word.arm();
  EXPECT_TRUE(word.armed());
  EXPECT_TRUE(word.wake());
  EXPECT_FALSE(word.armed());
  EXPECT_FALSE(word.wake()) << "a second waker of the same sleep makes no syscall";
  word.arm();
  word.disarm();
  EXPECT_FALSE(word.claim_fenced()) << "a disarmed sleeper is awake";
}

// The shared scope: the other process may write anything into the word.
TEST(SharedWakeWordTest, GarbageInTheWordCostsASpuriousReturnNothingElse) {
  WordPage page;
  SharedWakeWord word(page.word());
  // The other side overwrites the armed flag between our re-check and FUTEX_WAIT: the compare
  // fails, we return at once (a hint says "not woken") and leave the word idle.
  SleepResult r = word.sleep_unless([] { return false; }, UINT64_MAX, [&] { page.word().store(0xdeadbeef); });
  EXPECT_EQ(r, SleepResult::kTimedOut);
  EXPECT_EQ(page.word().load(), 0u);
  // A garbage value seen by a waker: at most one spurious syscall, then the word is idle again.
  page.word().store(7);
  EXPECT_TRUE(word.wake());
  EXPECT_FALSE(word.wake());
  EXPECT_EQ(page.word().load(), 0u);
}

TEST(PrivateWakeWordTest, OfManyRacingWakersExactlyOneOwesTheSyscall) {
  constexpr int kWakers = 4;
  constexpr int kRounds = 200;
  std::atomic<std::uint32_t> flag{0};
  PrivateWakeWord word(flag);
  for (int round = 0; round < kRounds; ++round) {
    word.arm();
    std::atomic<int> go{0};
    std::atomic<int> claims{0};
    std::vector<std::thread> wakers;
    for (int i = 0; i < kWakers; ++i) {
      wakers.emplace_back([&] {
        go.fetch_add(1);
        while (go.load() < kWakers) std::this_thread::yield();
        if (word.wake()) claims.fetch_add(1);
      });
    }
    for (auto& t : wakers) t.join();
    ASSERT_EQ(claims.load(), 1) << "round " << round;
    ASSERT_FALSE(word.armed());
  }
}

}  // namespace
}  // namespace nvmux::detail
