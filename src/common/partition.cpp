#include "nvmux/common/partition.hpp"

#include <charconv>

#include "nvmux/common/assert.hpp"

namespace nvmux {

Result<Partition> parse_partition(std::string_view text, std::string_view flag) {
  auto number = [](std::string_view s, std::uint32_t& out) {
    const char* end = s.data() + s.size();
    auto [ptr, ec] = std::from_chars(s.data(), end, out);
    return !s.empty() && ec == std::errc{} && ptr == end;
  };
  Partition p;
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos || !number(text.substr(0, slash), p.index) ||
      !number(text.substr(slash + 1), p.count) || p.count == 0 || p.count > kMaxPartitions || p.index >= p.count) {
    return Status::error(StatusCode::kInvalidArgument, "{} '{}': expected K/N with 0 <= K < N <= {}", flag, text,
                         kMaxPartitions);
  }
  return p;
}

PartitionUnits partition_units(Partition p, std::uint64_t blocks, std::uint32_t unit_blocks) {
  NVMUX_ASSERT(p.count != 0 && p.index < p.count && unit_blocks != 0, "partition {}/{}, unit of {} blocks", p.index,
               p.count, unit_blocks);
  const std::uint64_t per_partition = blocks / p.count;
  const std::uint64_t first_lba = per_partition * p.index;
  const std::uint64_t end_lba = first_lba + per_partition;
  const std::uint64_t first_unit = (first_lba + unit_blocks - 1) / unit_blocks;  // the first whole unit
  const std::uint64_t end_unit = end_lba / unit_blocks;
  return {first_unit, end_unit > first_unit ? end_unit - first_unit : 0};
}

}  // namespace nvmux
