#pragma once
// The daemon's checks of what a client sends, as pure functions of a private copy of it and of
// what the session may do: no socket, no queue, no shared memory, no device. Owner::validate
// calls validate_descriptor for every descriptor; Daemon::serve calls admit_control_message for
// every control message and Daemon::on_hello session_arena_bytes. The fuzz targets in tests/fuzz
// feed them arbitrary bytes.
//
// Threading: pure; any thread.

#include <cstdint>
#include <span>

#include "nvmux/nvme/qpair.hpp"
#include "nvmux/service/protocol.hpp"
#include "policy.hpp"

namespace nvmux::service {

inline constexpr std::uint32_t kMaxWriteZeroesBlocks = 1u << 16;  // NLB is a 16-bit field

// What one queue's descriptors are checked against.
struct ValidationContext {
  std::span<const nvme::NamespaceInfo> namespaces;  // the daemon's, by nsid - 1
  const Grant& grant;                               // the session's
  std::uint64_t arena_bytes = 0;                    // the session arena's size
  std::uint32_t max_transfer_bytes = 0;             // the queue pair's limit (0: none)
};

// 0 when the device may execute `d`, else the -errno its completion carries, the first failing
// check in the order of docs/service.md "Validation":
//   -EINVAL  opcode not 1..5; 0 blocks; write zeroes above kMaxWriteZeroesBlocks; read/write above
//            max_transfer_bytes, arena_offset not dword aligned, or data not inside the arena
//   -ENOENT  nsid 0 or beyond the namespaces
//   -EACCES  namespace not granted; a write on a read-only grant; LBAs outside the granted ranges
//   -ERANGE  [lba, lba + blocks) not inside the namespace
// An accepted read/write/write zeroes/deallocate lies inside its namespace and the grant, and a
// read/write's [arena_offset, + blocks x block size) inside the arena; no sum overflows.
int validate_descriptor(const IoDescriptor& d, const ValidationContext& context);

// What the daemon dispatches a message received on a session's socket to: its ControlType, once
// check_control_message(m, received_bytes) passed. `session_ready`: the session's hello was
// answered. Errors (the daemon closes the session without a reply; the message is the reason it
// logs): kCorruption "bad control message: " and check_control_message's reason; kInvalidArgument
// a message other than hello before hello, a second hello, a type outside ControlType.
Result<ControlType> admit_control_message(const ControlMessage& m, std::size_t received_bytes, bool session_ready);

// The arena a hello's arg0 asks for: kDefaultArenaBytes for 0, else `requested` rounded up to a
// page. Errors: kInvalidArgument above kMaxArenaBytes, kPermissionDenied above
// `grant_max_arena_bytes`; each message names the request and the limit.
Result<std::uint64_t> session_arena_bytes(std::uint64_t requested, std::uint64_t grant_max_arena_bytes);

}  // namespace nvmux::service
