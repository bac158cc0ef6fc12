// Device faults under nvmuxd (emu's fault injector, through the admin socket's emu_inject_fault):
// each client sees the status its request earned (an error with its NVMe status, a retried
// success, a timeout, a cancellation when the queue pair is reset), only the faulted queue pair is
// affected, and a client on the other queue pair keeps being served throughout.
#include <gtest/gtest.h>
#include <unistd.h>

#include "nvmux/common/cpu.hpp"
#include "nvmux/service/client.hpp"
#include "rpc.hpp"
#include "rpc_client.hpp"
#include "support/nvmuxd_process.hpp"

namespace nvmux::service {
namespace {

using nlohmann::json;
constexpr std::uint32_t kBlock = 4096;
constexpr int kTimeoutMs = 200;

class ServiceFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = fmt::format("/tmp/nvmux-faults-{}.sock", ::getpid());
    daemon_ = std::make_unique<test::NvmuxdProcess>(
        NVMUXD_BINARY, socket_,
        std::vector<std::string>{"--ns", "ram:size=16M", "--cores", "0", "--max-qpairs", "2", "--io-timeout-ms",
                                 std::to_string(kTimeoutMs), "--log-level", "error"});
    ASSERT_TRUE(daemon_->ready()) << daemon_->output();
    // Two clients, one queue each: each gets a backend queue pair of its own.
    faulted_ = Client::connect(socket_).value();
    healthy_ = Client::connect(socket_).value();
    fq_ = faulted_->create_queue(8).value();
    hq_ = healthy_->create_queue(8).value();
    fbuf_ = faulted_->buf_alloc(kBlock);
    hbuf_ = healthy_->buf_alloc(kBlock);
    json qpairs = call("qpair_get_stats")["result"];
    ASSERT_EQ(qpairs.size(), 2u);
    faulted_qid_ = qpairs[0]["qid"];  // the first queue went to the first owner
  }
  json call(const std::string& method, const json& params = json::object()) {
    auto r = rpc::call(rpc::rpc_socket_beside(socket_), method, params, 10'000);
    EXPECT_TRUE(r.ok()) << method << ": " << r.status().to_string();
    return r.ok() ? *r : json();
  }
  void inject(json params) {
    params["qid"] = faulted_qid_;
    json r = call("emu_inject_fault", params);
    ASSERT_EQ(r["result"], true) << r.dump();
  }
  // One read on `q`, waited for; its completion.
  static nvmux_cpl read(Queue& q, void* buf, std::uint64_t lba) {
    struct Done {
      bool done = false;
      nvmux_cpl cpl{};
    } d;
    auto cb = [](void* ctx, const nvmux_cpl* c) {
      static_cast<Done*>(ctx)->done = true;
      static_cast<Done*>(ctx)->cpl = *c;
    };
    Status s = q.read(1, lba, 1, buf, cb, &d);
    if (!s.ok()) return nvmux_cpl{s.to_errno(), 0, 0};
    for (std::uint64_t t0 = monotonic_ns(); !d.done && monotonic_ns() - t0 < 10'000'000'000ull;) (void)q.wait(50);
    return d.done ? d.cpl : nvmux_cpl{-ETIME, 0, 0};
  }
  // The healthy client, meanwhile: `n` reads, all must succeed.
  void healthy_reads(int n) {
    for (int i = 0; i < n; ++i) ASSERT_EQ(read(*hq_, hbuf_, static_cast<std::uint64_t>(i)).status, 0) << "read " << i;
  }

  std::string socket_;
  std::unique_ptr<test::NvmuxdProcess> daemon_;
  std::unique_ptr<Client> faulted_, healthy_;
  std::unique_ptr<Queue> fq_, hq_;
  void *fbuf_ = nullptr, *hbuf_ = nullptr;
  std::uint16_t faulted_qid_ = 0;
};

TEST_F(ServiceFaults, AnErrorThatMayNotBeRetriedReachesTheClientWithItsNvmeStatus) {
  inject({{"kind", "status"}, {"sct", 0}, {"sc", 6}, {"dnr", true}});
  nvmux_cpl c = read(*fq_, fbuf_, 1);
  EXPECT_EQ(c.status, -EIO);
  EXPECT_EQ(c.nvme_status, 0x0006);  // generic, internal device error
  healthy_reads(20);
  EXPECT_EQ(read(*fq_, fbuf_, 1).status, 0);  // the fault hit one command only
}

TEST_F(ServiceFaults, ARetryableErrorIsRetriedAndTheClientSeesSuccess) {
  inject({{"kind", "status"}, {"sct", 0}, {"sc", 6}});
  EXPECT_EQ(read(*fq_, fbuf_, 2).status, 0);
  EXPECT_GE(call("qpair_get_stats")["result"][0]["retries"].get<std::uint64_t>(), 1u);
}

TEST_F(ServiceFaults, ALostCompletionTimesOutWhileTheOtherQueuePairServes) {
  inject({{"kind", "drop"}});
  const std::uint64_t t0 = monotonic_ns();
  struct Done {
    bool done = false;
    int status = 0;
  } d;
  ASSERT_TRUE(fq_->read(
                     1, 3, 1, fbuf_,
                     [](void* ctx, const nvmux_cpl* c) {
                       static_cast<Done*>(ctx)->done = true;
                       static_cast<Done*>(ctx)->status = c->status;
                     },
                     &d)
                  .ok());
  healthy_reads(50);  // served while the dropped command waits out its timeout
  while (!d.done && monotonic_ns() - t0 < 10'000'000'000ull) (void)fq_->wait(50);
  EXPECT_EQ(d.status, -ETIMEDOUT);
  EXPECT_GE(static_cast<double>(monotonic_ns() - t0) / 1e6, kTimeoutMs * 0.9);
  EXPECT_EQ(call("qpair_get_stats")["result"][0]["timeouts"], 1);
  EXPECT_EQ(call("qpair_get_stats")["result"][1]["timeouts"], 0);
}

TEST_F(ServiceFaults, ACompletionForNoCommandResetsOnlyThatQueuePair) {
  inject({{"kind", "bad_cid"}});
  nvmux_cpl c = read(*fq_, fbuf_, 4);
  EXPECT_NE(c.status, 0) << "a command whose completion never came cannot succeed";
  healthy_reads(20);
  // The queue pair was reset: the same client is served again, the other never noticed.
  nvmux_cpl again{};
  for (std::uint64_t t0 = monotonic_ns(); monotonic_ns() - t0 < 5'000'000'000ull;) {
    again = read(*fq_, fbuf_, 4);
    if (again.status == 0) break;
  }
  EXPECT_EQ(again.status, 0);
  json qpairs = call("qpair_get_stats")["result"];
  EXPECT_EQ(qpairs[1]["aborted"], 0);
  EXPECT_EQ(qpairs[1]["device_errors"], 0);
}

TEST_F(ServiceFaults, ADelayedCompletionUnderTheTimeoutIsJustLate) {
  inject({{"kind", "delay"}, {"delay_us", 50'000}});
  const std::uint64_t t0 = monotonic_ns();
  EXPECT_EQ(read(*fq_, fbuf_, 5).status, 0);
  EXPECT_GE(monotonic_ns() - t0, 45'000'000u);
  healthy_reads(10);
}

TEST_F(ServiceFaults, ADuplicatedCompletionNeverCompletesARequestTwice) {
  inject({{"kind", "duplicate"}});
  EXPECT_EQ(read(*fq_, fbuf_, 6).status, 0);  // the first copy completes it
  healthy_reads(20);
  // The second copy maps to no outstanding command: the queue pair treats it as a broken device
  // and is reset; the client is served again, and the other queue pair never noticed.
  nvmux_cpl again{};
  for (std::uint64_t t0 = monotonic_ns(); monotonic_ns() - t0 < 5'000'000'000ull;) {
    again = read(*fq_, fbuf_, 6);
    if (again.status == 0) break;
  }
  EXPECT_EQ(again.status, 0);
  EXPECT_EQ(call("qpair_get_stats")["result"][1]["aborted"], 0);
}

TEST_F(ServiceFaults, FaultInjectionIsRefusedWithBadParameters) {
  json r = call("emu_inject_fault", {{"kind", "melt"}});
  EXPECT_EQ(r["error"]["code"], rpc::kInvalidParams);
  r = call("emu_inject_fault", {{"kind", "drop"}, {"qid", 0}});
  EXPECT_EQ(r["error"]["code"], rpc::kInvalidParams);
  EXPECT_EQ(call("emu_clear_faults")["result"], true);
}

}  // namespace
}  // namespace nvmux::service
