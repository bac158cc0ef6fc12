#pragma once
// One JSON-RPC 2.0 call to nvmuxd's admin socket (nvmux-ctl, tests): connect, send one request
// line, read one response line. Threading: plain function.

#include <string>

#include <nlohmann/json.hpp>

#include "nvmux/common/status.hpp"

namespace nvmux::service::rpc {

// The whole response object ({"result": …} or {"error": {code, message}}). Errors: kUnavailable
// (no daemon on `socket_path`, or it hung up), kTimeout (no answer within timeout_ms),
// kCorruption (an answer that is not a JSON-RPC response), the errno of a failed system call.
Result<nlohmann::json> call(const std::string& socket_path, const std::string& method, const nlohmann::json& params,
                            int timeout_ms);

}  // namespace nvmux::service::rpc
