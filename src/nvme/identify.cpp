#include "identify.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

namespace nvmux::nvme {
namespace {

// ASCII fields of Identify are space-padded, not NUL-terminated.
void put_ascii(char* field, std::size_t width, std::string_view text) {
  std::memset(field, ' ', width);
  std::copy_n(text.data(), std::min(width, text.size()), field);
}

}  // namespace

void build_identify_controller(IdentifyPage page, const IdentifyControllerFields& fields) {
  std::memset(page.data(), 0, page.size());
  auto* id = reinterpret_cast<IdentifyController*>(page.data());
  id->vid = fields.vendor_id;
  id->ssvid = fields.subsystem_vendor_id;
  put_ascii(id->sn, sizeof(id->sn), fields.serial);
  put_ascii(id->mn, sizeof(id->mn), fields.model);
  put_ascii(id->fr, sizeof(id->fr), fields.firmware);
  id->mdts = fields.max_transfer_bytes == 0
                 ? 0
                 : static_cast<std::uint8_t>(std::countr_zero(fields.max_transfer_bytes / kPageBytes));
  id->cntlid = fields.controller_id;
  id->ver = fields.version;
  id->sqes = 0x66;  // 64-byte submission entries (required and maximum 2^6)
  id->cqes = 0x44;  // 16-byte completion entries
  id->maxcmd = fields.max_commands;
  id->nn = fields.namespace_count;
  id->oncs = fields.oncs;
  id->vwc = 1;
}

void build_identify_namespace(IdentifyPage page, std::uint64_t blocks, std::uint32_t block_size) {
  std::memset(page.data(), 0, page.size());
  auto* id = reinterpret_cast<IdentifyNamespace*>(page.data());
  id->nsze = id->ncap = id->nuse = blocks;
  id->nlbaf = 0;
  id->flbas = 0;
  id->dlfeat = 1;  // deallocated blocks read as zeroes
  id->lbaf[0].lbads = static_cast<std::uint8_t>(std::countr_zero(block_size));
}

void build_active_namespace_list(IdentifyPage page, std::uint32_t start_nsid, std::uint32_t namespace_count) {
  std::memset(page.data(), 0, page.size());
  auto* list = reinterpret_cast<std::uint32_t*>(page.data());
  constexpr std::uint32_t kMaxIds = kPageBytes / sizeof(std::uint32_t);
  if (start_nsid >= 0xfffffffeu) return;
  std::uint32_t n = 0;
  for (std::uint32_t nsid = start_nsid + 1; nsid <= namespace_count && n < kMaxIds; ++nsid) list[n++] = nsid;
}

}  // namespace nvmux::nvme
