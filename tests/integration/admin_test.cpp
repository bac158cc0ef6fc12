// nvmuxd's admin socket end to end: the real daemon as a child process, called through the same
// client nvmux-ctl uses. Every method answers; session_kill ends a live client's session (its
// calls then fail with -ENOTCONN); a bad policy file on reload (RPC or SIGHUP) keeps the old
// policy; only the daemon's uid and root reach the socket; the socket goes away with the daemon.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "nvmux/common/cpu.hpp"
#include "nvmux/service/client.hpp"
#include "rpc.hpp"
#include "rpc_client.hpp"
#include "support/nvmuxd_process.hpp"

namespace nvmux::service {
namespace {

using nlohmann::json;

class Admin : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = fmt::format("/tmp/nvmux-admin-{}.sock", ::getpid());
    policy_ = fmt::format("/tmp/nvmux-admin-{}.json", ::getpid());
    write_policy(R"({"clients": [{"uid": 0, "namespaces": [{"nsid": 1, "access": "rw"}]}]})");
    daemon_ = std::make_unique<test::NvmuxdProcess>(
        NVMUXD_BINARY, socket_,
        std::vector<std::string>{"--ns", "ram:size=16M", "--cores", "0", "--policy", policy_, "--log-level", "warn"});
    ASSERT_TRUE(daemon_->ready()) << daemon_->output();
  }
  void TearDown() override { std::filesystem::remove(policy_); }
  void write_policy(const std::string& text) { std::ofstream(policy_) << text; }
  json call(const std::string& method, const json& params = json::object()) {
    auto r = rpc::call(rpc::rpc_socket_beside(socket_), method, params, 10'000);
    EXPECT_TRUE(r.ok()) << method << ": " << r.status().to_string();
    return r.ok() ? *r : json();
  }

  std::string socket_, policy_;
  std::unique_ptr<test::NvmuxdProcess> daemon_;
};

TEST_F(Admin, EveryMethodAnswers) {
  json version = call("nvmuxd_get_version")["result"];
  EXPECT_EQ(version["pid"], daemon_->pid());
  EXPECT_EQ(version["protocol"], kProtocolVersion);
  EXPECT_EQ(version["socket"], socket_);
  json ns = call("ns_get_list")["result"];
  ASSERT_EQ(ns.size(), 1u);
  EXPECT_EQ(ns[0]["bytes"], 16u << 20);
  EXPECT_TRUE(call("session_get_list")["result"].empty());
  EXPECT_EQ(call("qpair_get_stats")["result"].size(), 1u);  // one owner is created at start
  EXPECT_TRUE(call("runtime_get_stats")["result"].contains("reactors"));
  EXPECT_EQ(call("policy_get")["result"]["clients"].size(), 1u);
  const std::string metrics = call("metrics_get")["result"].get<std::string>();
  EXPECT_NE(metrics.find("\nnvmuxd_sessions 0\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("nvmuxd_qpair_submitted_total{qpair=\"0\""), std::string::npos) << metrics;
  json methods = call("rpc_get_methods")["result"];
  for (const char* m : {"nvmuxd_get_version", "nvmuxd_get_stats", "ns_get_list", "session_get_list", "session_kill",
                        "qpair_get_stats", "runtime_get_stats", "policy_get", "policy_reload", "metrics_get"}) {
    EXPECT_TRUE(methods.contains(m)) << m;
  }
  EXPECT_EQ(call("no_such_method")["error"]["code"], rpc::kMethodNotFound);
  EXPECT_EQ(call("session_kill")["error"]["code"], rpc::kInvalidParams);
  EXPECT_EQ(call("session_kill", {{"id", 12345}})["error"]["code"], -ENOENT);
}

TEST_F(Admin, SessionKillEndsALiveClientsSession) {
  auto client = Client::connect(socket_).value();
  auto q = client->create_queue(4).value();
  json sessions = call("session_get_list")["result"];
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions[0]["pid"], ::getpid());
  EXPECT_EQ(sessions[0]["queues"], 1);
  EXPECT_EQ(sessions[0]["id"], client->session_id());
  EXPECT_EQ(call("session_kill", {{"id", client->session_id()}})["result"], true);
  const std::uint64_t t0 = monotonic_ns();
  Result<std::uint32_t> polled = std::uint32_t{0};
  while (polled.ok() && monotonic_ns() - t0 < 2'000'000'000ull) polled = q->poll();
  ASSERT_FALSE(polled.ok()) << "the killed session's queue still polls";
  EXPECT_EQ(polled.status().to_errno(), -ENOTCONN);
  EXPECT_LT(monotonic_ns() - t0, 1'000'000'000ull);
  EXPECT_TRUE(call("session_get_list")["result"].empty());
}

// Latency is counted for every request that reached the device, per session and per queue pair,
// and the percentiles are ordered; the registered arena goes away with its session.
TEST_F(Admin, LatencyPercentilesCountEveryRequestAndTheArenaGoesWithItsSession) {
  EXPECT_EQ(call("nvmuxd_get_stats")["result"]["registered_regions"], 0);
  {
    auto client = Client::connect(socket_).value();
    auto q = client->create_queue(8).value();
    void* buf = client->buf_alloc(4096);
    ASSERT_NE(buf, nullptr);
    constexpr int kRequests = 200;
    int done = 0, failed = 0;
    auto cb = [](void* ctx, const Completion* c) {
      auto* counts = static_cast<std::pair<int*, int*>*>(ctx);
      ++*(c->status == 0 ? counts->first : counts->second);
    };
    std::pair<int*, int*> counts{&done, &failed};
    for (int i = 0; i < kRequests; ++i) {
      Status s = (i % 2 == 0) ? q->write(1, static_cast<std::uint64_t>(i), 1, buf, cb, &counts)
                              : q->read(1, static_cast<std::uint64_t>(i), 1, buf, cb, &counts);
      ASSERT_TRUE(s.ok()) << s.to_string();
      while (done + failed <= i) ASSERT_TRUE(q->poll().ok());
    }
    ASSERT_EQ(done, kRequests);
    // A request the daemon refuses (past the namespace's end) is not a device latency.
    IoDescriptor past_the_end{};
    past_the_end.opcode = static_cast<std::uint8_t>(IoOpcode::kRead);
    past_the_end.nsid = 1;
    past_the_end.lba = UINT64_MAX - 1;
    past_the_end.blocks = 1;
    ASSERT_TRUE(q->submit_descriptor(past_the_end, cb, &counts).ok());
    while (failed == 0) ASSERT_TRUE(q->poll().ok());

    json stats = call("nvmuxd_get_stats")["result"];
    EXPECT_EQ(stats["sessions"], 1);
    EXPECT_EQ(stats["registered_regions"], 1);
    EXPECT_EQ(stats["session_memory_bytes"], call("session_get_list")["result"][0]["arena_bytes"]);
    for (const json& latency :
         {call("session_get_list")["result"][0]["latency_us"], call("qpair_get_stats")["result"][0]["latency_us"]}) {
      EXPECT_EQ(latency["count"], kRequests) << latency.dump();
      EXPECT_GT(latency["p50"].get<double>(), 0.0) << latency.dump();
      EXPECT_LE(latency["p50"].get<double>(), latency["p99"].get<double>()) << latency.dump();
      EXPECT_LE(latency["p99"].get<double>(), latency["p999"].get<double>()) << latency.dump();
      EXPECT_LE(latency["p999"].get<double>(), latency["max"].get<double>()) << latency.dump();
      EXPECT_LE(latency["mean"].get<double>(), latency["max"].get<double>()) << latency.dump();
    }
    const std::string metrics = call("metrics_get")["result"].get<std::string>();
    EXPECT_NE(metrics.find("nvmuxd_qpair_latency_seconds{qpair=\"0\",core=\"0\",quantile=\"0.99\"}"), std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find(fmt::format("nvmuxd_qpair_latency_seconds_count{{qpair=\"0\",core=\"0\"}} {}\n", kRequests)),
              std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("\nnvmuxd_registered_regions 1\n"), std::string::npos) << metrics;
  }
  const std::uint64_t t0 = monotonic_ns();
  json stats;
  do {
    stats = call("nvmuxd_get_stats")["result"];
  } while ((stats["sessions"] != 0 || stats["registered_regions"] != 0) && monotonic_ns() - t0 < 5'000'000'000ull);
  EXPECT_EQ(stats["registered_regions"], 0) << stats.dump();
  EXPECT_EQ(stats["session_memory_bytes"], 0) << stats.dump();
}

TEST_F(Admin, ABadPolicyOnReloadKeepsTheOldOne) {
  write_policy(R"({"clients": [{"uid": 0}, {"uid": 1000, "namespaces": [{"nsid": 1, "access": "ro"}]}]})");
  EXPECT_EQ(call("policy_reload")["result"]["clients"], 2);
  EXPECT_EQ(call("policy_get")["result"]["clients"].size(), 2u);
  write_policy("{ this is not json");
  json r = call("policy_reload");
  ASSERT_TRUE(r.contains("error")) << r.dump();
  EXPECT_NE(r["error"]["message"].get<std::string>().find("kept the old policy"), std::string::npos) << r.dump();
  EXPECT_EQ(call("policy_get")["result"]["clients"].size(), 2u);
  // SIGHUP does the same: a good file is taken, and clients still connect.
  write_policy(R"({"clients": [{"uid": 0}]})");
  ::kill(daemon_->pid(), SIGHUP);
  const std::uint64_t t0 = monotonic_ns();
  while (call("policy_get")["result"]["clients"].size() != 1 && monotonic_ns() - t0 < 5'000'000'000ull) {
  }
  EXPECT_EQ(call("policy_get")["result"]["clients"].size(), 1u);
  EXPECT_TRUE(Client::connect(socket_).ok());
}

TEST_F(Admin, OnlyTheDaemonsUidAndRootReachTheSocketAndItGoesAwayWithTheDaemon) {
  const std::string rpc_socket = rpc::rpc_socket_beside(socket_);
  struct stat st {};
  ASSERT_EQ(::stat(rpc_socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  if (::geteuid() == 0) {
    pid_t child = ::fork();
    if (child == 0) {
      if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) _exit(3);
      auto r = rpc::call(rpc_socket, "nvmuxd_get_version", json::object(), 2000);
      _exit(r.ok() ? 1 : 0);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "uid 65534 reached the admin socket";
  }
  EXPECT_EQ(daemon_->stop(), 0);
  EXPECT_NE(::stat(rpc_socket.c_str(), &st), 0) << "the admin socket outlived the daemon";
  auto r = rpc::call(rpc_socket, "nvmuxd_get_version", json::object(), 2000);
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("nvmuxd is not running"), std::string::npos);
}

}  // namespace
}  // namespace nvmux::service
