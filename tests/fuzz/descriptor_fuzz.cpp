// libFuzzer target: validate_descriptor (the owner's check of every descriptor a client writes)
// against one fixed session, compared with a reference model computed in 128-bit arithmetic.
//
// Input: the first 48 bytes are an IoDescriptor (shorter inputs are zero-padded). Any input is
// valid; the target aborts when validate_descriptor's answer differs from the model's, or when it
// accepts a descriptor that reaches outside its namespace, its granted ranges or the arena.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "validate.hpp"

namespace {

using nvmux::nvme::NamespaceInfo;
using nvmux::service::Grant;
using nvmux::service::IoDescriptor;
using nvmux::service::IoOpcode;
using nvmux::service::NamespaceGrant;
using u128 = unsigned __int128;

constexpr std::uint64_t kArenaBytes = std::uint64_t{64} << 20;
constexpr std::uint32_t kMaxTransferBytes = 128 * 1024;
constexpr std::uint64_t kBigBlocks = std::uint64_t{1} << 40;

// Namespaces 1..5: a small one, a huge one, one whose last LBA is UINT64_MAX - 1, one not granted,
// one with 512-byte blocks (so a transfer can pass the limit only through the block count).
const std::vector<NamespaceInfo> kNamespaces = {
    {1, 1000, 4096}, {2, kBigBlocks, 4096}, {3, UINT64_MAX, 4096}, {4, 64, 4096}, {5, 1u << 20, 512},
};

Grant make_grant() {
  Grant g;
  g.rule = "fuzz";
  g.namespaces.push_back({1, true, {}});
  g.namespaces.push_back({2, false, {{0, 1023}, {4096, 8191}, {kBigBlocks - 16, kBigBlocks - 1}}});
  g.namespaces.push_back({3, true, {{UINT64_MAX - 100, UINT64_MAX}, {0, 0}}});
  g.namespaces.push_back({5, true, {{10, 20}, {15, 40}}});  // overlapping ranges
  return g;
}
const Grant kGrant = make_grant();

[[noreturn]] void fail(const IoDescriptor& d, const char* what, int got, int want) {
  std::fprintf(stderr,
               "descriptor_fuzz: %s: opcode %u nsid %u lba %llu blocks %u arena_offset %llu: "
               "validate_descriptor %d, model %d\n",
               what, d.opcode, d.nsid, static_cast<unsigned long long>(d.lba), d.blocks,
               static_cast<unsigned long long>(d.arena_offset), got, want);
  std::abort();
}

const NamespaceGrant* find_grant(std::uint32_t nsid) {
  for (const NamespaceGrant& g : kGrant.namespaces) {
    if (g.nsid == nsid) return &g;
  }
  return nullptr;
}

// docs/service.md "Validation", row by row, with every sum in 128 bits.
int model(const IoDescriptor& d) {
  if (d.opcode < 1 || d.opcode > 5) return -EINVAL;
  if (d.nsid == 0 || d.nsid > kNamespaces.size()) return -ENOENT;
  const NamespaceInfo& ns = kNamespaces[d.nsid - 1];
  const NamespaceGrant* g = find_grant(d.nsid);
  if (g == nullptr) return -EACCES;
  auto op = static_cast<IoOpcode>(d.opcode);
  if (op != IoOpcode::kRead && op != IoOpcode::kFlush && !g->writable) return -EACCES;
  if (op == IoOpcode::kFlush) return 0;
  if (d.blocks == 0) return -EINVAL;
  if (op == IoOpcode::kWriteZeroes && d.blocks > 65536) return -EINVAL;
  u128 end = u128{d.lba} + d.blocks;  // one past the last block
  if (end > ns.blocks) return -ERANGE;
  if (!g->lba_ranges.empty()) {
    bool inside = false;
    for (const auto& [first, last] : g->lba_ranges) inside = inside || (d.lba >= first && end - 1 <= last);
    if (!inside) return -EACCES;
  }
  if (op == IoOpcode::kRead || op == IoOpcode::kWrite) {
    u128 bytes = u128{d.blocks} * ns.block_size;
    if (bytes > kMaxTransferBytes) return -EINVAL;
    if (d.arena_offset % 4 != 0) return -EINVAL;
    if (u128{d.arena_offset} + bytes > kArenaBytes) return -EINVAL;
  }
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  IoDescriptor d{};
  std::memcpy(&d, data, size < sizeof(d) ? size : sizeof(d));
  nvmux::service::ValidationContext context{kNamespaces, kGrant, kArenaBytes, kMaxTransferBytes};
  int got = nvmux::service::validate_descriptor(d, context);
  int want = model(d);
  if (got != want) fail(d, "differs from the model", got, want);
  if (got != 0 || d.opcode == static_cast<std::uint8_t>(IoOpcode::kFlush)) return 0;
  // Accepted: the properties the daemon relies on, checked once more on their own.
  const NamespaceInfo& ns = kNamespaces[d.nsid - 1];
  u128 end = u128{d.lba} + d.blocks;
  if (d.blocks == 0 || end > ns.blocks) fail(d, "accepted outside the namespace", got, want);
  const NamespaceGrant* g = find_grant(d.nsid);
  if (g == nullptr || !Grant::range_allowed(*g, d.lba, d.blocks)) fail(d, "accepted outside the grant", got, want);
  auto op = static_cast<IoOpcode>(d.opcode);
  if (op == IoOpcode::kRead || op == IoOpcode::kWrite) {
    u128 bytes = u128{d.blocks} * ns.block_size;
    if (u128{d.arena_offset} + bytes > kArenaBytes) fail(d, "accepted outside the arena", got, want);
  }
  return 0;
}
