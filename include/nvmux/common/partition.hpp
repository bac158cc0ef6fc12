#pragma once
// --partition K/N: the K-th (from 0) of N equal LBA ranges of a namespace, so that N processes
// (nvmux-perf, nvmux-verify) can write and verify one namespace side by side without touching each
// other's blocks. Partition K covers [K * floor(blocks / N), (K + 1) * floor(blocks / N)) whatever
// the I/O size, so tools with different I/O sizes still never overlap; a tool then uses the whole
// I/O units inside that range. Pure functions: any thread.

#include <cstdint>
#include <string_view>

#include "nvmux/common/status.hpp"

namespace nvmux {

inline constexpr std::uint32_t kMaxPartitions = 1024;

struct Partition {
  std::uint32_t index = 0;  // K
  std::uint32_t count = 1;  // N
};

// "K/N" with 0 <= K < N <= kMaxPartitions. Errors: kInvalidArgument naming `flag` and the text.
Result<Partition> parse_partition(std::string_view text, std::string_view flag = "--partition");

// The I/O units of `unit_blocks` blocks wholly inside partition `p` of a namespace of `blocks`
// blocks: units [first_unit, first_unit + units), unit u covering LBAs [u * unit_blocks, ...).
struct PartitionUnits {
  std::uint64_t first_unit = 0;
  std::uint64_t units = 0;
};
PartitionUnits partition_units(Partition p, std::uint64_t blocks, std::uint32_t unit_blocks);

}  // namespace nvmux
