// nvmux-ctl: one JSON-RPC call to nvmuxd's admin socket, like SPDK's rpc.py.
//
//   nvmux-ctl session_get_list
//   nvmux-ctl session_kill id=3
//   nvmux-ctl --socket /tmp/nvmux.sock metrics_get        # the admin socket beside that data socket
//   nvmux-ctl rpc_get_methods                             # every method with its help
//
// Parameters are key=value; a value that parses as JSON (3, true, "x", [1,2]) is sent as that,
// anything else as a string. The result is printed as JSON (a string result as plain text).
// Exit codes: 0 the call succeeded, 1 the daemon answered with an error or is not running,
// 2 bad usage.
#include <cstdio>
#include "cli.hpp"

#include "nvmux/service/protocol.hpp"
#include "rpc.hpp"
#include "rpc_client.hpp"

int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"nvmux-ctl: call a method on nvmuxd's admin socket (JSON-RPC 2.0); rpc_get_methods lists them"};
  std::string socket, rpc_socket, method;
  std::vector<std::string> args;
  int timeout_ms = 10'000;
  app.add_option("--socket", socket, "nvmuxd's data socket: its admin socket is beside it (NAME.rpc.sock)");
  app.add_option("--rpc-socket", rpc_socket, "the admin socket itself (overrides --socket)");
  app.add_option("--timeout-ms", timeout_ms, "how long to wait for the answer")->capture_default_str();
  app.add_option("method", method, "the method, e.g. session_get_list")->required();
  app.add_option("params", args, "key=value parameters");
  if (auto done = nvmux::apps::parse_command_line(app, "nvmux-ctl", argc, argv)) return *done;
  if (timeout_ms <= 0 || timeout_ms > 3'600'000) {
    std::fprintf(stderr, "nvmux-ctl: --timeout-ms %d: 1..3600000\n", timeout_ms);
    return 2;
  }
  nlohmann::json params = nlohmann::json::object();
  for (const std::string& a : args) {
    const std::size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::fprintf(stderr, "nvmux-ctl: parameter '%s': expected key=value\n", a.c_str());
      return 2;
    }
    const std::string value = a.substr(eq + 1);
    nlohmann::json parsed = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
    params[a.substr(0, eq)] = parsed.is_discarded() ? nlohmann::json(value) : parsed;
  }
  if (rpc_socket.empty()) {
    rpc_socket =
        nvmux::service::rpc::rpc_socket_beside(socket.empty() ? nvmux::service::default_socket_path() : socket);
  }
  auto response = nvmux::service::rpc::call(rpc_socket, method, params, timeout_ms);
  if (!response.ok()) {
    std::fprintf(stderr, "nvmux-ctl: %s\n", response.status().message().c_str());
    return 1;
  }
  if (auto error = response->find("error"); error != response->end()) {
    std::fprintf(stderr, "nvmux-ctl: %s: %s (code %s)\n", method.c_str(), error->value("message", "?").c_str(),
                 error->contains("code") ? (*error)["code"].dump().c_str() : "?");
    return 1;
  }
  const nlohmann::json& result = (*response)["result"];
  if (result.is_string()) {
    std::fputs(result.get<std::string>().c_str(), stdout);
  } else {
    std::printf("%s\n", result.dump(2).c_str());
  }
  return 0;
}
