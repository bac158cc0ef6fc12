#include "validate.hpp"

#include <algorithm>
#include <cerrno>

namespace nvmux::service {

int validate_descriptor(const IoDescriptor& d, const ValidationContext& context) {
  auto op = static_cast<IoOpcode>(d.opcode);
  if (d.opcode < static_cast<std::uint8_t>(IoOpcode::kRead) ||
      d.opcode > static_cast<std::uint8_t>(IoOpcode::kDeallocate)) {
    return -EINVAL;
  }
  if (d.nsid == 0 || d.nsid > context.namespaces.size()) return -ENOENT;
  const nvme::NamespaceInfo& ns = context.namespaces[d.nsid - 1];
  const NamespaceGrant* grant = context.grant.find(d.nsid);
  if (grant == nullptr) return -EACCES;
  if (op != IoOpcode::kRead && op != IoOpcode::kFlush && !grant->writable) return -EACCES;
  if (op == IoOpcode::kFlush) return 0;
  if (d.blocks == 0) return -EINVAL;
  if (op == IoOpcode::kWriteZeroes && d.blocks > kMaxWriteZeroesBlocks) return -EINVAL;
  if (d.lba >= ns.blocks || d.blocks > ns.blocks - d.lba) return -ERANGE;
  if (!Grant::range_allowed(*grant, d.lba, d.blocks)) return -EACCES;
  if (op == IoOpcode::kRead || op == IoOpcode::kWrite) {
    std::uint64_t bytes = std::uint64_t{d.blocks} * ns.block_size;
    std::uint32_t limit = context.max_transfer_bytes;
    if (limit != 0 && bytes > limit) return -EINVAL;
    if (d.arena_offset % 4 != 0) return -EINVAL;  // NVMe data pointers are dword aligned
    if (d.arena_offset > context.arena_bytes || bytes > context.arena_bytes - d.arena_offset) return -EINVAL;
  }
  return 0;
}

Result<ControlType> admit_control_message(const ControlMessage& m, std::size_t received_bytes, bool session_ready) {
  if (Status ok = check_control_message(m, received_bytes); !ok.ok()) {
    return Status(ok.code(), "bad control message: " + ok.message());
  }
  auto type = static_cast<ControlType>(m.type);
  if (!session_ready && type != ControlType::kHello) {
    return Status::error(StatusCode::kInvalidArgument, "control message type {} before hello", m.type);
  }
  switch (type) {
    case ControlType::kHello:
      if (session_ready) return Status::error(StatusCode::kInvalidArgument, "a second hello");
      return type;
    case ControlType::kNamespaceInfo:
    case ControlType::kQueueCreate:
    case ControlType::kQueueDestroy:
    case ControlType::kDaemonStats: return type;
  }
  return Status::error(StatusCode::kInvalidArgument, "unknown control message type {}", m.type);
}

Result<std::uint64_t> session_arena_bytes(std::uint64_t requested, std::uint64_t grant_max_arena_bytes) {
  std::uint64_t arena = requested == 0 ? kDefaultArenaBytes : align_up(requested, kPageBytes);
  if (requested > kMaxArenaBytes || arena > grant_max_arena_bytes) {
    return Status::error(requested > kMaxArenaBytes ? StatusCode::kInvalidArgument : StatusCode::kPermissionDenied,
                         "an arena of {} bytes is above the limit of {} bytes", requested,
                         std::min<std::uint64_t>(kMaxArenaBytes, grant_max_arena_bytes));
  }
  return arena;
}

}  // namespace nvmux::service
