#pragma once
// The cache-line size nvmux pads and aligns to, for in-process and shared-memory layouts alike.

#include <cstddef>

namespace nvmux {

// Fixed, not std::hardware_destructive_interference_size: shared-memory layouts must not depend on
// compiler flags. 128 also covers the adjacent-line prefetcher on x86.
inline constexpr std::size_t kCacheLineBytes = 128;

}  // namespace nvmux
