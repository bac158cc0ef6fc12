#include "rpc_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "nvmux/common/cpu.hpp"
#include "rpc.hpp"

namespace nvmux::service::rpc {

Result<nlohmann::json> call(const std::string& socket_path, const std::string& method, const nlohmann::json& params,
                            int timeout_ms) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return Status::error(StatusCode::kInvalidArgument, "admin socket path '{}' is longer than {} bytes", socket_path,
                         sizeof(addr.sun_path) - 1);
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::from_errno(errno, "socket");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED) {
      return Status::error(StatusCode::kUnavailable, "nvmuxd is not running (no admin socket at {}: {})", socket_path,
                           std::strerror(err));
    }
    return Status::from_errno(err, fmt::format("connect to the admin socket {}", socket_path));
  }
  const std::string request =
      nlohmann::json{{"jsonrpc", "2.0"}, {"id", 1}, {"method", method}, {"params", params}}.dump() + "\n";
  for (std::size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return Status::error(StatusCode::kUnavailable, "nvmuxd hung up on the admin socket {}", socket_path);
    sent += static_cast<std::size_t>(n);
  }
  std::string response;
  const std::uint64_t deadline = monotonic_ns() + static_cast<std::uint64_t>(timeout_ms) * 1'000'000;
  while (response.find('\n') == std::string::npos) {
    const std::uint64_t now = monotonic_ns();
    if (now >= deadline) {
      return Status::error(StatusCode::kTimeout, "nvmuxd did not answer {} within {} ms", method, timeout_ms);
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>((deadline - now) / 1'000'000) + 1) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return Status::error(StatusCode::kUnavailable, "nvmuxd hung up before answering {}", method);
    response.append(buf, static_cast<std::size_t>(n));
    if (response.size() > (std::size_t{64} << 20)) {
      return Status::error(StatusCode::kCorruption, "the answer to {} is over 64 MiB", method);
    }
  }
  nlohmann::json j = nlohmann::json::parse(response.substr(0, response.find('\n')), nullptr, false);
  if (j.is_discarded() || !j.is_object() || (!j.contains("result") && !j.contains("error"))) {
    return Status::error(StatusCode::kCorruption, "the answer to {} is not a JSON-RPC response", method);
  }
  return j;
}

}  // namespace nvmux::service::rpc
