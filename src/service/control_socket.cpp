#include "control_socket.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace nvmux::service {

ControlMessage make_message(ControlType type, std::uint32_t seq) {
  ControlMessage m{};
  m.magic = kControlMagic;
  m.version = kProtocolVersion;
  m.type = static_cast<std::uint16_t>(type);
  m.seq = seq;
  return m;
}

void set_reason(ControlMessage& message, std::string_view reason) {
  std::size_t n = std::min(reason.size(), kControlReasonBytes - 1);
  std::memcpy(message.reason, reason.data(), n);
  message.reason[n] = '\0';
}

Status send_control(int socket, const ControlMessage& message, int fd) {
  iovec iov{const_cast<ControlMessage*>(&message), sizeof(message)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  while (true) {
    ssize_t n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof(message))) return {};
    if (n >= 0) return Status::error(StatusCode::kIoError, "control socket sent {} of {} bytes", n, sizeof(message));
    if (errno == EINTR) continue;
    if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) {
      return Status::error(StatusCode::kUnavailable, "control socket: the peer hung up");
    }
    return Status::from_errno(errno, "sendmsg on the control socket");
  }
}

Result<Received> receive_control(int socket, int timeout_ms) {
  if (timeout_ms >= 0) {
    pollfd p{socket, POLLIN, 0};
    int r;
    do {
      r = ::poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return Status::from_errno(errno, "poll on the control socket");
    if (r == 0) return Status::error(StatusCode::kTimeout, "no control reply within {} ms", timeout_ms);
  }
  Received out;
  iovec iov{&out.message, sizeof(out.message)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == ECONNRESET || errno == ENOTCONN) {
      return Status::error(StatusCode::kUnavailable, "control socket: the peer hung up");
    }
    return Status::from_errno(errno, "recvmsg on the control socket");
  }
  // Take every descriptor the peer attached; keep the first only.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (out.fd < 0) {
        out.fd = fd;
      } else {
        ::close(fd);
      }
    }
  }
  if (n == 0) {
    if (out.fd >= 0) ::close(out.fd);
    return Status::error(StatusCode::kUnavailable, "control socket: the peer hung up");
  }
  out.bytes = static_cast<std::size_t>(n);
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    if (out.fd >= 0) ::close(out.fd);
    return Status::error(StatusCode::kCorruption, "control message truncated (longer than {} bytes or too many fds)",
                         sizeof(ControlMessage));
  }
  return out;
}

}  // namespace nvmux::service
