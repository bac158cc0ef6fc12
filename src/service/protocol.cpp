#include "nvmux/service/protocol.hpp"

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace nvmux::service {

Status check_session_header(const SessionHeader& h, std::size_t mapped_bytes) {
  if (h.magic != kSessionMagic) {
    return Status::error(StatusCode::kCorruption, "session header magic is {:#x}, expected {:#x}", h.magic,
                         kSessionMagic);
  }
  if (h.layout_version != kProtocolVersion) {
    return Status::error(StatusCode::kCorruption, "session layout version is {}, this library speaks version {}",
                         h.layout_version, kProtocolVersion);
  }
  if (h.max_queues != kMaxQueues || h.queue_block_bytes != kQueueBlockBytes || h.queues_offset != kQueuesOffset ||
      h.arena_offset != kArenaOffset) {
    return Status::error(StatusCode::kCorruption,
                         "session layout (queues {} x {} bytes at {}, arena at {}) is not this library's "
                         "({} x {} at {}, arena at {})",
                         h.max_queues, h.queue_block_bytes, h.queues_offset, h.arena_offset, kMaxQueues,
                         kQueueBlockBytes, kQueuesOffset, kArenaOffset);
  }
  if (h.arena_bytes == 0 || h.arena_bytes > kMaxArenaBytes || h.arena_bytes % kPageBytes != 0 ||
      h.total_bytes != session_bytes(h.arena_bytes) || h.total_bytes > mapped_bytes) {
    return Status::error(StatusCode::kCorruption,
                         "session of {} bytes with a {}-byte arena does not fit {} mapped bytes", h.total_bytes,
                         h.arena_bytes, mapped_bytes);
  }
  return {};
}

Status check_control_message(const ControlMessage& m, std::size_t received_bytes) {
  if (received_bytes != sizeof(ControlMessage)) {
    return Status::error(StatusCode::kCorruption, "control message of {} bytes, expected {}", received_bytes,
                         sizeof(ControlMessage));
  }
  if (m.magic != kControlMagic) {
    return Status::error(StatusCode::kCorruption, "control message magic {:#x}, expected {:#x}", m.magic,
                         kControlMagic);
  }
  if (m.version != kProtocolVersion) {
    return Status::error(StatusCode::kCorruption, "control protocol version {}, this side speaks {}", m.version,
                         kProtocolVersion);
  }
  return {};
}

std::string default_socket_path() {
  if (const char* env = std::getenv("NVMUX_SOCKET"); env != nullptr && *env != '\0') return env;
  if (geteuid() == 0) return "/run/nvmux/nvmuxd.sock";
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg != '\0') {
    return std::string(xdg) + "/nvmux/nvmuxd.sock";
  }
  return fmt::format("/tmp/nvmux-{}/nvmuxd.sock", geteuid());
}

}  // namespace nvmux::service
