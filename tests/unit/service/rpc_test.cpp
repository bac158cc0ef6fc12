// The admin socket's JSON-RPC 2.0 dispatcher: every error code of the specification, by-name
// params, notifications, and a method's parameter type errors answered as -32602.
#include "rpc.hpp"

#include <gtest/gtest.h>

namespace nvmux::service::rpc {
namespace {

using nlohmann::json;

Dispatcher make() {
  Dispatcher d;
  d.add("echo", "returns its params", [](const json& params) -> Reply { return params; });
  d.add("add", "a + b", [](const json& params) -> Reply {
    return params.at("a").get<std::int64_t>() + params.at("b").get<std::int64_t>();
  });
  d.add("kill", "params: id", [](const json& params) -> Reply {
    auto id = required_u64(params, "id");
    if (const auto* e = std::get_if<Error>(&id)) return *e;
    if (std::get<std::uint64_t>(id) != 7) return Error{-ENOENT, "no session"};
    return true;
  });
  return d;
}

json reply(const Dispatcher& d, const std::string& text) {
  const std::string out = d.handle(text);
  EXPECT_FALSE(out.empty()) << text;
  return json::parse(out);
}

int code_of(const Dispatcher& d, const std::string& text) {
  json r = reply(d, text);
  EXPECT_EQ(r["jsonrpc"], "2.0");
  EXPECT_TRUE(r.contains("error")) << r.dump();
  return r.contains("error") ? r["error"]["code"].get<int>() : 0;
}

TEST(Rpc, AnswersAMethodWithItsResultAndTheRequestId) {
  Dispatcher d = make();
  json r = reply(d, R"({"jsonrpc":"2.0","id":42,"method":"add","params":{"a":2,"b":3}})");
  EXPECT_EQ(r["id"], 42);
  EXPECT_EQ(r["result"], 5);
  r = reply(d, R"({"jsonrpc":"2.0","id":"x","method":"echo"})");
  EXPECT_EQ(r["id"], "x");
  EXPECT_EQ(r["result"], json::object());  // no params: an empty object
}

TEST(Rpc, EachKindOfBadRequestGetsItsCode) {
  Dispatcher d = make();
  EXPECT_EQ(code_of(d, "{not json"), kParseError);
  EXPECT_EQ(code_of(d, ""), kParseError);
  EXPECT_EQ(code_of(d, "[1,2]"), kInvalidRequest);
  EXPECT_EQ(code_of(d, R"({"id":1,"method":"echo"})"), kInvalidRequest);  // no "jsonrpc"
  EXPECT_EQ(code_of(d, R"({"jsonrpc":"1.0","id":1,"method":"echo"})"), kInvalidRequest);
  EXPECT_EQ(code_of(d, R"({"jsonrpc":"2.0","id":1,"method":7})"), kInvalidRequest);
  EXPECT_EQ(code_of(d, R"({"jsonrpc":"2.0","id":{"a":1},"method":"echo"})"), kInvalidRequest);
  EXPECT_EQ(code_of(d, R"({"jsonrpc":"2.0","id":1,"method":"nope"})"), kMethodNotFound);
  EXPECT_EQ(code_of(d, R"({"jsonrpc":"2.0","id":1,"method":"echo","params":[1]})"), kInvalidParams);
  EXPECT_EQ(code_of(d, R"({"jsonrpc":"2.0","id":1,"method":"add","params":{"a":"two","b":3}})"), kInvalidParams);
  EXPECT_EQ(code_of(d, R"({"jsonrpc":"2.0","id":1,"method":"add","params":{"a":2}})"), kInvalidParams);
  EXPECT_EQ(code_of(d, std::string(kMaxRequestBytes + 1, ' ')), kInvalidRequest);
}

TEST(Rpc, RequiredParametersAreNamedAndAMethodsOwnErrorIsAnErrno) {
  Dispatcher d = make();
  json r = reply(d, R"({"jsonrpc":"2.0","id":1,"method":"kill"})");
  EXPECT_EQ(r["error"]["code"], kInvalidParams);
  EXPECT_NE(r["error"]["message"].get<std::string>().find("'id'"), std::string::npos);
  r = reply(d, R"({"jsonrpc":"2.0","id":1,"method":"kill","params":{"id":-3}})");
  EXPECT_EQ(r["error"]["code"], kInvalidParams);
  r = reply(d, R"({"jsonrpc":"2.0","id":1,"method":"kill","params":{"id":8}})");
  EXPECT_EQ(r["error"]["code"], -ENOENT);
  r = reply(d, R"({"jsonrpc":"2.0","id":1,"method":"kill","params":{"id":7}})");
  EXPECT_EQ(r["result"], true);
}

TEST(Rpc, ANotificationGetsNoAnswer) {
  Dispatcher d = make();
  EXPECT_EQ(d.handle(R"({"jsonrpc":"2.0","method":"echo"})"), "");
}

TEST(Rpc, TheAdminSocketSitsBesideTheDataSocket) {
  EXPECT_EQ(rpc_socket_beside("/run/nvmux/nvmuxd.sock"), "/run/nvmux/nvmuxd.rpc.sock");
  EXPECT_EQ(rpc_socket_beside("/tmp/x"), "/tmp/x.rpc");
  EXPECT_EQ(rpc_socket_beside(".sock"), ".sock.rpc");
}

}  // namespace
}  // namespace nvmux::service::rpc
