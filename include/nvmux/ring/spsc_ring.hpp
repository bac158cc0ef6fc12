#pragma once
// The SPSC ring: nvmux's one primitive. Every (producer, owner) pair talks through one of these,
// in-process for messages and in shared memory between processes for I/O.
//
// One algorithm, two placements:
//
//   SpscRing<T>          owns its memory; holds the producer and consumer endpoints side by side.
//   create_ring<T>()     lays the shared state out in caller-provided memory (a memfd mapping) and
//   attach_ring<T>()     validates it from another process; RingProducer<T> / RingConsumer<T> are
//                        the endpoints each side keeps in its own private memory.
//
// Threading contract: a ring is safe for exactly one producer thread and one consumer thread.
// Producer-side calls (try_push, try_emplace, push_bulk) must all come from the same thread at a
// time; consumer-side calls (try_pop, pop_bulk, consume) likewise. Neither side blocks, allocates or
// does a read-modify-write on shared memory: each side stores only its own index.
//
// Memory layout of the shared state (offsets from the start of the region):
//
//   0    RingHeader   magic, layout version, element size, capacity, slot offset (read-only)
//   128  tail         next index the producer fills    (written by the producer only)
//   256  head         next index the consumer reads    (written by the consumer only)
//   384  slots        capacity * sizeof(T) bytes
//
// Indices are free-running 64-bit counters; slot = index & (capacity - 1). Each side caches the
// other side's index privately and re-reads the shared one only when its cache says full/empty, so
// in steady state each side touches the other's cache line once per lap, not once per element.
//
// Trust: a consumer placed in shared memory may read a tail written by a process it does not trust
// (the daemon reading a client's submission ring), and a producer may read such a head. Built with
// Peer::kUntrusted, an endpoint checks every index it loads (it must lie between the last value
// seen and what is physically possible) and, on an impossible value, stops and reports
// kCorruption through status() instead of reading or writing outside the ring. With
// Peer::kTrusted (the default, and always for in-process rings) the same check is an
// always-on assertion: an impossible index there is a bug in nvmux.

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

#include "nvmux/common/assert.hpp"
#include "nvmux/common/cache_line.hpp"
#include "nvmux/common/status.hpp"

namespace nvmux {

inline constexpr std::uint64_t kRingMagic = 0x474e4952584d564eull;  // "NVMXRING" in memory order
inline constexpr std::uint32_t kRingLayoutVersion = 1;
inline constexpr std::uint64_t kMaxRingCapacity = std::uint64_t{1} << 30;  // slots

// Header of a ring's shared state; written once by create_ring, read-only afterwards.
struct alignas(kCacheLineBytes) RingHeader {
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t elem_size;
  std::uint64_t capacity;
  std::uint64_t slots_offset;  // from the start of the region
};

// One index alone on its cache line.
struct alignas(kCacheLineBytes) RingIndexLine {
  std::atomic<std::uint64_t> value;
};

struct RingSharedState {
  RingHeader header;
  RingIndexLine tail;  // producer writes, consumer reads
  RingIndexLine head;  // consumer writes, producer reads
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "ring indices must be lock-free to live in shm");
static_assert(sizeof(RingHeader) == kCacheLineBytes);
static_assert(sizeof(RingIndexLine) == kCacheLineBytes);
static_assert(sizeof(RingSharedState) == 3 * kCacheLineBytes);
static_assert(offsetof(RingHeader, magic) == 0);
static_assert(offsetof(RingHeader, layout_version) == 8);
static_assert(offsetof(RingHeader, elem_size) == 12);
static_assert(offsetof(RingHeader, capacity) == 16);
static_assert(offsetof(RingHeader, slots_offset) == 24);
static_assert(offsetof(RingSharedState, tail) == 128);
static_assert(offsetof(RingSharedState, head) == 256);

inline constexpr std::size_t kRingSlotsOffset = sizeof(RingSharedState);

// Whether an endpoint may believe the indices the other side writes.
enum class Peer { kTrusted, kUntrusted };

// Capacity must be a power of two in [1, kMaxRingCapacity].
inline Status validate_ring_capacity(std::uint64_t capacity) {
  if (capacity == 0 || capacity > kMaxRingCapacity || !std::has_single_bit(capacity)) {
    return Status::error(StatusCode::kInvalidArgument, "ring capacity {} is not a power of two between 1 and {}",
                         capacity, kMaxRingCapacity);
  }
  return {};
}

// Bytes of shared memory a ring of `capacity` elements of `elem_size` bytes needs.
inline std::size_t ring_region_bytes(std::uint64_t capacity, std::size_t elem_size) {
  return kRingSlotsOffset + static_cast<std::size_t>(capacity) * elem_size;
}

// A validated view of a ring's shared state. Plain pointers into the region; valid while the
// region stays mapped.
template <class T>
struct RingRegion {
  RingSharedState* state = nullptr;
  std::byte* slots = nullptr;
  std::uint64_t capacity = 0;
};

namespace detail {

inline Status check_region(std::span<std::byte> region) {
  if (reinterpret_cast<std::uintptr_t>(region.data()) % kCacheLineBytes != 0) {
    return Status::error(StatusCode::kInvalidArgument, "ring region at {} is not {}-byte aligned",
                         static_cast<const void*>(region.data()), kCacheLineBytes);
  }
  return {};
}

}  // namespace detail

// Lays a new, empty ring out in `region`. `start_index` is the first index value (tests start near
// 2^64 to cross the counters' wrap). Errors (kInvalidArgument): capacity not a power of two in
// range, region misaligned or smaller than ring_region_bytes().
template <class T>
Result<RingRegion<T>> create_ring(std::span<std::byte> region, std::uint64_t capacity, std::uint64_t start_index = 0) {
  static_assert(alignof(T) <= kCacheLineBytes, "ring elements may be at most cache-line aligned");
  NVMUX_RETURN_IF_ERROR(validate_ring_capacity(capacity));
  NVMUX_RETURN_IF_ERROR(detail::check_region(region));
  std::size_t need = ring_region_bytes(capacity, sizeof(T));
  if (region.size() < need) {
    return Status::error(StatusCode::kInvalidArgument, "ring of {} x {}-byte elements needs {} bytes, region has {}",
                         capacity, sizeof(T), need, region.size());
  }
  auto* state = new (region.data()) RingSharedState{};
  state->header.layout_version = kRingLayoutVersion;
  state->header.elem_size = static_cast<std::uint32_t>(sizeof(T));
  state->header.capacity = capacity;
  state->header.slots_offset = kRingSlotsOffset;
  state->tail.value.store(start_index, std::memory_order_relaxed);
  state->head.value.store(start_index, std::memory_order_relaxed);
  // Magic last, released: an attacher that sees it sees a complete header.
  std::atomic_ref<std::uint64_t>(state->header.magic).store(kRingMagic, std::memory_order_release);
  return RingRegion<T>{state, region.data() + kRingSlotsOffset, capacity};
}

// Validates a ring another process laid out in `region` and returns a view of it. The header is
// copied once into private memory, checked there, and never read again: a peer that rewrites it
// after attach changes nothing on this side. Only trivially copyable element types may cross a
// process boundary. `expected_capacity` 0 accepts any valid
// capacity. Errors, each with its own message:
//   kInvalidArgument  region misaligned, or smaller than the header
//   kCorruption       wrong magic, wrong layout version, wrong element size, capacity invalid or
//                     not the expected one, slot offset wrong, region smaller than the ring
template <class T>
Result<RingRegion<T>> attach_ring(std::span<std::byte> region, std::uint64_t expected_capacity = 0) {
  static_assert(std::is_trivially_copyable_v<T>, "only trivially copyable values may live in shared memory");
  static_assert(alignof(T) <= kCacheLineBytes, "ring elements may be at most cache-line aligned");
  NVMUX_RETURN_IF_ERROR(detail::check_region(region));
  if (region.size() < kRingSlotsOffset) {
    return Status::error(StatusCode::kInvalidArgument, "ring region of {} bytes is smaller than the {}-byte header",
                         region.size(), kRingSlotsOffset);
  }
  auto* state = reinterpret_cast<RingSharedState*>(region.data());
  // Acquire the magic (create_ring releases it last), then copy the whole header into private
  // memory and check and use only the copy: the peer may rewrite the shared header at any time.
  std::uint64_t magic = std::atomic_ref<const std::uint64_t>(state->header.magic).load(std::memory_order_acquire);
  RingHeader h;
  std::memcpy(static_cast<void*>(&h), static_cast<const void*>(&state->header), sizeof(h));
  if (magic != kRingMagic || h.magic != kRingMagic) {
    return Status::error(StatusCode::kCorruption, "ring header magic is {:#x}, expected {:#x}",
                         magic != kRingMagic ? magic : h.magic, kRingMagic);
  }
  if (h.layout_version != kRingLayoutVersion) {
    return Status::error(StatusCode::kCorruption, "ring layout version is {}, this build reads version {}",
                         h.layout_version, kRingLayoutVersion);
  }
  if (h.elem_size != sizeof(T)) {
    return Status::error(StatusCode::kCorruption, "ring element size is {} bytes, this side expects {}", h.elem_size,
                         sizeof(T));
  }
  if (Status s = validate_ring_capacity(h.capacity); !s.ok()) {
    return Status(StatusCode::kCorruption, "ring header: " + s.message());
  }
  if (expected_capacity != 0 && h.capacity != expected_capacity) {
    return Status::error(StatusCode::kCorruption, "ring capacity is {}, expected {}", h.capacity, expected_capacity);
  }
  if (h.slots_offset != kRingSlotsOffset) {
    return Status::error(StatusCode::kCorruption, "ring slot offset is {}, expected {}", h.slots_offset,
                         kRingSlotsOffset);
  }
  std::size_t need = ring_region_bytes(h.capacity, sizeof(T));
  if (region.size() < need) {
    return Status::error(StatusCode::kCorruption, "ring of {} x {}-byte elements needs {} bytes, region has {}",
                         h.capacity, sizeof(T), need, region.size());
  }
  return RingRegion<T>{state, region.data() + kRingSlotsOffset, h.capacity};
}

namespace detail {

template <class T>
class RingEndpoint {
 public:
  // True once an impossible index was seen (untrusted peer); the endpoint then refuses all work.
  bool failed() const { return !status_.ok(); }
  // ok, or kCorruption saying which index was impossible and why.
  const Status& status() const { return status_; }
  std::uint64_t capacity() const { return capacity_; }

 protected:
  RingEndpoint() = default;
  RingEndpoint(RingRegion<T> region, Peer peer)
      : state_(region.state), slots_(region.slots), capacity_(region.capacity), mask_(region.capacity - 1),
        untrusted_(peer == Peer::kUntrusted) {}

  T* slot(std::uint64_t index) const {
    return std::launder(reinterpret_cast<T*>(slots_ + (index & mask_) * sizeof(T)));
  }

  // An index loaded from the peer failed validation: report (untrusted) or crash (trusted).
  template <class... Args>
  void corrupted(fmt::format_string<Args...> format, Args&&... args) {
    std::string what = fmt::format(format, std::forward<Args>(args)...);
    NVMUX_ASSERT(untrusted_, "trusted ring peer wrote an impossible index: {}", what);
    status_ = Status(StatusCode::kCorruption, std::move(what));
  }

  RingSharedState* state_ = nullptr;
  std::byte* slots_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t mask_ = 0;
  bool untrusted_ = false;
  Status status_;
};

}  // namespace detail

// The producer endpoint: keep it in the producer's private memory.
// Single producer: all calls from one thread at a time. Never blocks.
template <class T>
class RingProducer : public detail::RingEndpoint<T> {
  using Base = detail::RingEndpoint<T>;

 public:
  RingProducer() = default;
  explicit RingProducer(RingRegion<T> region, Peer peer = Peer::kTrusted)
      : Base(region, peer),
        // The producer owns tail: its private copy is the truth. Relaxed: no one else writes it.
        tail_(region.state->tail.value.load(std::memory_order_relaxed)),
        cached_head_(region.state->head.value.load(std::memory_order_acquire)) {
    if (tail_ - cached_head_ > this->capacity_) {
      this->corrupted("at attach, tail {} and head {} are more than {} apart", tail_, cached_head_, this->capacity_);
    }
  }

  // Copies `value` into the next slot. False when the ring is full (or failed).
  bool try_push(const T& value) { return try_emplace(value); }

  // Constructs a T in the next slot from `args`. False when the ring is full (or failed).
  template <class... Args>
  bool try_emplace(Args&&... args) {
    if (tail_ - cached_head_ == this->capacity_ && free_after_refresh() == 0) return false;
    std::construct_at(this->slot(tail_), std::forward<Args>(args)...);
    ++tail_;
    this->state_->tail.value.store(tail_, std::memory_order_release);  // publish the slot before the index
    return true;
  }

  // Copies as many of `items` as fit, in order, and publishes them with one index store.
  // Returns how many were pushed (0 when full or failed).
  std::size_t push_bulk(std::span<const T> items) {
    std::uint64_t free = this->capacity_ - (tail_ - cached_head_);
    if (free < items.size()) free = free_after_refresh();
    std::size_t n = items.size() < free ? items.size() : static_cast<std::size_t>(free);
    if (n == 0) return 0;
    std::uint64_t first = tail_ & this->mask_;
    std::size_t before_wrap = static_cast<std::size_t>(this->capacity_ - first);
    std::size_t chunk = n < before_wrap ? n : before_wrap;
    copy_in(this->slot(tail_), items.data(), chunk);
    copy_in(this->slot(tail_ + chunk), items.data() + chunk, n - chunk);
    tail_ += n;
    this->state_->tail.value.store(tail_, std::memory_order_release);  // publish the slots before the index
    return n;
  }

  // Free slots as of the last look at head (may under-count; never over-counts).
  std::uint64_t free_approx() const { return this->capacity_ - (tail_ - cached_head_); }
  // Re-reads head and returns the free slots now.
  std::uint64_t refresh_free() { return free_after_refresh(); }

 private:
  static void copy_in(T* dst, const T* src, std::size_t n) {
    if constexpr (std::is_trivially_copyable_v<T>) {
      if (n != 0) std::memcpy(static_cast<void*>(dst), src, n * sizeof(T));
    } else {
      for (std::size_t i = 0; i < n; ++i) std::construct_at(dst + i, src[i]);
    }
  }

  // Reloads the consumer's head, validates it, and returns the free slot count.
  std::uint64_t free_after_refresh() {
    if (this->failed()) return 0;
    // Acquire: the consumer finished reading a slot before it released head past it.
    std::uint64_t head = this->state_->head.value.load(std::memory_order_acquire);
    // head may only move forward, and never past what we have published.
    if (head - cached_head_ > tail_ - cached_head_) {
      this->corrupted("consumer head moved from {} to {}, outside [{}, tail {}]", cached_head_, head, cached_head_,
                      tail_);
      return 0;
    }
    cached_head_ = head;
    return this->capacity_ - (tail_ - head);
  }

  std::uint64_t tail_ = 0;         // our own index, private copy of what we published
  std::uint64_t cached_head_ = 0;  // the consumer's index as last seen
};

// The consumer endpoint: keep it in the consumer's private memory.
// Single consumer: all calls from one thread at a time. Never blocks.
template <class T>
class RingConsumer : public detail::RingEndpoint<T> {
  using Base = detail::RingEndpoint<T>;

 public:
  RingConsumer() = default;
  explicit RingConsumer(RingRegion<T> region, Peer peer = Peer::kTrusted)
      : Base(region, peer),
        // The consumer owns head: its private copy is the truth.
        head_(region.state->head.value.load(std::memory_order_relaxed)), cached_tail_(head_) {}

  // Moves the oldest element into `out`. False when the ring is empty (or failed).
  bool try_pop(T& out) {
    if (cached_tail_ == head_ && available_after_refresh() == 0) return false;
    T* s = this->slot(head_);
    if constexpr (std::is_trivially_copyable_v<T>) {
      std::memcpy(static_cast<void*>(&out), static_cast<const void*>(s), sizeof(T));  // one read of the slot
    } else {
      out = std::move(*s);
      std::destroy_at(s);
    }
    ++head_;
    this->state_->head.value.store(head_, std::memory_order_release);  // done reading before the slot is reused
    return true;
  }

  // Moves up to out.size() elements, oldest first, and frees them with one index store.
  std::size_t pop_bulk(std::span<T> out) {
    std::size_t i = 0;
    consume([&out, &i](T& v) { out[i++] = std::move(v); }, out.size());
    return i;
  }

  // Calls visit(T&) on up to `max` elements, oldest first, then frees them all with one index
  // store. Returns how many were visited. `visit` must not call back into this consumer.
  // A trusted producer's elements are visited in place. An untrusted producer's are first copied
  // into private memory and visit() gets the copy: the producer may rewrite a slot at any moment,
  // so a value checked must be the value used.
  template <class F>
  std::size_t consume(F&& visit, std::size_t max) {
    std::uint64_t avail = cached_tail_ - head_;
    if (avail < max) avail = available_after_refresh();
    std::size_t n = avail < max ? static_cast<std::size_t>(avail) : max;
    // The producer wrote these slots on another core: ask for all of them at once, so their
    // transfers overlap instead of each visit waiting for its own (a visit that runs code fills the
    // CPU's window before it would reach the next slot by itself).
    for (std::size_t i = 1; i < n; ++i) __builtin_prefetch(this->slot(head_ + i), 0 /* read */, 3 /* keep */);
    for (std::size_t i = 0; i < n; ++i) {
      T* s = this->slot(head_ + i);
      if constexpr (std::is_trivially_copyable_v<T>) {
        if (this->untrusted_) {
          alignas(T) std::byte copy[sizeof(T)];  // private; memcpy gives the T its lifetime
          std::memcpy(copy, static_cast<const void*>(s), sizeof(T));
          visit(*std::launder(reinterpret_cast<T*>(copy)));
          continue;
        }
      }
      visit(*s);
      std::destroy_at(s);
    }
    if (n != 0) {
      head_ += n;
      this->state_->head.value.store(head_, std::memory_order_release);  // done reading before slots are reused
    }
    return n;
  }

  // Elements ready as of the last look at tail (may under-count; never over-counts).
  std::uint64_t available_approx() const { return cached_tail_ - head_; }
  // Re-reads tail and returns the elements ready now.
  std::uint64_t refresh_available() { return available_after_refresh(); }

 private:
  std::uint64_t available_after_refresh() {
    if (this->failed()) return 0;
    // Acquire: pairs with the producer's release so the slot contents are visible.
    std::uint64_t tail = this->state_->tail.value.load(std::memory_order_acquire);
    // tail may only move forward, and never more than a full ring ahead of head.
    if (tail - cached_tail_ > head_ + this->capacity_ - cached_tail_) {
      this->corrupted("producer tail moved from {} to {}, outside [{}, head {} + capacity {}]", cached_tail_, tail,
                      cached_tail_, head_, this->capacity_);
      return 0;
    }
    cached_tail_ = tail;
    return tail - head_;
  }

  std::uint64_t head_ = 0;         // our own index, private copy of what we published
  std::uint64_t cached_tail_ = 0;  // the producer's index as last seen
};

// An in-process SPSC ring that owns its memory. See the contract at the top of this file: one
// producer thread, one consumer thread; size_approx() and capacity() may be called from any
// thread. Any T that is nothrow-move-constructible works in-process; elements left in the ring at
// destruction are destroyed.
template <class T>
class SpscRing {
 public:
  // Returns a ring of `capacity` slots, or kInvalidArgument when capacity is not a power of two in
  // [1, kMaxRingCapacity].
  static Result<std::unique_ptr<SpscRing>> create(std::uint64_t capacity, std::uint64_t start_index = 0) {
    NVMUX_RETURN_IF_ERROR(validate_ring_capacity(capacity));
    return std::make_unique<SpscRing>(capacity, start_index);
  }

  // Crashes with a clear message when capacity is invalid (use create() for capacities that come
  // from input). `start_index` is for tests that cross the 64-bit wrap.
  explicit SpscRing(std::uint64_t capacity, std::uint64_t start_index = 0) {
    Status valid = validate_ring_capacity(capacity);
    NVMUX_ASSERT(valid.ok(), "SpscRing: {}", valid.message());
    bytes_ = ring_region_bytes(capacity, sizeof(T));
    memory_ = static_cast<std::byte*>(::operator new (bytes_, std::align_val_t{kCacheLineBytes}));
    auto region = create_ring<T>(std::span<std::byte>(memory_, bytes_), capacity, start_index);
    NVMUX_ASSERT(region.ok(), "SpscRing: {}", region.status().to_string());
    producer_ = RingProducer<T>(*region);
    consumer_ = RingConsumer<T>(*region);
    state_ = region->state;
  }

  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  ~SpscRing() {
    if constexpr (!std::is_trivially_destructible_v<T>) {
      consumer_.consume([](T&) {}, static_cast<std::size_t>(capacity()));
    }
    ::operator delete (memory_, std::align_val_t{kCacheLineBytes});
  }

  // Producer side.
  bool try_push(const T& value) { return producer_.try_push(value); }
  template <class... Args>
  bool try_emplace(Args&&... args) {
    return producer_.try_emplace(std::forward<Args>(args)...);
  }
  std::size_t push_bulk(std::span<const T> items) { return producer_.push_bulk(items); }

  // Consumer side.
  bool try_pop(T& out) { return consumer_.try_pop(out); }
  std::size_t pop_bulk(std::span<T> out) { return consumer_.pop_bulk(out); }
  template <class F>
  std::size_t consume(F&& visit, std::size_t max) {
    return consumer_.consume(std::forward<F>(visit), max);
  }

  // Any thread.
  std::uint64_t capacity() const { return producer_.capacity(); }
  // Elements in the ring at some recent moment; exact when neither side is active.
  std::uint64_t size_approx() const {
    // head first: tail read after it is >= it, so the difference never underflows.
    std::uint64_t head = state_->head.value.load(std::memory_order_acquire);
    std::uint64_t tail = state_->tail.value.load(std::memory_order_acquire);
    return tail - head;
  }
  bool empty_approx() const { return size_approx() == 0; }

  // The endpoints, for code that wants the batch helpers (free_approx, refresh_available...).
  RingProducer<T>& producer() { return producer_; }
  RingConsumer<T>& consumer() { return consumer_; }

 private:
  alignas(kCacheLineBytes) RingProducer<T> producer_;  // producer thread's line
  alignas(kCacheLineBytes) RingConsumer<T> consumer_;  // consumer thread's line
  alignas(kCacheLineBytes) RingSharedState* state_ = nullptr;
  std::byte* memory_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace nvmux
