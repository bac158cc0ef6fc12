// Modes `spdk` and `spdk-rts`: SPDK's cross-thread message path rebuilt on real DPDK primitives.
//
// Followed from SPDK (spdk/spdk, lib/thread/thread.c and lib/env_dpdk/env.c):
//   - _thread_lib_init(): one global message pool of SPDK_DEFAULT_MSG_MEMPOOL_SIZE (262143)
//     objects, created by spdk_mempool_create(..., cache_size 0 /* "No cache. We do our own." */)
//     which is rte_mempool_create(name, count, size, 0, 0, NULL, NULL, NULL, NULL, SOCKET_ID_ANY,
//     RTE_MEMPOOL_F_NO_IOVA_CONTIG) — default ops "ring_mp_mc".
//   - spdk_thread_create(): one spdk_ring_create(SPDK_RING_TYPE_MP_SC, 65536) per thread, which is
//     rte_ring_create(name, 65536, SOCKET_ID_ANY, RING_F_EXACT_SZ | RING_F_SC_DEQ): 65536 usable
//     slots, multi-producer enqueue, single-consumer dequeue.
//   - spdk_thread_send_msg(): take a message from the sender's thread-local cache if the sender
//     is an spdk_thread, else rte_mempool_get() from the global pool (failure: -ENOMEM); fill in
//     fn/arg; enqueue one pointer (failure: put the message back, -EIO). Our producers are plain
//     pthreads, exactly the case SPDK issues #3375/#3547 describe, so they always use the pool.
//   - msg_queue_run_batch(): dequeue a burst of up to SPDK_MSG_BATCH_SIZE (8), run each message,
//     then keep it in the consumer thread's cache while that holds fewer than
//     SPDK_MSG_MEMPOOL_CACHE_SIZE (1024), else rte_mempool_put() it back one at a time.
//
// `spdk-rts` is the same with DPDK's relaxed-tail-sync ring (RING_F_MP_RTS_ENQ) and the
// "ring_mt_rts" mempool ops: DPDK's own mitigation for lock-waiter preemption, where a producer
// preempted between reserving its slot and publishing the tail blocks every later producer.
//
// Pool exhaustion: SPDK returns -ENOMEM (and -EIO on a full ring) to its caller and leaves the
// retry to it. The benchmark producer is that caller: it retries the whole send with the common
// spin-then-yield back-off, checking the point's stop flag, and counts each retry
// (pool_empty_retries, ring_full_retries) so the report shows how often it happened.

#include <rte_errno.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include <unistd.h>

#include <atomic>
#include <vector>

#include "dpdk_env.hpp"
#include "mode.hpp"

namespace nvmux::msgbench {
namespace {

// SPDK's constants (lib/thread/thread.c, include/spdk/thread.h).
constexpr unsigned kSpdkMsgPoolObjects = 262143;  // SPDK_DEFAULT_MSG_MEMPOOL_SIZE
constexpr unsigned kSpdkMsgBatchMsgs = 8;         // SPDK_MSG_BATCH_SIZE
constexpr std::size_t kSpdkMsgCacheMsgs = 1024;   // SPDK_MSG_MEMPOOL_CACHE_SIZE
constexpr unsigned kSpdkThreadRingSlots = 65536;  // spdk_ring_create(SPDK_RING_TYPE_MP_SC, 65536)

// struct spdk_msg is {fn, arg, link}. The caller's context (our Stamp and the consumer it is for)
// would sit behind arg in memory the caller allocated; it is placed inline here to spare that
// allocation, which only helps this mode. The object still rounds to the same mempool element.
struct SpdkMsg {
  void (*fn)(void* arg);
  void* arg;
  SpdkMsg* link;  // SLIST_ENTRY of the consumer's cache (a vector here; unused)
  ConsumerSink* sink;
  Stamp stamp;
};

void run_stamped(void* arg) {
  auto* msg = static_cast<SpdkMsg*>(arg);
  msg->sink->execute(msg->stamp);
}

std::atomic<unsigned> g_object_serial{0};  // unique DPDK object names within the process

class SpdkMode;

class SpdkProducer final : public ProducerHandle {
 public:
  explicit SpdkProducer(SpdkMode& mode) : mode_(mode) {}
  ~SpdkProducer() override;
  bool send(int consumer, const Stamp& stamp, const std::atomic<bool>& stop) override;

 private:
  SpdkMode& mode_;
  std::uint64_t pool_empty_retries_ = 0;
  std::uint64_t ring_full_retries_ = 0;
};

class SpdkMode final : public Mode {
 public:
  explicit SpdkMode(bool rts) : rts_(rts) {}
  ~SpdkMode() override { (void)stop(); }

  Status start(const ModeConfig& config) override {
    NVMUX_RETURN_IF_ERROR(ensure_dpdk_eal());
    sinks_ = config.sinks;
    unsigned serial = g_object_serial.fetch_add(1, std::memory_order_relaxed);  // a name, no ordering
    std::string pool_name = fmt::format("msgpool_{}_{}", getpid(), serial);
    if (!rts_) {
      pool_ = rte_mempool_create(pool_name.c_str(), kSpdkMsgPoolObjects, sizeof(SpdkMsg), /*cache_size=*/0,
                                 /*private_data_size=*/0, nullptr, nullptr, nullptr, nullptr, SOCKET_ID_ANY,
                                 RTE_MEMPOOL_F_NO_IOVA_CONTIG);
      if (pool_ == nullptr) return dpdk_error("rte_mempool_create", pool_name);
    } else {
      pool_ = rte_mempool_create_empty(pool_name.c_str(), kSpdkMsgPoolObjects, sizeof(SpdkMsg), 0, 0, SOCKET_ID_ANY,
                                       RTE_MEMPOOL_F_NO_IOVA_CONTIG);
      if (pool_ == nullptr) return dpdk_error("rte_mempool_create_empty", pool_name);
      if (int rc = rte_mempool_set_ops_byname(pool_, "ring_mt_rts", nullptr); rc != 0) {
        return Status::error(StatusCode::kUnavailable, "rte_mempool_set_ops_byname(ring_mt_rts): {}",
                             rte_strerror(-rc));
      }
      if (int rc = rte_mempool_populate_default(pool_); rc < 0) {
        return Status::error(StatusCode::kUnavailable, "rte_mempool_populate_default({}): {}", pool_name,
                             rte_strerror(-rc));
      }
    }
    unsigned flags = RING_F_EXACT_SZ | RING_F_SC_DEQ | (rts_ ? RING_F_MP_RTS_ENQ : 0u);
    for (std::size_t c = 0; c < sinks_.size(); ++c) {
      std::string ring_name = fmt::format("msgring_{}_{}_{}", getpid(), serial, c);
      rte_ring* ring = rte_ring_create(ring_name.c_str(), kSpdkThreadRingSlots, SOCKET_ID_ANY, flags);
      if (ring == nullptr) return dpdk_error("rte_ring_create", ring_name);
      rings_.push_back(ring);
      caches_.emplace_back().reserve(kSpdkMsgCacheMsgs);
    }
    consumers_.start(static_cast<int>(sinks_.size()), &SpdkMode::poll_trampoline, this);
    return {};
  }

  std::unique_ptr<ProducerHandle> attach_producer(int) override { return std::make_unique<SpdkProducer>(*this); }

  Status stop() override {
    consumers_.stop();
    // Everything still queued goes back to the pool, then the pool and rings are freed: the next
    // point starts from a fresh pool, as a fresh SPDK application would.
    for (std::size_t c = 0; c < rings_.size(); ++c) {
      void* msg = nullptr;
      while (rte_ring_dequeue(rings_[c], &msg) == 0) rte_mempool_put(pool_, msg);
      for (SpdkMsg* cached : caches_[c]) rte_mempool_put(pool_, cached);
      caches_[c].clear();
      rte_ring_free(rings_[c]);
    }
    rings_.clear();
    caches_.clear();
    if (pool_ != nullptr) {
      rte_mempool_free(pool_);
      pool_ = nullptr;
    }
    return {};
  }

  std::vector<std::pair<std::string, std::uint64_t>> counters() const override {
    return {{"pool_empty_retries", pool_empty_retries_.load(std::memory_order_relaxed)},
            {"ring_full_retries", ring_full_retries_.load(std::memory_order_relaxed)}};
  }

  // spdk_thread_send_msg() for a sender that is not an spdk_thread: 0, -ENOMEM or -EIO.
  int send_msg(int consumer, const Stamp& stamp) {
    void* obj = nullptr;
    if (rte_mempool_get(pool_, &obj) != 0) return -ENOMEM;
    auto* msg = static_cast<SpdkMsg*>(obj);
    msg->fn = &run_stamped;
    msg->arg = msg;
    msg->sink = sinks_[static_cast<std::size_t>(consumer)];
    msg->stamp = stamp;
    // spdk_ring_enqueue() is rte_ring_enqueue_bulk(); the ring's flags pick MP or RTS.
    if (rte_ring_enqueue_bulk(rings_[static_cast<std::size_t>(consumer)], &obj, 1, nullptr) != 1) {
      rte_mempool_put(pool_, obj);
      return -EIO;
    }
    return 0;
  }

  void add_retries(std::uint64_t pool_empty, std::uint64_t ring_full) {
    // Statistics only; read after the producers are joined.
    pool_empty_retries_.fetch_add(pool_empty, std::memory_order_relaxed);
    ring_full_retries_.fetch_add(ring_full, std::memory_order_relaxed);
  }

 private:
  static std::size_t poll_trampoline(void* self, int consumer) {
    return static_cast<SpdkMode*>(self)->run_batch(static_cast<std::size_t>(consumer));
  }

  // msg_queue_run_batch(): consumer thread c only.
  std::size_t run_batch(std::size_t c) {
    void* messages[kSpdkMsgBatchMsgs];
    unsigned count = rte_ring_dequeue_burst(rings_[c], messages, kSpdkMsgBatchMsgs, nullptr);
    for (unsigned i = 0; i < count; ++i) {
      auto* msg = static_cast<SpdkMsg*>(messages[i]);
      NVMUX_ASSERT(msg != nullptr, "consumer {} dequeued a null message", c);
      msg->fn(msg->arg);
      if (caches_[c].size() < kSpdkMsgCacheMsgs) {
        caches_[c].push_back(msg);  // SPDK keeps the hot ones for its own sends
      } else {
        rte_mempool_put(pool_, msg);
      }
    }
    return count;
  }

  static Status dpdk_error(const char* call, const std::string& name) {
    return Status::error(StatusCode::kUnavailable, "{}({}) failed: {} (rte_errno {})", call, name,
                         rte_strerror(rte_errno), rte_errno);
  }

  bool rts_;
  std::vector<ConsumerSink*> sinks_;
  rte_mempool* pool_ = nullptr;
  std::vector<rte_ring*> rings_;
  std::vector<std::vector<SpdkMsg*>> caches_;  // per consumer: SPDK's thread->msg_cache
  std::atomic<std::uint64_t> pool_empty_retries_{0};
  std::atomic<std::uint64_t> ring_full_retries_{0};
  PolledConsumers consumers_;
};

SpdkProducer::~SpdkProducer() { mode_.add_retries(pool_empty_retries_, ring_full_retries_); }

bool SpdkProducer::send(int consumer, const Stamp& stamp, const std::atomic<bool>& stop) {
  Backoff backoff;
  for (;;) {
    int rc = mode_.send_msg(consumer, stamp);
    if (rc == 0) return true;
    (rc == -ENOMEM ? pool_empty_retries_ : ring_full_retries_)++;
    if (stop.load(std::memory_order_relaxed)) return false;  // a flag; nothing is published with it
    backoff.pause();
  }
}

}  // namespace

std::unique_ptr<Mode> make_spdk_mode(bool relaxed_tail_sync) { return std::make_unique<SpdkMode>(relaxed_tail_sync); }

}  // namespace nvmux::msgbench
