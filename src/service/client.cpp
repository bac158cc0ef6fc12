#include "nvmux/service/client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "../runtime/futex.hpp"  // header-only: no link to the runtime
#include "control_socket.hpp"
#include "nvmux/common/fence.hpp"

namespace nvmux::service {

namespace {

constexpr int kControlReplyTimeoutMs = 60'000;  // queue destroy waits for the device to finish
constexpr std::size_t kPollBatch = 64;          // completions copied out per ring pass

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

// The daemon's reply status as a Status: its errno and its reason.
Status reply_status(const ControlMessage& reply) {
  char reason[kControlReasonBytes];
  std::memcpy(reason, reply.reason, sizeof(reason));
  reason[sizeof(reason) - 1] = '\0';
  return Status::from_errno(-reply.status, fmt::format("nvmuxd: {}", reason));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Client

Result<std::unique_ptr<Client>> Client::connect(std::string_view socket_path, std::size_t arena_bytes) {
  std::string path = socket_path.empty() ? default_socket_path() : std::string(socket_path);
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return Status::error(StatusCode::kInvalidArgument, "socket path '{}' is longer than {} bytes", path,
                         sizeof(addr.sun_path) - 1);
  }
  if (arena_bytes > kMaxArenaBytes) {
    return Status::error(StatusCode::kInvalidArgument, "arena of {} bytes is above the {}-byte limit", arena_bytes,
                         kMaxArenaBytes);
  }
  std::unique_ptr<Client> client(new Client());
  client->socket_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (client->socket_ < 0) return Status::from_errno(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::connect(client->socket_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED) {
      return Status::error(StatusCode::kUnavailable, "nvmuxd is not running at {} ({})", path, std::strerror(err));
    }
    return Status::from_errno(err, fmt::format("connect to nvmuxd at {}", path));
  }
  ControlMessage hello = make_message(ControlType::kHello, 0);
  hello.arg0 = arena_bytes;
  int memfd = -1;
  auto reply = client->call(hello, &memfd);
  if (!reply.ok()) return reply.status();
  if (memfd < 0) return Status::error(StatusCode::kCorruption, "nvmuxd's session reply carried no memory file");
  auto memory = SharedMemory::map(memfd, reply->arg1);
  ::close(memfd);
  if (!memory.ok()) return memory.status();
  client->memory_ = std::move(*memory);
  // Copy the header once, check the copy, use only the copy.
  SessionHeader header;
  std::memcpy(&header, client->memory_.data(), sizeof(header));
  NVMUX_RETURN_IF_ERROR(check_session_header(header, client->memory_.size()));
  client->session_id_ = header.session_id;
  client->arena_ = client->memory_.data() + header.arena_offset;
  client->arena_bytes_ = header.arena_bytes;
  client->free_.emplace(0, header.arena_bytes);
  return client;
}

Client::~Client() {
  if (socket_ >= 0) ::close(socket_);  // the daemon sees the hang-up and frees the session
}

Result<ControlMessage> Client::call(ControlMessage request, int* fd_out) {
  std::lock_guard lock(control_mutex_);
  if (disconnected()) return Status::error(StatusCode::kUnavailable, "nvmuxd hung up; reconnect");
  request.seq = next_seq_++;
  if (Status s = send_control(socket_, request); !s.ok()) {
    if (s.code() == StatusCode::kUnavailable) mark_gone();
    return s;
  }
  auto received = receive_control(socket_, kControlReplyTimeoutMs);
  if (!received.ok()) {
    // A reply that never came (or came broken) leaves the channel out of step: the session is over.
    mark_gone();
    return received.status();
  }
  // Whatever happens below, an attached descriptor is ours to close unless handed out.
  int fd = received->fd;
  auto close_fd = [&fd] {
    if (fd >= 0) ::close(fd);
    fd = -1;
  };
  ControlMessage reply = received->message;
  if (Status s = check_control_message(reply, received->bytes); !s.ok()) {
    close_fd();
    return s;
  }
  if (reply.seq != request.seq || reply.type != request.type) {
    close_fd();
    return Status::error(StatusCode::kCorruption, "nvmuxd answered request {} (type {}) with {} (type {})", request.seq,
                         request.type, reply.seq, reply.type);
  }
  if (reply.status != 0) {
    close_fd();
    return reply_status(reply);
  }
  if (fd_out != nullptr) {
    *fd_out = fd;
  } else {
    close_fd();
  }
  return reply;
}

bool Client::check_gone() {
  if (disconnected()) return true;
  pollfd p{socket_, POLLRDHUP, 0};
  if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0) mark_gone();
  return disconnected();
}

void Client::mark_gone() { disconnected_.store(true, std::memory_order_release); }  // pairs with disconnected()

Result<NamespaceInfo> Client::namespace_info(std::uint32_t nsid) {
  if (nsid == 0 || nsid > kMaxNamespaces) {
    return Status::error(StatusCode::kInvalidArgument, "nsid {} is outside 1..{}", nsid, kMaxNamespaces);
  }
  ControlMessage request = make_message(ControlType::kNamespaceInfo, 0);
  request.arg0 = nsid;
  auto reply = call(request);
  if (!reply.ok()) return reply.status();
  NamespaceInfo info;
  info.nsid = nsid;
  info.blocks = reply->arg0;
  info.block_size = static_cast<std::uint32_t>(reply->arg1);
  info.read_only = reply->arg2 != 0;
  info.max_transfer_bytes = static_cast<std::uint32_t>(reply->arg3);
  if (info.blocks == 0 || (info.block_size != 512 && info.block_size != 4096)) {
    return Status::error(StatusCode::kCorruption, "nvmuxd described nsid {} as {} blocks of {} bytes", nsid,
                         info.blocks, info.block_size);
  }
  return info;
}

Result<DaemonStats> Client::daemon_stats() {
  auto reply = call(make_message(ControlType::kDaemonStats, 0));
  if (!reply.ok()) return reply.status();
  return DaemonStats{reply->arg0, reply->arg1, reply->arg2, reply->arg3};
}

Result<std::unique_ptr<Queue>> Client::create_queue(std::uint32_t depth) {
  if (depth == 0 || depth > kMaxQueueDepth) {
    return Status::error(StatusCode::kInvalidArgument, "queue depth {} is outside 1..{}", depth, kMaxQueueDepth);
  }
  ControlMessage request = make_message(ControlType::kQueueCreate, 0);
  request.arg0 = depth;
  int eventfd = -1;
  auto reply = call(request, &eventfd);
  if (!reply.ok()) return reply.status();
  auto fail = [&eventfd](Status s) -> Result<std::unique_ptr<Queue>> {
    if (eventfd >= 0) ::close(eventfd);
    return s;
  };
  std::uint64_t index = reply->arg0;
  std::uint64_t capacity = reply->arg1;
  if (eventfd < 0) return fail(Status::error(StatusCode::kCorruption, "nvmuxd's queue reply carried no eventfd"));
  if (index >= kMaxQueues || capacity < depth || capacity > kMaxQueueDepth) {
    return fail(Status::error(StatusCode::kCorruption, "nvmuxd gave queue {} with {} slots for depth {}", index,
                              capacity, depth));
  }
  std::byte* block = memory_.data() + queue_block_offset(static_cast<std::uint32_t>(index));
  auto sq = attach_ring<IoDescriptor>(std::span<std::byte>(block + kQueueSqOffset, kQueueCqOffset - kQueueSqOffset),
                                      capacity);
  if (!sq.ok()) return fail(sq.status());
  auto cq = attach_ring<IoCompletion>(std::span<std::byte>(block + kQueueCqOffset, kQueueBlockBytes - kQueueCqOffset),
                                      capacity);
  if (!cq.ok()) return fail(cq.status());
  return std::unique_ptr<Queue>(new Queue(
      *this, static_cast<std::uint32_t>(index), depth, eventfd, RingProducer<IoDescriptor>(*sq, Peer::kUntrusted),
      RingConsumer<IoCompletion>(*cq, Peer::kUntrusted), reinterpret_cast<QueueWake*>(block)));
}

void* Client::buf_alloc(std::size_t bytes) {
  if (bytes == 0 || bytes > arena_bytes_) return nullptr;  // and align_up cannot wrap
  std::size_t need = align_up(bytes, kPageBytes);
  std::lock_guard lock(arena_mutex_);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < need) continue;
    std::size_t offset = it->first;
    std::size_t left = it->second - need;
    free_.erase(it);
    if (left != 0) free_.emplace(offset + need, left);
    taken_.emplace(offset, need);
    return arena_ + offset;
  }
  return nullptr;
}

bool Client::buf_free(void* buf) {
  auto* p = static_cast<std::byte*>(buf);
  if (p < arena_ || p >= arena_ + arena_bytes_) return false;
  std::size_t offset = static_cast<std::size_t>(p - arena_);
  std::lock_guard lock(arena_mutex_);
  auto it = taken_.find(offset);
  if (it == taken_.end()) return false;
  std::size_t bytes = it->second;
  taken_.erase(it);
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && next->first == offset + bytes) {
    bytes += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += bytes;
      return true;
    }
  }
  free_.emplace(offset, bytes);
  return true;
}

Result<std::uint64_t> Client::arena_offset_of(const void* buf, std::size_t bytes) const {
  auto* p = static_cast<const std::byte*>(buf);
  if (p < arena_ || p >= arena_ + arena_bytes_) {
    return Status::error(StatusCode::kInvalidArgument, "buffer {} is not in this session's arena (use buf_alloc)", buf);
  }
  std::size_t offset = static_cast<std::size_t>(p - arena_);
  std::lock_guard lock(arena_mutex_);
  auto it = taken_.upper_bound(offset);
  if (it == taken_.begin()) {
    return Status::error(StatusCode::kInvalidArgument, "buffer {} is not an allocated arena buffer", buf);
  }
  --it;
  if (offset - it->first > it->second || bytes > it->second - (offset - it->first)) {
    return Status::error(StatusCode::kInvalidArgument, "{} bytes at {} run past the end of their {}-byte buffer", bytes,
                         buf, it->second);
  }
  return static_cast<std::uint64_t>(offset);
}

// ---------------------------------------------------------------------------------------------
// Queue

Queue::Queue(Client& client, std::uint32_t index, std::uint32_t depth, int owner_eventfd, RingProducer<IoDescriptor> sq,
             RingConsumer<IoCompletion> cq, QueueWake* wake)
    : client_(client), index_(index), depth_(depth), owner_eventfd_(owner_eventfd), sq_(std::move(sq)),
      cq_(std::move(cq)), wake_(wake), slots_(depth), last_liveness_ns_(now_ns()) {
  free_slots_.reserve(depth);
  for (std::uint32_t i = depth; i > 0; --i) free_slots_.push_back(i - 1);
}

Queue::~Queue() {
  if (!gone_ && !client_.disconnected()) {
    ControlMessage request = make_message(ControlType::kQueueDestroy, 0);
    request.arg0 = index_;
    // The daemon replies once everything in flight completed into our CQ: deliver those.
    if (client_.call(request).ok()) (void)poll(0);
  }
  cancel_all();
  ::close(owner_eventfd_);
}

Result<NamespaceInfo> Queue::namespace_of(std::uint32_t nsid) {
  if (nsid < namespaces_.size() && namespaces_[nsid].blocks != 0) return namespaces_[nsid];
  auto info = client_.namespace_info(nsid);
  if (!info.ok()) return info.status();
  if (namespaces_.size() <= nsid) namespaces_.resize(nsid + 1);
  namespaces_[nsid] = *info;
  return *info;
}

Status Queue::submit(IoOpcode op, std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks,
                     std::uint64_t arena_offset, CompletionFn cb, void* ctx) {
  if (gone_ || daemon_gone()) return Status::error(StatusCode::kUnavailable, "nvmuxd is gone; reconnect");
  if (cb == nullptr) return Status::error(StatusCode::kInvalidArgument, "no completion callback");
  if (free_slots_.empty()) {
    return Status::error(StatusCode::kWouldBlock, "queue {} has all {} requests in flight", index_, depth_);
  }
  std::uint32_t slot_index = free_slots_.back();
  Slot& slot = slots_[slot_index];
  IoDescriptor d{};
  d.tag = (std::uint64_t{slot.generation} << 32) | slot_index;
  d.lba = lba;
  d.arena_offset = arena_offset;
  d.blocks = blocks;
  d.nsid = nsid;
  d.opcode = static_cast<std::uint8_t>(op);
  if (!sq_.try_push(d)) {
    // in_flight <= depth <= capacity: a full SQ means the daemon broke the ring.
    return sq_.failed() ? sq_.status()
                        : Status::error(StatusCode::kCorruption, "queue {}: SQ full with {} of {} in flight", index_,
                                        in_flight_, depth_);
  }
  free_slots_.pop_back();
  slot.cb = cb;
  slot.ctx = ctx;
  slot.busy = true;
  ++in_flight_;
  wake_owner();
  return {};
}

void Queue::wake_owner() {
  // The WakeWord protocol (shared scope) with an eventfd for a futex: the owner arms owner_idle,
  // fences, then re-checks the SQ; we published the tail, fence, then check the flag. One of the
  // two sees the other; of several wakes of one idle period, one writes the eventfd.
  full_fence();
  if (detail::SharedWakeWord(wake_->owner_idle).claim_fenced()) {
    std::uint64_t one = 1;
    (void)!::write(owner_eventfd_, &one, sizeof(one));
  }
}

Status Queue::submit_data(IoOpcode op, std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, const void* buf,
                          CompletionFn cb, void* ctx) {
  auto ns = namespace_of(nsid);
  if (!ns.ok()) return ns.status();
  if (blocks == 0) return Status::error(StatusCode::kInvalidArgument, "a request of 0 blocks");
  if (lba >= ns->blocks || blocks > ns->blocks - lba) {
    return Status::error(StatusCode::kOutOfRange, "blocks [{}, +{}) lie beyond nsid {}'s {} blocks", lba, blocks, nsid,
                         ns->blocks);
  }
  std::uint64_t offset = 0;
  if (op == IoOpcode::kRead || op == IoOpcode::kWrite) {
    auto o = client_.arena_offset_of(buf, std::size_t{blocks} * ns->block_size);
    if (!o.ok()) return o.status();
    offset = *o;
  }
  return submit(op, nsid, lba, blocks, offset, cb, ctx);
}

Status Queue::submit_descriptor(const IoDescriptor& d, CompletionFn cb, void* ctx) {
  return submit(static_cast<IoOpcode>(d.opcode), d.nsid, d.lba, d.blocks, d.arena_offset, cb, ctx);
}

Status Queue::read(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, void* buf, CompletionFn cb, void* ctx) {
  return submit_data(IoOpcode::kRead, nsid, lba, blocks, buf, cb, ctx);
}
Status Queue::write(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, const void* buf, CompletionFn cb,
                    void* ctx) {
  return submit_data(IoOpcode::kWrite, nsid, lba, blocks, buf, cb, ctx);
}
Status Queue::write_zeroes(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, CompletionFn cb, void* ctx) {
  return submit_data(IoOpcode::kWriteZeroes, nsid, lba, blocks, nullptr, cb, ctx);
}
Status Queue::deallocate(std::uint32_t nsid, std::uint64_t lba, std::uint32_t blocks, CompletionFn cb, void* ctx) {
  return submit_data(IoOpcode::kDeallocate, nsid, lba, blocks, nullptr, cb, ctx);
}
Status Queue::flush(std::uint32_t nsid, CompletionFn cb, void* ctx) {
  auto ns = namespace_of(nsid);
  if (!ns.ok()) return ns.status();
  return submit(IoOpcode::kFlush, nsid, 0, 0, 0, cb, ctx);
}

bool Queue::daemon_gone() {
  if (client_.disconnected()) return true;
  std::uint64_t now = now_ns();
  if (now - last_liveness_ns_ < std::uint64_t{kLivenessCheckMs} * 1'000'000) return false;
  last_liveness_ns_ = now;
  return client_.check_gone();
}

void Queue::cancel_all() {
  for (std::uint32_t i = 0; i < depth_; ++i) {
    Slot& slot = slots_[i];
    if (!slot.busy) continue;
    slot.busy = false;
    ++slot.generation;
    free_slots_.push_back(i);
    --in_flight_;
    nvmux_cpl cpl{-ECANCELED, 0, 0};
    slot.cb(slot.ctx, &cpl);
  }
}

Result<std::uint32_t> Queue::poll(std::uint32_t max) {
  if (gone_) return Status::error(StatusCode::kUnavailable, "nvmuxd is gone; reconnect");
  std::uint32_t ran = 0;
  std::array<IoCompletion, kPollBatch> batch;
  while (max == 0 || ran < max) {
    std::size_t want = max == 0 ? kPollBatch : std::min<std::size_t>(kPollBatch, max - ran);
    std::size_t n = cq_.pop_bulk(std::span<IoCompletion>(batch.data(), want));  // copies: the daemon may rewrite
    if (n == 0) break;
    // Callbacks run after the ring pass, so they may poll or submit again.
    for (std::size_t i = 0; i < n; ++i) {
      const IoCompletion& c = batch[i];
      std::uint64_t slot_index = c.tag & 0xffffffffu;
      if (slot_index >= depth_ || !slots_[slot_index].busy ||
          slots_[slot_index].generation != static_cast<std::uint32_t>(c.tag >> 32)) {
        continue;  // not a request of ours in flight: a broken daemon; never call a stale callback
      }
      Slot& slot = slots_[slot_index];
      slot.busy = false;
      ++slot.generation;
      free_slots_.push_back(static_cast<std::uint32_t>(slot_index));
      --in_flight_;
      nvmux_cpl cpl{c.status, c.nvme_status, c.result};
      slot.cb(slot.ctx, &cpl);
      ++ran;
    }
  }
  if (cq_.failed() || (ran == 0 && daemon_gone())) {
    gone_ = true;
    cancel_all();
    return cq_.failed() ? cq_.status() : Status::error(StatusCode::kUnavailable, "nvmuxd hung up; reconnect");
  }
  return ran;
}

Result<std::uint32_t> Queue::wait(int timeout_ms) {
  if (gone_) return Status::error(StatusCode::kUnavailable, "nvmuxd is gone; reconnect");
  std::uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now_ns() + std::uint64_t(timeout_ms) * 1'000'000;
  // The WakeWord protocol, shared scope: arm client_waiting, fence, re-check the CQ, then a shared
  // futex wait on the flag (the daemon wakes it from its own mapping). The daemon may write
  // anything there: the value only decides whether FUTEX_WAIT returns at once; the CQ decides.
  detail::SharedWakeWord waiting(wake_->client_waiting);
  auto completed = [this] { return cq_.refresh_available() != 0 || cq_.failed(); };
  while (!completed()) {
    std::uint64_t now = now_ns();
    if (now >= deadline) break;
    std::uint64_t slice_ns = std::min<std::uint64_t>(deadline - now, std::uint64_t{kLivenessCheckMs} * 1'000'000);
    if (waiting.sleep_unless(completed, (slice_ns + 999) / 1000) == detail::SleepResult::kReady) break;
    last_liveness_ns_ = 0;  // a sleeper checks the daemon after every slice
    if (daemon_gone()) break;
  }
  return poll(0);
}

}  // namespace nvmux::service
