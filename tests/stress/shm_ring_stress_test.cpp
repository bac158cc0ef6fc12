// The ring across two processes sharing a memfd: a forked producer streams stamped elements, the
// parent consumes and checks order and a checksum; a producer killed with SIGKILL mid-stream
// leaves a ring that is still valid and that a new producer continues; a corrupted index written
// by the other process is detected, not followed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "nvmux/common/cpu.hpp"
#include "nvmux/common/shm.hpp"
#include "nvmux/ring/spsc_ring.hpp"
#include "support/test_scale.hpp"

namespace nvmux {
namespace {

struct Stamped {
  std::uint64_t seq;
  std::uint64_t check;
};
constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ull;
constexpr std::uint64_t kCap = 4096;

// The producer's own checksum travels back through a second, tiny ring.
struct ShmFixture {
  SharedMemory shm;
  RingRegion<Stamped> data;
  RingRegion<std::uint64_t> result;

  static ShmFixture make() {
    std::size_t data_bytes = ring_region_bytes(kCap, sizeof(Stamped));
    auto m = SharedMemory::create("shm-stress", data_bytes + ring_region_bytes(2, sizeof(std::uint64_t)));
    NVMUX_ASSERT(m.ok(), "{}", m.status().to_string());
    ShmFixture f{std::move(*m), {}, {}};
    f.data = *create_ring<Stamped>(f.shm.bytes().first(data_bytes), kCap);
    f.result = *create_ring<std::uint64_t>(f.shm.bytes().subspan(data_bytes), 2);
    return f;
  }
};

std::uint64_t mix(std::uint64_t sum, const Stamped& s) { return (sum ^ s.check) * 0x100000001b3ull + s.seq; }

// Child: attach by re-validating the header (as another process would), stream, report checksum.
[[noreturn]] void run_producer(ShmFixture& f, std::uint64_t total) {
  std::size_t data_bytes = ring_region_bytes(kCap, sizeof(Stamped));
  auto attached = attach_ring<Stamped>(f.shm.bytes().first(data_bytes), kCap);
  if (!attached.ok()) _exit(3);
  RingProducer<Stamped> producer(*attached);
  RingProducer<std::uint64_t> reply(f.result);
  std::uint64_t sum = 0;
  Stamped batch[16];
  for (std::uint64_t next = 0; next < total;) {
    std::size_t want = (next & 1) ? 1 : 16;
    if (want > total - next) want = static_cast<std::size_t>(total - next);
    for (std::size_t i = 0; i < want; ++i) batch[i] = Stamped{next + i, (next + i) * kGolden};
    std::size_t n = producer.push_bulk(std::span<const Stamped>(batch, want));
    for (std::size_t i = 0; i < n; ++i) sum = mix(sum, batch[i]);
    next += n;
    if (n == 0) cpu_relax();
  }
  while (!reply.try_push(sum)) cpu_relax();
  _exit(0);
}

TEST(ShmRingStress, ForkedProducerStreamsWithChecksum) {
  const std::uint64_t total = test::stress_count(20'000'000);
  ShmFixture f = ShmFixture::make();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) run_producer(f, total);

  RingConsumer<Stamped> consumer(f.data, Peer::kUntrusted);
  RingConsumer<std::uint64_t> reply(f.result);
  std::uint64_t expected = 0, errors = 0, sum = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (expected < total && std::chrono::steady_clock::now() < deadline) {
    std::size_t n = consumer.consume(
        [&](Stamped& s) {
          errors += (s.seq != expected || s.check != s.seq * kGolden);
          sum = mix(sum, s);
          ++expected;
        },
        64);
    if (n == 0) cpu_relax();
  }
  std::uint64_t producer_sum = 0;
  while (!reply.try_pop(producer_sum) && std::chrono::steady_clock::now() < deadline) cpu_relax();
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "producer status " << status;
  EXPECT_FALSE(consumer.failed()) << consumer.status().to_string();
  EXPECT_EQ(errors, 0u);
  EXPECT_EQ(expected, total);
  EXPECT_EQ(sum, producer_sum);
}

TEST(ShmRingStress, ProducerKilledMidStreamLeavesAValidRingThatANewProducerContinues) {
  ShmFixture f = ShmFixture::make();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) run_producer(f, UINT64_MAX / 2);  // runs until killed

  RingConsumer<Stamped> consumer(f.data, Peer::kUntrusted);
  std::uint64_t expected = 0, errors = 0;
  auto drain = [&](std::uint64_t at_least) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (expected < at_least && std::chrono::steady_clock::now() < deadline) {
      consumer.consume(
          [&](Stamped& s) {
            errors += (s.seq != expected || s.check != s.seq * kGolden);
            ++expected;
          },
          64);
    }
  };
  drain(test::stress_count(1'000'000));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));

  // Whatever the dead producer published is complete and in order: drain it.
  while (consumer.consume(
             [&](Stamped& s) {
               errors += (s.seq != expected || s.check != s.seq * kGolden);
               ++expected;
             },
             64) != 0) {
  }
  EXPECT_FALSE(consumer.failed()) << consumer.status().to_string();
  EXPECT_EQ(errors, 0u);

  // The header is intact and a new producer resumes from the published tail.
  auto again = attach_ring<Stamped>(f.shm.bytes().first(ring_region_bytes(kCap, sizeof(Stamped))), kCap);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  RingProducer<Stamped> successor(*again);
  for (std::uint64_t i = 0; i < 100; ++i)
    ASSERT_TRUE(successor.try_push(Stamped{expected + i, (expected + i) * kGolden}));
  std::uint64_t before = expected;
  drain(before + 100);
  EXPECT_EQ(expected, before + 100);
  EXPECT_EQ(errors, 0u);
}

TEST(ShmRingStress, CorruptIndexWrittenByAnotherProcessIsDetected) {
  ShmFixture f = ShmFixture::make();
  RingConsumer<Stamped> consumer(f.data, Peer::kUntrusted);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    RingProducer<Stamped> producer(f.data);
    for (std::uint64_t i = 0; i < 10; ++i) (void)producer.try_push(Stamped{i, i * kGolden});
    // A buggy or hostile client then scribbles over its tail.
    f.data.state->tail.value.store(0xdeadbeefcafeull, std::memory_order_release);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  std::uint64_t visited = 0;
  EXPECT_EQ(consumer.consume([&](Stamped&) { ++visited; }, 64), 0u);
  EXPECT_EQ(visited, 0u) << "the consumer read slots behind a corrupt index";
  ASSERT_TRUE(consumer.failed());
  EXPECT_EQ(consumer.status().code(), StatusCode::kCorruption);
  EXPECT_NE(consumer.status().message().find("producer tail"), std::string::npos);
}

}  // namespace
}  // namespace nvmux
