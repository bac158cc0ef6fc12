#include "torture.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>

#include "../../src/service/control_socket.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/service/client.hpp"
#include "nvmux/service/protocol.hpp"

namespace nvmux::torture {

using service::ControlMessage;
using service::ControlType;
using service::IoCompletion;
using service::IoDescriptor;
using service::IoOpcode;

namespace {

constexpr std::size_t kHostileArenaBytes = std::size_t{1} << 20;  // small: garbage rounds rewrite it all
constexpr int kReplyTimeoutMs = 2000;
constexpr std::size_t kMaxFailures = 20;
constexpr int kUnreadSettleMs = 10;  // time for the daemon to fill a CQ nobody reads (~1 ms needed)
constexpr int kFdsAtOnce = 200;      // below the kernel's SCM_MAX_FD (253)

std::uint64_t elapsed_ms(std::uint64_t since_ns) { return (monotonic_ns() - since_ns) / 1'000'000; }

class Failures {
 public:
  explicit Failures(TortureReport& report) : report_(report) {}
  template <class... Args>
  void add(fmt::format_string<Args...> format, Args&&... args) {
    if (report_.failures.size() < kMaxFailures)
      report_.failures.push_back(fmt::format(format, std::forward<Args>(args)...));
  }

 private:
  TortureReport& report_;
};

// One hostile session, spoken to byte by byte. Owns its socket, memfd and mapping.
class RawSession {
 public:
  struct Queue {
    std::uint32_t index = 0;
    std::uint64_t capacity = 0;
    int eventfd = -1;
    std::byte* block = nullptr;
    std::optional<RingProducer<IoDescriptor>> sq;
    std::optional<RingConsumer<IoCompletion>> cq;
    RingSharedState* sq_state() const { return reinterpret_cast<RingSharedState*>(block + service::kQueueSqOffset); }
    RingSharedState* cq_state() const { return reinterpret_cast<RingSharedState*>(block + service::kQueueCqOffset); }
    void kick() const {
      std::uint64_t one = 1;
      (void)::write(eventfd, &one, sizeof(one));
    }
  };

  RawSession() = default;
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;
  ~RawSession() { close(); }

  // Connects; with `hello`, also opens the session and maps its memory.
  Status open(const std::string& path, bool hello = true) {
    sockaddr_un addr{};
    if (path.size() >= sizeof(addr.sun_path))
      return Status::error(StatusCode::kInvalidArgument, "socket path too long");
    socket_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (socket_ < 0) return Status::from_errno(errno, "socket");
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    if (::connect(socket_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      return Status::from_errno(errno, fmt::format("connect {}", path));
    }
    if (!hello) return {};
    ControlMessage m = service::make_message(ControlType::kHello, 0);
    m.arg0 = kHostileArenaBytes;
    auto reply = call(m, &memfd_);
    if (!reply.ok()) return reply.status();
    if (reply->status != 0) return Status::error(StatusCode::kPermissionDenied, "hello refused: {}", reply->reason);
    if (memfd_ < 0) return Status::error(StatusCode::kCorruption, "hello reply without a memfd");
    bytes_ = reply->arg1;
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0);
    if (p == MAP_FAILED) return Status::from_errno(errno, "mmap the session memfd");
    mem_ = static_cast<std::byte*>(p);
    std::memcpy(&header_, mem_, sizeof(header_));
    return service::check_session_header(header_, bytes_);
  }

  void close() {
    queues_.clear();
    for (int fd : eventfds_) ::close(fd);
    eventfds_.clear();
    if (mem_ != nullptr) ::munmap(mem_, bytes_);
    mem_ = nullptr;
    if (memfd_ >= 0) ::close(memfd_);
    memfd_ = -1;
    if (socket_ >= 0) ::close(socket_);
    socket_ = -1;
  }

  // One request and its reply. A reply may carry a descriptor (returned in *fd_out or closed).
  Result<ControlMessage> call(ControlMessage m, int* fd_out = nullptr, int send_fd = -1) {
    m.seq = ++seq_;
    NVMUX_RETURN_IF_ERROR(service::send_control(socket_, m, send_fd));
    return receive(fd_out);
  }
  Result<ControlMessage> receive(int* fd_out = nullptr, int timeout_ms = kReplyTimeoutMs) {
    auto r = service::receive_control(socket_, timeout_ms);
    if (!r.ok()) return r.status();
    if (fd_out != nullptr) {
      *fd_out = r->fd;
    } else if (r->fd >= 0) {
      ::close(r->fd);
    }
    NVMUX_RETURN_IF_ERROR(service::check_control_message(r->message, r->bytes));
    return r->message;
  }

  Result<Queue*> create_queue(std::uint32_t depth) {
    ControlMessage m = service::make_message(ControlType::kQueueCreate, 0);
    m.arg0 = depth;
    int efd = -1;
    auto reply = call(m, &efd);
    if (!reply.ok()) return reply.status();
    if (reply->status != 0) {
      if (efd >= 0) ::close(efd);
      return Status::error(StatusCode::kResourceExhausted, "queue refused: {}", reply->reason);
    }
    if (efd < 0 || reply->arg0 >= service::kMaxQueues) {
      if (efd >= 0) ::close(efd);
      return Status::error(StatusCode::kCorruption, "queue reply: index {}, eventfd {}", reply->arg0, efd);
    }
    eventfds_.push_back(efd);
    auto q = std::make_unique<Queue>();
    q->index = static_cast<std::uint32_t>(reply->arg0);
    q->capacity = reply->arg1;
    q->eventfd = efd;
    q->block = mem_ + service::queue_block_offset(q->index);
    auto sq = attach_ring<IoDescriptor>(
        std::span<std::byte>(q->block + service::kQueueSqOffset, service::kQueueCqOffset - service::kQueueSqOffset),
        q->capacity);
    if (!sq.ok()) return sq.status();
    auto cq = attach_ring<IoCompletion>(
        std::span<std::byte>(q->block + service::kQueueCqOffset, service::kQueueBlockBytes - service::kQueueCqOffset),
        q->capacity);
    if (!cq.ok()) return cq.status();
    q->sq.emplace(*sq, Peer::kUntrusted);
    q->cq.emplace(*cq, Peer::kUntrusted);
    queues_.push_back(std::move(q));
    return queues_.back().get();
  }

  // Whether the daemon hung up, waiting up to `wait_ms`. Unsolicited messages are read and dropped.
  bool hung_up(int wait_ms) {
    const std::uint64_t start = monotonic_ns();
    while (true) {
      pollfd p{socket_, POLLIN | POLLRDHUP, 0};
      const auto left = static_cast<int>(static_cast<std::uint64_t>(wait_ms) > elapsed_ms(start)
                                             ? static_cast<std::uint64_t>(wait_ms) - elapsed_ms(start)
                                             : 0);
      if (::poll(&p, 1, left) <= 0) return false;
      if ((p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0) return true;
      char buf[512];
      if (::recv(socket_, buf, sizeof(buf), MSG_DONTWAIT) == 0) return true;
    }
  }

  // Grows this process's mapping of the memfd and shrinks it back (no queue may be attached).
  bool remap_round_trip() {
    void* grown = ::mremap(mem_, bytes_, bytes_ * 2, MREMAP_MAYMOVE);
    if (grown == MAP_FAILED) return false;
    mem_ = static_cast<std::byte*>(grown);
    void* back = ::mremap(mem_, bytes_ * 2, bytes_, MREMAP_MAYMOVE);
    if (back == MAP_FAILED) {
      ::munmap(mem_, bytes_ * 2);
      mem_ = nullptr;
      return false;
    }
    mem_ = static_cast<std::byte*>(back);
    return true;
  }

  int socket() const { return socket_; }
  int memfd() const { return memfd_; }
  std::byte* memory() const { return mem_; }
  std::size_t bytes() const { return bytes_; }
  const service::SessionHeader& header() const { return header_; }
  std::byte* arena() const { return mem_ + header_.arena_offset; }

 private:
  int socket_ = -1;
  int memfd_ = -1;
  std::byte* mem_ = nullptr;
  std::size_t bytes_ = 0;
  service::SessionHeader header_{};
  std::uint32_t seq_ = 0;
  std::vector<int> eventfds_;
  std::vector<std::unique_ptr<Queue>> queues_;
};

// What a hostile descriptor gets wrong (or nothing, for the valid ones mixed in).
enum class Fault {
  kValidRead,
  kValidWrite,
  kValidFlush,
  kReservedGarbage,  // valid, with garbage in the reserved bytes (which the daemon ignores)
  kBadOpcode,
  kNsidZero,
  kNsidUnknown,
  kLbaBeyond,
  kLbaOverflow,
  kBlocksZero,
  kBlocksHuge,
  kArenaBeyond,
  kArenaOverflow,
  kArenaUnaligned,
  kZeroesTooMany,
  kDeallocateBeyond,
  kCount,
};

constexpr std::array<const char*, static_cast<std::size_t>(Fault::kCount)> kFaultNames = {
    "valid read",     "valid write",     "valid flush",           "reserved garbage",
    "bad opcode",     "nsid 0",          "unknown nsid",          "LBA beyond",
    "LBA overflow",   "0 blocks",        "huge block count",      "arena offset beyond",
    "arena overflow", "unaligned arena", "write zeroes too many", "deallocate beyond"};

bool fault_is_valid(Fault f) {
  return f == Fault::kValidRead || f == Fault::kValidWrite || f == Fault::kValidFlush || f == Fault::kReservedGarbage;
}

struct Target {
  std::uint32_t namespaces = 1;
  std::uint64_t blocks = 0;  // namespace 1
  std::uint32_t block_size = 0;
  std::uint32_t max_blocks = 1;  // per request, from the transfer limit
};

class Torture {
 public:
  Torture(const TortureParams& params, TortureReport& report)
      : params_(params), report_(report), failures_(report), rng_(params.seed) {}

  Status start() {
    auto client = service::Client::connect(params_.socket);
    if (!client.ok()) return client.status();
    watcher_ = std::move(*client);
    auto ns = watcher_->namespace_info(1);
    if (!ns.ok()) return ns.status();
    target_.blocks = ns->blocks;
    target_.block_size = ns->block_size;
    const std::uint32_t limit = ns->max_transfer_bytes != 0 ? ns->max_transfer_bytes : 128 * 1024;
    target_.max_blocks = std::max<std::uint32_t>(1, std::min<std::uint32_t>(8, limit / ns->block_size));
    while (target_.namespaces < service::kMaxNamespaces && watcher_->namespace_info(target_.namespaces + 1).ok()) {
      ++target_.namespaces;
    }
    if (params_.lba_count != 0 &&
        (params_.lba_first >= target_.blocks || params_.lba_count > target_.blocks - params_.lba_first)) {
      return Status::error(StatusCode::kInvalidArgument, "--lba-range {}+{} is outside namespace 1 ({} blocks)",
                           params_.lba_first, params_.lba_count, target_.blocks);
    }
    return {};
  }

  // The daemon answers a well-behaved control request within the bound; false (and a failure)
  // when it does not.
  bool daemon_alive() {
    const std::uint64_t t0 = monotonic_ns();
    auto stats = watcher_->daemon_stats();
    const std::uint64_t ms = elapsed_ms(t0);
    report_.max_liveness_ms = std::max(report_.max_liveness_ms, ms);
    if (!stats.ok()) {
      failures_.add("the daemon stopped answering: {}", stats.status().to_string());
      return false;
    }
    if (ms > static_cast<std::uint64_t>(params_.liveness_timeout_ms)) {
      failures_.add("the daemon took {} ms to answer a stats request", ms);
    }
    return true;
  }

  using Attack = void (Torture::*)(AttackCount&);
  void descriptors(AttackCount& count);
  void unread(AttackCount& count);
  void garbage(AttackCount& count);
  void indices(AttackCount& count);
  void seals(AttackCount& count);
  void control(AttackCount& count);
  void queues(AttackCount& count);
  void vanish(AttackCount& count);

  std::uint64_t descriptors_per_round = 1000;

 private:
  bool open(RawSession& s) {
    Status st = s.open(params_.socket);
    if (!st.ok()) failures_.add("a hostile session could not be opened: {}", st.to_string());
    return st.ok();
  }
  IoDescriptor make(Fault fault, std::uint64_t tag, std::size_t arena_bytes);
  // Pushes up to `n` descriptors of random faults; records each tag's expectation.
  std::size_t push_hostile(RawSession::Queue& q, std::size_t n, std::size_t arena_bytes);
  // Reaps completions and checks each against what was sent; returns how many.
  std::size_t reap(RawSession::Queue& q);
  // Valid reads (and writes inside the client's own range) for rounds that need load.
  std::size_t push_valid(RawSession::Queue& q, std::size_t n, std::size_t arena_bytes);

  const TortureParams& params_;
  TortureReport& report_;
  Failures failures_;
  std::mt19937_64 rng_;
  std::unique_ptr<service::Client> watcher_;
  Target target_;
  std::uint64_t next_tag_ = 1;
  std::unordered_map<std::uint64_t, Fault> outstanding_;
};

IoDescriptor Torture::make(Fault fault, std::uint64_t tag, std::size_t arena_bytes) {
  IoDescriptor d{};
  d.tag = tag;
  d.nsid = 1;
  d.opcode = static_cast<std::uint8_t>(IoOpcode::kRead);
  d.blocks = 1 + static_cast<std::uint32_t>(rng_() % target_.max_blocks);
  const std::uint64_t bytes = std::uint64_t{d.blocks} * target_.block_size;
  d.lba = rng_() % (target_.blocks - d.blocks + 1);
  d.arena_offset = (rng_() % ((arena_bytes - bytes) / service::kPageBytes + 1)) * service::kPageBytes;
  switch (fault) {
    case Fault::kValidRead: break;
    case Fault::kValidWrite:
      if (params_.lba_count >= d.blocks) {
        d.opcode = static_cast<std::uint8_t>(IoOpcode::kWrite);
        d.lba = params_.lba_first + rng_() % (params_.lba_count - d.blocks + 1);
      }
      break;
    case Fault::kValidFlush:
      d.opcode = static_cast<std::uint8_t>(IoOpcode::kFlush);
      d.lba = rng_();  // a flush ignores the range
      break;
    case Fault::kReservedGarbage:
      for (auto& b : d.reserved) b = static_cast<std::uint8_t>(rng_());
      break;
    case Fault::kBadOpcode: {
      auto op = static_cast<std::uint8_t>(rng_());
      d.opcode = op >= 1 && op <= 5 ? static_cast<std::uint8_t>(op + 5) : op;
      break;
    }
    case Fault::kNsidZero: d.nsid = 0; break;
    case Fault::kNsidUnknown:
      d.nsid = target_.namespaces + 1 + static_cast<std::uint32_t>(rng_() % (0xffffffffull - target_.namespaces));
      break;
    case Fault::kLbaBeyond: d.lba = target_.blocks + rng_() % (UINT64_MAX - target_.blocks); break;
    case Fault::kLbaOverflow:
      d.lba = UINT64_MAX - rng_() % 4;
      d.blocks = 8;
      break;
    case Fault::kBlocksZero: d.blocks = 0; break;
    case Fault::kBlocksHuge: d.blocks = static_cast<std::uint32_t>(target_.blocks + 1 + rng_() % 1000); break;
    case Fault::kArenaBeyond: d.arena_offset = arena_bytes - (rng_() % 2 == 0 ? 0 : 1024) + (rng_() % 1024) * 4; break;
    case Fault::kArenaOverflow: d.arena_offset = UINT64_MAX - (rng_() % 4096) * 4 - 3; break;
    case Fault::kArenaUnaligned: d.arena_offset += 1 + rng_() % 3; break;
    case Fault::kZeroesTooMany:
      d.opcode = static_cast<std::uint8_t>(IoOpcode::kWriteZeroes);
      d.blocks = (1u << 16) + 1 + static_cast<std::uint32_t>(rng_() % 1000);
      d.lba = 0;
      break;
    case Fault::kDeallocateBeyond:
      d.opcode = static_cast<std::uint8_t>(IoOpcode::kDeallocate);
      d.lba = target_.blocks - d.blocks + 1 + rng_() % 1000;
      break;
    case Fault::kCount: break;
  }
  return d;
}

std::size_t Torture::push_hostile(RawSession::Queue& q, std::size_t n, std::size_t arena_bytes) {
  std::vector<IoDescriptor> batch;
  batch.reserve(n);
  std::vector<Fault> faults;
  for (std::size_t i = 0; i < n; ++i) {
    auto fault = static_cast<Fault>(rng_() % static_cast<std::uint64_t>(Fault::kCount));
    if (fault == Fault::kValidWrite && params_.lba_count == 0) fault = Fault::kValidRead;
    batch.push_back(make(fault, next_tag_++, arena_bytes));
    faults.push_back(fault);
  }
  const std::size_t pushed = q.sq->push_bulk(batch);
  for (std::size_t i = 0; i < pushed; ++i) outstanding_.emplace(batch[i].tag, faults[i]);
  next_tag_ -= n - pushed;  // tags of descriptors that did not fit are reused
  report_.descriptors_sent += pushed;
  return pushed;
}

std::size_t Torture::push_valid(RawSession::Queue& q, std::size_t n, std::size_t arena_bytes) {
  std::size_t pushed = 0;
  for (; pushed < n; ++pushed) {
    const Fault fault = params_.lba_count != 0 && rng_() % 2 == 0 ? Fault::kValidWrite : Fault::kValidRead;
    if (!q.sq->try_push(make(fault, next_tag_, arena_bytes))) break;
    outstanding_.emplace(next_tag_++, fault);
    ++report_.descriptors_sent;
  }
  return pushed;
}

std::size_t Torture::reap(RawSession::Queue& q) {
  return q.cq->consume(
      [this](const IoCompletion& c) {
        ++report_.completions;
        auto it = outstanding_.find(c.tag);
        if (it == outstanding_.end()) {
          failures_.add("a completion for tag {} that was never sent or already completed (status {})", c.tag,
                        c.status);
          return;
        }
        const Fault fault = it->second;
        outstanding_.erase(it);
        if (fault_is_valid(fault)) {
          if (c.status != 0) {
            failures_.add("a valid descriptor ({}) failed with {}", kFaultNames[static_cast<std::size_t>(fault)],
                          c.status);
          } else {
            ++report_.valid_completed;
          }
        } else if (c.status == 0) {
          failures_.add("a bad descriptor ({}) succeeded", kFaultNames[static_cast<std::size_t>(fault)]);
        } else {
          ++report_.refused;
        }
      },
      SIZE_MAX);
}

void Torture::descriptors(AttackCount& count) {
  RawSession s;
  if (!open(s)) return;
  auto q = s.create_queue(service::kMaxQueueDepth);
  if (!q.ok()) return failures_.add("queue for the descriptor flood: {}", q.status().to_string());
  outstanding_.clear();
  std::uint64_t sent = 0, last_progress = monotonic_ns();
  while (sent < descriptors_per_round || !outstanding_.empty()) {
    std::size_t pushed = 0;
    if (sent < descriptors_per_round) {
      pushed = push_hostile(**q, std::min<std::uint64_t>(256, descriptors_per_round - sent), s.header().arena_bytes);
      sent += pushed;
    }
    if (pushed != 0) (*q)->kick();
    const std::size_t reaped = reap(**q);
    if ((*q)->cq->failed()) return failures_.add("the daemon broke the CQ ring: {}", (*q)->cq->status().to_string());
    if (pushed != 0 || reaped != 0) {
      last_progress = monotonic_ns();
    } else if (elapsed_ms(last_progress) > static_cast<std::uint64_t>(params_.detection_timeout_ms)) {
      return failures_.add("the daemon stopped draining: {} descriptors unanswered for {} ms", outstanding_.size(),
                           params_.detection_timeout_ms);
    }
  }
  (void)count;
}

void Torture::unread(AttackCount& count) {
  RawSession s;
  if (!open(s)) return;
  auto q = s.create_queue(service::kMaxQueueDepth);
  if (!q.ok()) return failures_.add("queue for the unread-CQ round: {}", q.status().to_string());
  outstanding_.clear();
  // Fill the SQ, let the daemon fill the CQ, refill the SQ it drained: then nothing more fits.
  std::size_t pushed = push_valid(**q, (*q)->capacity, s.header().arena_bytes);
  (*q)->kick();
  std::this_thread::sleep_for(std::chrono::milliseconds(kUnreadSettleMs));
  pushed += push_valid(**q, (*q)->capacity, s.header().arena_bytes);
  (*q)->kick();
  std::this_thread::sleep_for(std::chrono::milliseconds(params_.unread_hold_ms));
  const std::uint64_t ready = (*q)->cq->refresh_available();
  if ((*q)->cq->failed() || ready > (*q)->capacity) {
    return failures_.add("the daemon overflowed a CQ nobody read: {} completions in {} slots", ready, (*q)->capacity);
  }
  const std::uint64_t t0 = monotonic_ns();
  while (!outstanding_.empty() && elapsed_ms(t0) < static_cast<std::uint64_t>(params_.detection_timeout_ms)) {
    if (reap(**q) == 0) (*q)->kick();
  }
  if (!outstanding_.empty()) {
    failures_.add("{} of {} requests never completed after the CQ was read again", outstanding_.size(), pushed);
  }
  (void)count;
}

void Torture::garbage(AttackCount& count) {
  RawSession s;
  if (!open(s)) return;
  std::vector<RawSession::Queue*> qs;
  for (int i = 0; i < 2; ++i) {
    auto q = s.create_queue(64);
    if (q.ok()) qs.push_back(*q);
  }
  outstanding_.clear();
  for (auto* q : qs) push_valid(*q, 32, s.header().arena_bytes);
  // Where the garbage goes: everything, one queue block, the ring index lines, the arena, page 0.
  std::byte* from = s.memory();
  std::size_t len = s.bytes();
  switch (rng_() % 5) {
    case 0: break;
    case 1:
      from = s.memory() + service::queue_block_offset(0);
      len = service::kQueueBlockBytes;
      break;
    case 2:
      from = s.memory() + service::queue_block_offset(0) + service::kQueueSqOffset + offsetof(RingSharedState, tail);
      len = 2 * kCacheLineBytes;
      break;
    case 3:
      from = s.arena();
      len = s.header().arena_bytes;
      break;
    case 4: len = service::kPageBytes; break;
  }
  for (std::size_t i = 0; i + 8 <= len; i += 8) {
    const std::uint64_t word = rng_();
    std::memcpy(from + i, &word, sizeof(word));
  }
  for (auto* q : qs) q->kick();
  if (s.hung_up(200)) ++count.sessions_closed_by_daemon;
}

void Torture::indices(AttackCount& count) {
  RawSession s;
  if (!open(s)) return;
  auto q = s.create_queue(64);
  if (!q.ok()) return failures_.add("queue for the indices round: {}", q.status().to_string());
  RingSharedState* sq = (*q)->sq_state();
  RingSharedState* cq = (*q)->cq_state();
  const std::uint64_t sq_head = sq->head.value.load(std::memory_order_acquire);
  const std::uint64_t cq_tail = cq->tail.value.load(std::memory_order_acquire);
  const char* what = "";
  switch (rng_() % 3) {
    case 0:
      what = "SQ tail beyond capacity";
      sq->tail.value.store(sq_head + (*q)->capacity + 1 + rng_() % 1000, std::memory_order_release);
      break;
    case 1:
      what = "SQ tail backwards";
      sq->tail.value.store(sq_head - 1 - rng_() % 1000, std::memory_order_release);
      break;
    case 2:
      what = "CQ head beyond the tail";
      cq->head.value.store(cq_tail + 1 + rng_() % 1000, std::memory_order_release);
      // Give the daemon a reason to look at the CQ.
      (*q)->sq->try_push(make(Fault::kValidRead, next_tag_++, s.header().arena_bytes));
      break;
  }
  const std::uint64_t t0 = monotonic_ns();
  (*q)->kick();
  if (!s.hung_up(params_.detection_timeout_ms)) {
    return failures_.add("{}: the daemon kept the session open for {} ms", what, params_.detection_timeout_ms);
  }
  ++count.sessions_closed_by_daemon;
  report_.max_detection_ms = std::max(report_.max_detection_ms, elapsed_ms(t0));
}

void Torture::seals(AttackCount& count) {
  RawSession s;
  if (!open(s)) return;
  const auto size = static_cast<off_t>(s.bytes());
  auto refused = [this](int rc, const char* what) {
    if (rc == 0) return failures_.add("the session memfd allowed {}", what);
    if (errno != EPERM) return failures_.add("{}: {} (expected EPERM)", what, std::strerror(errno));
    ++report_.seals_refused;
  };
  refused(::ftruncate(s.memfd(), size * 2), "growing it (ftruncate)");
  refused(::ftruncate(s.memfd(), size / 2), "shrinking it (ftruncate)");
  refused(::fallocate(s.memfd(), 0, size, 4096), "growing it (fallocate)");
  refused(::fcntl(s.memfd(), F_ADD_SEALS, F_SEAL_WRITE), "a new seal");
  // Its own mapping may grow and shrink back: beyond the file, an access would fault here, in
  // this process, never in the daemon, which maps the memfd itself.
  if (!s.remap_round_trip()) failures_.add("mremap of the session's own mapping failed: {}", std::strerror(errno));
  (void)count;
}

void Torture::control(AttackCount& count) {
  RawSession s;
  Status st = s.open(params_.socket, /*hello=*/rng_() % 2 == 0);
  if (!st.ok()) return failures_.add("a control-attack connection failed: {}", st.to_string());
  // After each message the daemon answers (an error), or hangs up; either is fine, a crash is not.
  auto answered = [&](bool expect_reply) {
    ++report_.control_messages;
    if (!expect_reply) return !s.hung_up(20);
    auto reply = s.receive(nullptr, 200);
    if (reply.ok()) {
      if (reply->status != 0) ++report_.control_errors;
      return true;
    }
    if (reply.status().code() == StatusCode::kUnavailable) ++count.sessions_closed_by_daemon;
    return false;
  };
  for (int i = 0; i < 8; ++i) {
    std::vector<std::byte> raw;
    ControlMessage m = service::make_message(static_cast<ControlType>(rng_() % 8), 1000 + i);
    m.arg0 = rng_() % 4 == 0 ? rng_() : rng_() % 2048;
    m.arg1 = rng_();
    bool expect_reply = true;
    int send_fd = -1;
    switch (rng_() % 7) {
      case 0:  // random bytes of a random length
        raw.resize(rng_() % 300);
        for (auto& b : raw) b = static_cast<std::byte>(rng_());
        expect_reply = false;
        break;
      case 1:  // truncated
        raw.resize(sizeof(m) / 2);
        std::memcpy(raw.data(), &m, raw.size());
        expect_reply = false;
        break;
      case 2:  // oversized
        raw.resize(4096);
        std::memcpy(raw.data(), &m, sizeof(m));
        expect_reply = false;
        break;
      case 3: m.magic ^= 1 + static_cast<std::uint32_t>(rng_() % 0xffff); break;
      case 4: m.version = static_cast<std::uint16_t>(m.version + 1 + rng_() % 100); break;
      case 5: send_fd = s.memfd() >= 0 ? s.memfd() : ::open("/dev/null", O_RDONLY | O_CLOEXEC); break;
      case 6: break;  // a well-formed message with hostile arguments
    }
    bool open_still;
    if (!raw.empty() || expect_reply == false) {
      (void)::send(s.socket(), raw.data(), raw.size(), MSG_NOSIGNAL);
      open_still = answered(false);
    } else {
      Status sent = service::send_control(s.socket(), m, send_fd);
      if (send_fd >= 0 && send_fd != s.memfd()) ::close(send_fd);
      open_still = sent.ok() && answered(true);
    }
    if (!open_still) break;
  }
  // Many descriptors at once, never asked for: the daemon must close every one of them.
  if (!s.hung_up(0)) {
    std::vector<int> fds;
    for (int i = 0; i < kFdsAtOnce; ++i) fds.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ControlMessage m = service::make_message(ControlType::kDaemonStats, 9999);
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kFdsAtOnce)] = {};
    iovec iov{&m, sizeof(m)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * kFdsAtOnce);
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * kFdsAtOnce);
    (void)::sendmsg(s.socket(), &msg, MSG_NOSIGNAL);
    for (int fd : fds) ::close(fd);
    answered(true);
  }
}

void Torture::queues(AttackCount& count) {
  RawSession s;
  if (!open(s)) return;
  std::uint32_t created = 0;
  for (std::uint32_t i = 0; i < service::kMaxQueues + 2; ++i) {
    if (s.create_queue(1 + static_cast<std::uint32_t>(rng_() % service::kMaxQueueDepth)).ok()) ++created;
  }
  if (created > service::kMaxQueues) {
    failures_.add("the daemon gave one session {} queues (the cap is {})", created, service::kMaxQueues);
  }
  auto destroy = [&](std::uint64_t index) {
    ControlMessage m = service::make_message(ControlType::kQueueDestroy, 0);
    m.arg0 = index;
    ++report_.control_messages;
    auto r = s.call(m);
    if (r.ok() && r->status != 0) ++report_.control_errors;
    return r.ok() ? r->status : -ENOTCONN;
  };
  if (destroy(3) != 0) failures_.add("destroying a queue of the session failed");
  if (destroy(3) == 0) failures_.add("a queue was destroyed twice");
  if (destroy(service::kMaxQueues + rng_() % 1000) == 0) failures_.add("an unknown queue index was destroyed");
  if (destroy(UINT64_MAX - rng_() % 16) == 0) failures_.add("queue index near 2^64 was destroyed");
  (void)count;
}

void Torture::vanish(AttackCount& count) {
  RawSession s;
  if (!open(s)) return;
  auto q = s.create_queue(service::kMaxQueueDepth);
  if (!q.ok()) return failures_.add("queue for the vanish round: {}", q.status().to_string());
  outstanding_.clear();
  push_valid(**q, 512, s.header().arena_bytes);
  (*q)->kick();
  (void)count;
  // ~RawSession: the socket closes with requests in flight, no goodbye.
}

}  // namespace

Result<TortureReport> run_torture(const TortureParams& params, const std::function<void(std::uint64_t)>& progress) {
  if (params.rounds == 0) return Status::error(StatusCode::kInvalidArgument, "--rounds must be at least 1");
  if (params.liveness_timeout_ms <= 0 || params.detection_timeout_ms <= 0 || params.unread_hold_ms <= 0) {
    return Status::error(StatusCode::kInvalidArgument, "timeouts must be positive");
  }
  TortureReport report;
  Torture t(params, report);
  NVMUX_RETURN_IF_ERROR(t.start());
  const std::vector<std::pair<const char*, Torture::Attack>> every_attack = {
      {"descriptors", &Torture::descriptors}, {"unread", &Torture::unread}, {"garbage", &Torture::garbage},
      {"indices", &Torture::indices},         {"seals", &Torture::seals},   {"control", &Torture::control},
      {"queues", &Torture::queues},           {"vanish", &Torture::vanish}};
  std::vector<std::pair<const char*, Torture::Attack>> attacks;
  for (const auto& attack : every_attack) {
    if (params.attacks.empty() ||
        std::find(params.attacks.begin(), params.attacks.end(), attack.first) != params.attacks.end()) {
      attacks.push_back(attack);
    }
  }
  for (const std::string& name : params.attacks) {
    if (std::none_of(every_attack.begin(), every_attack.end(), [&](const auto& a) { return name == a.first; })) {
      return Status::error(StatusCode::kInvalidArgument,
                           "attack '{}': one of descriptors, unread, garbage, indices, seals, control, queues, vanish",
                           name);
    }
  }
  for (const auto& [name, fn] : attacks) report.attacks.push_back(AttackCount{name});
  // Descriptor rounds are one in every attacks.size(): each gets an equal share of the flood.
  const std::uint64_t descriptor_rounds = std::max<std::uint64_t>(1, params.rounds / attacks.size());
  t.descriptors_per_round = std::max<std::uint64_t>(1, params.descriptors / descriptor_rounds);
  for (std::uint64_t round = 0; round < params.rounds; ++round) {
    const std::size_t k = round % attacks.size();
    ++report.attacks[k].rounds;
    (t.*attacks[k].second)(report.attacks[k]);
    if (progress) progress(round + 1);
    if (!t.daemon_alive()) break;
  }
  return report;
}

std::string format_report(const TortureReport& r) {
  std::string out = "nvmux-torture:\n";
  for (const AttackCount& a : r.attacks) {
    out += fmt::format("  {:<12} {:>6} rounds, {:>6} sessions closed by the daemon\n", a.name, a.rounds,
                       a.sessions_closed_by_daemon);
  }
  out += fmt::format(
      "  {} hostile descriptors sent, {} completions: {} refused (bad), {} valid completed\n"
      "  {} hostile control messages, {} answered with an error; {} resize/seal attempts refused\n"
      "  worst detection of impossible ring indices {} ms; worst daemon answer between rounds {} ms\n",
      r.descriptors_sent, r.completions, r.refused, r.valid_completed, r.control_messages, r.control_errors,
      r.seals_refused, r.max_detection_ms, r.max_liveness_ms);
  if (r.failures.empty()) {
    out += "  the daemon held: 0 failures\n";
  } else {
    out += fmt::format("  {} FAILURE(S):\n", r.failures.size());
    for (const auto& f : r.failures) out += "    " + f + "\n";
  }
  return out;
}

}  // namespace nvmux::torture
