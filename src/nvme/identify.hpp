#pragma once
// Identify data as nvmux's own controllers report it (the emu device, and the uring backend which
// answers Identify itself): each builder fills one 4096-byte page, zeroing it first.
//
// Threading: plain functions over caller-owned memory.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "nvmux/nvme/spec.hpp"

namespace nvmux::nvme {

using IdentifyPage = std::span<std::byte, kPageBytes>;

// The fields of Identify Controller a backend chooses; everything else is fixed (SQES/CQES for
// 64/16-byte entries, a volatile write cache present) or zero.
struct IdentifyControllerFields {
  std::uint16_t vendor_id = 0;
  std::uint16_t subsystem_vendor_id = 0;
  std::string_view serial;               // space-padded or cut to 20 characters
  std::string_view model;                // 40
  std::string_view firmware;             // 8
  std::uint32_t max_transfer_bytes = 0;  // a power of two pages; 0 = no limit (MDTS 0)
  std::uint16_t controller_id = 0;
  std::uint32_t version = 0;       // VS encoding
  std::uint16_t max_commands = 0;  // MAXCMD; 0 = not reported
  std::uint32_t namespace_count = 0;
  std::uint16_t oncs = 0;
};
void build_identify_controller(IdentifyPage page, const IdentifyControllerFields& fields);

// One LBA format (0) of block_size bytes; deallocated blocks read as zeroes (DLFEAT 1).
void build_identify_namespace(IdentifyPage page, std::uint64_t blocks, std::uint32_t block_size);

// The active namespace ids above start_nsid among 1..namespace_count (at most 1024); an empty list
// for start_nsid FFFFFFFEh and FFFFFFFFh.
void build_active_namespace_list(IdentifyPage page, std::uint32_t start_nsid, std::uint32_t namespace_count);

}  // namespace nvmux::nvme
