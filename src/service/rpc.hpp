#pragma once
// JSON-RPC 2.0 for nvmuxd's admin socket, independent of the transport: a table of methods and a
// handler that turns one request text into one response text. The daemon serves it on a Unix
// stream socket, one request per line (docs/admin.md); nvmux-ctl is its client.
//
// Requests are JSON-RPC 2.0 objects with by-name params (an object) or none. Errors follow the
// specification and SPDK's habits: -32700 parse error, -32600 invalid request, -32601 method not
// found, -32602 invalid params (a missing or mistyped parameter, named in the message), -32603
// internal error; an operation that failed for a reason of its own answers with that negative
// errno (-ENOENT: no such session) and a message saying what.
//
// Threading: a Dispatcher is filled once, then handle() may run on any one thread at a time (the
// methods decide what they touch; the daemon calls it on its control thread).

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

namespace nvmux::service::rpc {

inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kInternalError = -32603;
inline constexpr std::size_t kMaxRequestBytes = 64 * 1024;  // one line; longer ones are refused

struct Error {
  int code = kInternalError;
  std::string message;
};
using Reply = std::variant<nlohmann::json, Error>;
// A method: gets the params object ({} when none were given); a nlohmann::json type error it
// throws (a parameter of the wrong type) is answered as -32602 with its text.
using Method = std::function<Reply(const nlohmann::json& params)>;

class Dispatcher {
 public:
  void add(std::string name, std::string help, Method method);
  // The response to one request text, or "" for a notification (a request without an id).
  std::string handle(std::string_view request) const;
  // Method names with their one-line help, sorted.
  std::map<std::string, std::string> methods() const;

 private:
  struct Entry {
    std::string help;
    Method method;
  };
  std::map<std::string, Entry, std::less<>> methods_;
};

// Parameter helpers for methods: the value of a required unsigned integer parameter, or an Error
// naming it.
std::variant<std::uint64_t, Error> required_u64(const nlohmann::json& params, const char* name);

// The admin socket that sits beside a data socket: "DIR/NAME.sock" -> "DIR/NAME.rpc.sock", any
// other path gets ".rpc" appended.
std::string rpc_socket_beside(const std::string& data_socket);

}  // namespace nvmux::service::rpc
