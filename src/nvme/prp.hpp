#pragma once
// PRP walking, shared by every backend that plays the device side (emu, uring).
//
// walk_prps() follows PRP1 / PRP2 / PRP lists (chained through the last entry of each list page)
// for a transfer of `bytes` and calls segment(host_pointer, length) for each contiguous piece, in
// order. It returns 0 when the whole transfer was described, or the NVMe status a controller
// reports: Invalid PRP Offset for misaligned entries, Data Transfer Error for an address outside
// device-reachable memory. No host pointer is produced for anything outside the arena.
//
// Threading: pure function of its arguments (DmaArena::translate is lock-free).

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "nvmux/nvme/dma.hpp"
#include "nvmux/nvme/spec.hpp"

namespace nvmux::nvme {

template <class Segment>
std::uint16_t walk_prps(const DmaArena& arena, std::uint64_t prp1, std::uint64_t prp2, std::size_t bytes,
                        Segment&& segment) {
  constexpr std::uint16_t kOk = 0;
  // Neither error goes away on a retry: Do Not Retry is set.
  const std::uint16_t invalid_offset = make_status(GenericStatus::kInvalidPrpOffset, /*dnr=*/true);
  const std::uint16_t transfer_error = make_status(GenericStatus::kDataTransferError, /*dnr=*/true);
  auto piece = [&](std::uint64_t iova, std::size_t len) -> bool {
    std::byte* host = arena.translate(iova, len);
    if (host == nullptr) return false;
    segment(host, len);
    return true;
  };
  if (bytes == 0) return kOk;
  if (prp1 % 4 != 0) return invalid_offset;
  std::size_t first = std::min<std::size_t>(kPageBytes - (prp1 & (kPageBytes - 1)), bytes);
  if (!piece(prp1, first)) return transfer_error;
  std::size_t remaining = bytes - first;
  if (remaining == 0) return kOk;
  if (remaining <= kPageBytes) {
    if (prp2 % kPageBytes != 0) return invalid_offset;
    return piece(prp2, remaining) ? kOk : transfer_error;
  }
  std::size_t entries = (remaining + kPageBytes - 1) / kPageBytes;
  std::uint64_t list_iova = prp2;
  while (entries > 0) {
    if (list_iova % 8 != 0) return invalid_offset;
    std::size_t in_page = (kPageBytes - (list_iova & (kPageBytes - 1))) / 8;
    // When more entries remain than fit in this list page, its last entry points to the next page.
    bool chained = entries > in_page;
    std::size_t use = chained ? in_page - 1 : entries;
    const auto* list =
        reinterpret_cast<const std::uint64_t*>(arena.translate(list_iova, (use + (chained ? 1 : 0)) * 8));
    if (list == nullptr) return transfer_error;
    for (std::size_t i = 0; i < use; ++i) {
      if (list[i] % kPageBytes != 0) return invalid_offset;
      std::size_t len = std::min<std::size_t>(kPageBytes, remaining);
      if (!piece(list[i], len)) return transfer_error;
      remaining -= len;
    }
    entries -= use;
    if (chained) list_iova = list[in_page - 1];
  }
  return kOk;
}

}  // namespace nvmux::nvme
