#pragma once
// Statistics counters that one thread writes and any thread reads.
//
// Threading: single writer, many readers. single_writer_add() may only be called by the counter's
// one writer (or by callers its owner serialises); readers load the atomic with
// memory_order_relaxed on any thread and see a slightly stale but never torn value.

#include <atomic>
#include <cstdint>

namespace nvmux {

// Adds n to a counter only the calling thread writes: a relaxed load and store rather than
// fetch_add, since with one writer no update can be lost and this avoids a locked instruction.
inline void single_writer_add(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) {
  // Relaxed: readers want a recent value, not ordering with anything else.
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace nvmux
