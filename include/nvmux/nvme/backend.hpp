#pragma once
// Opening a controller by backend name and namespace arguments, the way every nvmux tool names
// them on its command line:
//
//   ram:size=1G[,bs=4096]          emu: RAM-backed namespace
//   null:size=1G[,bs=4096]         emu: moves no data (measures the software path alone)
//   file:/path[,size=1G][,bs=4096] emu: file-backed (mapped); uring: the file through io_uring.
//                                  Created at `size` when missing; size may be left out for an
//                                  existing file.
//   bdev:/dev/nvme0n1[,bs=512]     uring: a block device
//
// The vfio backend takes no namespace arguments: a PCIe controller's namespaces are its own. It
// takes the controller's PCI address instead (pci_address, `--pci 0000:00:04.0`).
//
// Sizes take a binary suffix: K, M, G, T (case-insensitive, optional trailing "iB"/"B"), or plain
// bytes. bs is 512 or 4096 (default 4096).
//
// Threading: plain functions; open_controller returns a thread-safe Controller.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "nvmux/common/status.hpp"
#include "nvmux/nvme/controller.hpp"

namespace nvmux::nvme {

struct NamespaceArg {
  enum class Kind { kRam, kNull, kFile, kBdev };
  Kind kind = Kind::kRam;
  std::string path;         // kFile, kBdev
  std::uint64_t bytes = 0;  // 0 = the existing file's or device's size
  std::uint32_t block_size = 4096;
  std::string text;  // as given, for messages
};

// "4096", "64K", "1G", "1GiB" -> bytes. Errors: kInvalidArgument naming the text.
Result<std::uint64_t> parse_size(std::string_view text);
// One --ns argument. Errors: kInvalidArgument saying which part is wrong.
Result<NamespaceArg> parse_namespace_arg(std::string_view text);

enum class Backend { kEmu, kUring, kVfio };
Result<Backend> parse_backend(std::string_view name);  // "emu", "uring" or "vfio"
std::string_view to_string(Backend backend);

struct BackendOptions {
  Backend backend = Backend::kEmu;
  std::vector<NamespaceArg> namespaces;  // empty: emu gets one 1 GiB RAM namespace; uring refuses
  std::string name;                      // "" = "emu0" / "uring0"
  std::size_t dma_arena_bytes = std::size_t{64} << 20;
  std::uint16_t max_io_queues = 16;
  // emu
  bool emu_inline_engine = false;  // true: the device works inside each poll (no extra thread)
  int emu_engine_core = -1;        // pin the device thread (-1: not pinned)
  std::uint32_t emu_latency_us = 0;
  // uring
  bool uring_direct = true;
  bool uring_sqpoll = false;
  // vfio
  std::string pci_address;      // the controller's PCI function, bound to vfio-pci
  bool vfio_huge_pages = true;  // DMA arena from 2 MiB huge pages when the system has them
};

// Builds and brings up the controller. Errors: kInvalidArgument when a namespace kind does not
// exist on the chosen backend (saying which backend has it), namespaces given to vfio or vfio
// without a PCI address, and whatever the backend's create returns.
Result<std::unique_ptr<Controller>> open_controller(const BackendOptions& options);

}  // namespace nvmux::nvme
