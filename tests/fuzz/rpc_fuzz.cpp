// libFuzzer target: the admin socket's JSON-RPC 2.0 dispatcher (src/service/rpc.cpp). Any bytes
// must give one JSON-RPC response object (or nothing, for a notification): never a crash, an
// abort or an escaping exception. The methods here take parameters the way the daemon's do
// (required_u64, typed lookups that throw), so their error paths are reached too.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "rpc.hpp"

namespace {

using nlohmann::json;
using namespace nvmux::service::rpc;

[[noreturn]] void fail(const char* what, std::string_view response) {
  std::fprintf(stderr, "rpc_fuzz: %s: %.*s\n", what, static_cast<int>(response.size()), response.data());
  std::abort();
}

const Dispatcher& dispatcher() {
  static const Dispatcher d = [] {
    Dispatcher out;
    out.add("session_kill", "params: id", [](const json& params) -> Reply {
      auto id = required_u64(params, "id");
      if (const auto* e = std::get_if<Error>(&id)) return *e;
      return std::get<std::uint64_t>(id) == 1 ? Reply(true) : Reply(Error{-2, "no session"});
    });
    out.add("echo", "its params", [](const json& params) -> Reply { return params; });
    out.add("typed", "a string and a number", [](const json& params) -> Reply {
      return params.at("name").get<std::string>() + std::to_string(params.at("n").get<std::int64_t>());
    });
    return out;
  }();
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string response = dispatcher().handle(text);
  if (response.empty()) return 0;  // a notification
  json r = json::parse(response, nullptr, /*allow_exceptions=*/false);
  if (r.is_discarded() || !r.is_object()) fail("the response is not a JSON object", response);
  if (r.value("jsonrpc", "") != "2.0") fail("the response lacks \"jsonrpc\": \"2.0\"", response);
  if (r.contains("result") == r.contains("error")) fail("a response needs exactly one of result and error", response);
  if (r.contains("error") && !(r["error"].contains("code") && r["error"]["code"].is_number_integer() &&
                               r["error"].contains("message") && r["error"]["message"].is_string())) {
    fail("an error without an integer code and a message", response);
  }
  return 0;
}
