#pragma once
// The nvmuxd wire protocol: every byte layout that crosses the process boundary between nvmuxd and
// a client. Both sides include this header; docs/service.md draws the same layouts.
//
// Two channels per session:
//   control  a SOCK_SEQPACKET Unix socket. Requests and replies are one ControlMessage each
//            (fixed size); a reply may carry one file descriptor (SCM_RIGHTS). Hang-up on either
//            side ends the session.
//   data     one sealed memfd per session, mapped by both: a SessionHeader page, kMaxQueues queue
//            blocks (wake words, an SQ ring of IoDescriptor, a CQ ring of IoCompletion) and the
//            data arena. The daemon writes the header and creates the rings; the client writes
//            descriptors and the arena, the daemon writes completions (and the device writes the
//            arena).
//
// Trust: the daemon trusts nothing a client writes. It copies each descriptor out of shared memory
// before checking it, validates every ring index (Peer::kUntrusted) and every field, and answers a
// bad descriptor with an error completion. The client checks the header the daemon wrote (a
// mismatched version is an error, not undefined behaviour).
//
// Threading: plain layouts; the atomics in QueueWake are the only words both sides write.

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "nvmux/common/status.hpp"
#include "nvmux/ring/spsc_ring.hpp"

namespace nvmux::service {

// 2: the client sleeps on client_waiting itself (one shared wake word per direction); 1 had it
// sleep on a separate completion_seq.
inline constexpr std::uint16_t kProtocolVersion = 2;
inline constexpr std::uint32_t kControlMagic = 0x4358564e;             // "NVXC" in memory order
inline constexpr std::uint64_t kSessionMagic = 0x5353455358564e4eull;  // "NNVXSESS"

// Limits (each a named constant with its unit last).
inline constexpr std::uint32_t kMaxQueues = 16;        // queues per session
inline constexpr std::uint32_t kMaxQueueDepth = 1024;  // requests in flight per queue
inline constexpr std::uint32_t kMaxNamespaces = 1024;  // nsid 1..kMaxNamespaces
inline constexpr std::size_t kPageBytes = 4096;        // arena buffers are page aligned
inline constexpr std::size_t kDefaultArenaBytes = std::size_t{64} << 20;
inline constexpr std::size_t kMaxArenaBytes = std::size_t{1} << 30;
inline constexpr std::size_t kControlReasonBytes = 160;  // error text in a reply, NUL-terminated

// ---------------------------------------------------------------------------------------------
// Data path

enum class IoOpcode : std::uint8_t {
  kRead = 1,
  kWrite = 2,
  kFlush = 3,
  kWriteZeroes = 4,
  kDeallocate = 5,
};

// One request, written by the client into its SQ ring. `tag` is returned untouched in the
// completion; the daemon never interprets it.
struct IoDescriptor {
  std::uint64_t tag;
  std::uint64_t lba;
  std::uint64_t arena_offset;  // read/write: where the data is, from the start of the arena
  std::uint32_t blocks;        // read/write/write zeroes/deallocate: number of logical blocks
  std::uint32_t nsid;
  std::uint8_t opcode;  // IoOpcode
  std::uint8_t reserved[15];
};
static_assert(sizeof(IoDescriptor) == 48);
static_assert(offsetof(IoDescriptor, tag) == 0);
static_assert(offsetof(IoDescriptor, lba) == 8);
static_assert(offsetof(IoDescriptor, arena_offset) == 16);
static_assert(offsetof(IoDescriptor, blocks) == 24);
static_assert(offsetof(IoDescriptor, nsid) == 28);
static_assert(offsetof(IoDescriptor, opcode) == 32);

// One completion, written by the daemon into the client's CQ ring.
struct IoCompletion {
  std::uint64_t tag;
  std::int32_t status;        // 0 or a negative errno
  std::uint16_t nvme_status;  // (SCT << 8) | SC from the device; 0 when the device was not reached
  std::uint16_t reserved;
  std::uint32_t result;  // completion dword 0
  std::uint32_t reserved2;
};
static_assert(sizeof(IoCompletion) == 24);
static_assert(offsetof(IoCompletion, status) == 8);
static_assert(offsetof(IoCompletion, nvme_status) == 12);
static_assert(offsetof(IoCompletion, result) == 16);

// The words both sides write for sleeping and waking: shared-scope wake words (flag + fence +
// futex or eventfd, the cross-process twin of the runtime's; src/runtime/futex.hpp). Each side's
// word lives on its own cache line. Each side treats the other's writes as hints only.
struct alignas(kCacheLineBytes) QueueWake {
  // Armed (1) by the daemon when its owner thread is going idle (wake it by writing the queue's
  // eventfd), cleared by whichever side sees it first.
  alignas(kCacheLineBytes) std::atomic<std::uint32_t> owner_idle;
  // Armed (1) by the client while it sleeps in wait() (the shared futex word it sleeps on),
  // cleared by the daemon when it wakes it, or by the client when it stops waiting.
  alignas(kCacheLineBytes) std::atomic<std::uint32_t> client_waiting;
  std::uint32_t reserved;  // was completion_seq (protocol 1); zero
};
static_assert(sizeof(QueueWake) == 2 * kCacheLineBytes);
static_assert(offsetof(QueueWake, client_waiting) == kCacheLineBytes);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

// Layout of one queue block: wake words, then the SQ ring, then the CQ ring, each ring sized for
// kMaxQueueDepth whatever depth the queue was created with.
inline constexpr std::size_t align_up(std::size_t v, std::size_t to) { return (v + to - 1) / to * to; }
inline constexpr std::size_t kQueueSqOffset = sizeof(QueueWake);
inline constexpr std::size_t kQueueCqOffset =
    kQueueSqOffset + align_up(kRingSlotsOffset + std::size_t{kMaxQueueDepth} * sizeof(IoDescriptor), kCacheLineBytes);
inline constexpr std::size_t kQueueBlockBytes =
    align_up(kQueueCqOffset + kRingSlotsOffset + std::size_t{kMaxQueueDepth} * sizeof(IoCompletion), kPageBytes);

// Page 0 of the session memfd, written once by the daemon before the fd is passed.
struct SessionHeader {
  std::uint64_t magic;           // kSessionMagic
  std::uint32_t layout_version;  // kProtocolVersion
  std::uint32_t max_queues;      // kMaxQueues
  std::uint64_t session_id;
  std::uint64_t total_bytes;        // of the memfd
  std::uint64_t queue_block_bytes;  // kQueueBlockBytes
  std::uint64_t queues_offset;      // first queue block
  std::uint64_t arena_offset;
  std::uint64_t arena_bytes;
  std::uint32_t daemon_pid;
  std::uint32_t reserved;
};
static_assert(sizeof(SessionHeader) == 72);
static_assert(offsetof(SessionHeader, session_id) == 16);
static_assert(offsetof(SessionHeader, arena_offset) == 48);

inline constexpr std::size_t kQueuesOffset = kPageBytes;
inline constexpr std::size_t kArenaOffset = kQueuesOffset + std::size_t{kMaxQueues} * kQueueBlockBytes;
inline constexpr std::size_t session_bytes(std::size_t arena_bytes) { return kArenaOffset + arena_bytes; }
inline constexpr std::size_t queue_block_offset(std::uint32_t queue) {
  return kQueuesOffset + std::size_t{queue} * kQueueBlockBytes;
}

// Checks a header copied out of shared memory against this build's layout and the memfd's size.
// Errors: kCorruption naming the field.
Status check_session_header(const SessionHeader& header, std::size_t mapped_bytes);

// ---------------------------------------------------------------------------------------------
// Control channel

enum class ControlType : std::uint16_t {
  // Client -> daemon, first message. arg0: arena bytes wanted (0: default).
  // Reply: arg0 session id, arg1 memfd bytes, arg2 namespace count, arg3 daemon pid; fd: memfd.
  kHello = 1,
  // arg0: nsid. Reply: arg0 blocks, arg1 block size, arg2 read-only (0/1), arg3 max transfer bytes.
  kNamespaceInfo = 2,
  // arg0: depth (1..kMaxQueueDepth). Reply: arg0 queue index, arg1 ring capacity; fd: the eventfd
  // that wakes the queue's owner thread.
  kQueueCreate = 3,
  // arg0: queue index. Reply once the queue's in-flight requests have completed.
  kQueueDestroy = 4,
  // Reply: arg0 sessions open, arg1 queues open, arg2 requests in flight, arg3 sessions closed.
  kDaemonStats = 5,
};

struct ControlMessage {
  std::uint32_t magic;  // kControlMagic
  std::uint16_t version;
  std::uint16_t type;   // ControlType
  std::uint32_t seq;    // echoed in the reply
  std::int32_t status;  // reply: 0 or a negative errno
  std::uint64_t arg0;
  std::uint64_t arg1;
  std::uint64_t arg2;
  std::uint64_t arg3;
  char reason[kControlReasonBytes];  // reply with status != 0: what was refused, NUL-terminated
};
static_assert(sizeof(ControlMessage) == 208);
static_assert(offsetof(ControlMessage, status) == 12);
static_assert(offsetof(ControlMessage, arg0) == 16);
static_assert(offsetof(ControlMessage, reason) == 48);

// Checks a message copied off the socket: size, magic, version. Errors: kCorruption.
Status check_control_message(const ControlMessage& message, std::size_t received_bytes);

// The default socket path: $NVMUX_SOCKET, else /run/nvmux/nvmuxd.sock for root, else
// $XDG_RUNTIME_DIR/nvmux/nvmuxd.sock (or /tmp/nvmux-<uid>/nvmuxd.sock without XDG_RUNTIME_DIR).
std::string default_socket_path();

}  // namespace nvmux::service
