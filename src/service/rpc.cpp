#include "rpc.hpp"

#include <fmt/format.h>

namespace nvmux::service::rpc {

namespace {

std::string error_response(const nlohmann::json& id, int code, const std::string& message) {
  return nlohmann::json{{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", message}}}}.dump();
}

}  // namespace

void Dispatcher::add(std::string name, std::string help, Method method) {
  methods_[std::move(name)] = Entry{std::move(help), std::move(method)};
}

std::map<std::string, std::string> Dispatcher::methods() const {
  std::map<std::string, std::string> out;
  for (const auto& [name, entry] : methods_) out[name] = entry.help;
  return out;
}

std::string Dispatcher::handle(std::string_view request) const {
  if (request.size() > kMaxRequestBytes) {
    return error_response(nullptr, kInvalidRequest,
                          fmt::format("request of {} bytes; the limit is {}", request.size(), kMaxRequestBytes));
  }
  nlohmann::json j = nlohmann::json::parse(request, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return error_response(nullptr, kParseError, "parse error: not a JSON text");
  if (!j.is_object()) return error_response(nullptr, kInvalidRequest, "a request is a JSON object");
  const bool notification = !j.contains("id");
  nlohmann::json id = notification ? nlohmann::json(nullptr) : j["id"];
  if (!id.is_null() && !id.is_string() && !id.is_number_integer()) {
    return error_response(nullptr, kInvalidRequest, "\"id\" must be a string, an integer or null");
  }
  auto it = j.find("jsonrpc");
  if (it == j.end() || *it != "2.0") return error_response(id, kInvalidRequest, "\"jsonrpc\" must be \"2.0\"");
  it = j.find("method");
  if (it == j.end() || !it->is_string()) return error_response(id, kInvalidRequest, "\"method\" must be a string");
  const std::string method = it->get<std::string>();
  nlohmann::json params = nlohmann::json::object();
  if (auto p = j.find("params"); p != j.end()) {
    if (!p->is_object()) return error_response(id, kInvalidParams, "\"params\" must be an object (by name)");
    params = *p;
  }
  auto entry = methods_.find(method);
  if (entry == methods_.end()) return error_response(id, kMethodNotFound, fmt::format("no method '{}'", method));
  Reply reply;
  try {
    reply = entry->second.method(params);
  } catch (const nlohmann::json::exception& e) {
    reply = Error{kInvalidParams, fmt::format("{}: {}", method, e.what())};
  }
  if (notification) return {};
  if (const auto* error = std::get_if<Error>(&reply)) return error_response(id, error->code, error->message);
  return nlohmann::json{{"jsonrpc", "2.0"}, {"id", id}, {"result", std::get<nlohmann::json>(reply)}}.dump();
}

std::variant<std::uint64_t, Error> required_u64(const nlohmann::json& params, const char* name) {
  auto it = params.find(name);
  if (it == params.end()) return Error{kInvalidParams, fmt::format("missing parameter '{}'", name)};
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<std::int64_t>() >= 0)) {
    return Error{kInvalidParams, fmt::format("parameter '{}' must be an unsigned integer, got {}", name, it->dump())};
  }
  return it->get<std::uint64_t>();
}

std::string rpc_socket_beside(const std::string& data_socket) {
  constexpr std::string_view kSuffix = ".sock";
  if (data_socket.size() > kSuffix.size() &&
      data_socket.compare(data_socket.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0) {
    return data_socket.substr(0, data_socket.size() - kSuffix.size()) + ".rpc.sock";
  }
  return data_socket + ".rpc";
}

}  // namespace nvmux::service::rpc
