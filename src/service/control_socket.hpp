#pragma once
// Sending and receiving ControlMessages over a SOCK_SEQPACKET socket, with at most one file
// descriptor attached (SCM_RIGHTS). Used by the client library and the daemon alike.
//
// Threading: plain functions; callers serialise use of one socket.

#include <optional>

#include "nvmux/common/status.hpp"
#include "nvmux/service/protocol.hpp"

namespace nvmux::service {

// A message with every field zero but magic, version, type and seq.
ControlMessage make_message(ControlType type, std::uint32_t seq);
// Copies `reason` (truncated) into a reply.
void set_reason(ControlMessage& message, std::string_view reason);

// Sends one message, with `fd` attached when >= 0. MSG_NOSIGNAL: a hung-up peer is kUnavailable,
// never SIGPIPE. Errors: kUnavailable (peer gone), the errno of sendmsg otherwise.
Status send_control(int socket, const ControlMessage& message, int fd = -1);

struct Received {
  ControlMessage message{};
  std::size_t bytes = 0;  // as received; check_control_message() checks it
  int fd = -1;            // attached descriptor (owned by the caller), or -1
};
// Receives one message. Any descriptors beyond the first, and any attached to a truncated message,
// are closed. `timeout_ms` < 0 waits without limit. Errors: kUnavailable (peer hung up),
// kTimeout, kCorruption (truncated message), the errno of recvmsg otherwise.
Result<Received> receive_control(int socket, int timeout_ms);

}  // namespace nvmux::service
