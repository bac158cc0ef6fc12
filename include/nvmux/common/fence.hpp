#pragma once
// full_fence(): the store-load barrier of the wake-up protocols (sleep flag vs. published slot,
// producer_waiting vs. head; the service's owner_idle and client_waiting across processes).

#include <atomic>
#include <cstdint>

namespace nvmux {

inline void full_fence() {
#if defined(NVMUX_TSAN)
  // GCC refuses std::atomic_thread_fence under -fsanitize=thread (TSan does not model fences). A
  // locked read-modify-write is the same full barrier on x86; on a thread-private word it adds no
  // happens-before edge that could hide a real race from TSan.
  static thread_local std::atomic<std::uint64_t> barrier_word{0};
  barrier_word.fetch_add(0, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace nvmux
