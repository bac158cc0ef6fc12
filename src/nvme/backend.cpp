#include "nvmux/nvme/backend.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "nvmux/nvme/emu.hpp"
#include "nvmux/nvme/uring.hpp"
#include "nvmux/nvme/vfio.hpp"

namespace nvmux::nvme {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t at = s.find(sep, start);
    parts.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return parts;
    start = at + 1;
  }
}

}  // namespace

Result<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) {
    return Status::error(StatusCode::kInvalidArgument, "size '{}' is not a number with an optional K/M/G/T suffix",
                         text);
  }
  std::string suffix = lower(std::string_view(end, static_cast<std::size_t>(text.data() + text.size() - end)));
  if (suffix.ends_with("ib"))
    suffix.resize(suffix.size() - 2);
  else if (suffix.ends_with("b"))
    suffix.resize(suffix.size() - 1);
  unsigned shift = 0;
  if (suffix.empty())
    shift = 0;
  else if (suffix == "k")
    shift = 10;
  else if (suffix == "m")
    shift = 20;
  else if (suffix == "g")
    shift = 30;
  else if (suffix == "t")
    shift = 40;
  else
    return Status::error(StatusCode::kInvalidArgument, "size '{}' has an unknown suffix (use K, M, G or T)", text);
  if (shift != 0 && value > (UINT64_MAX >> shift)) {
    return Status::error(StatusCode::kInvalidArgument, "size '{}' does not fit in 64 bits", text);
  }
  return value << shift;
}

Result<NamespaceArg> parse_namespace_arg(std::string_view text) {
  NamespaceArg arg;
  arg.text = std::string(text);
  std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return Status::error(StatusCode::kInvalidArgument,
                         "namespace '{}': expected KIND:..., one of ram:size=N, null:size=N, file:PATH, bdev:PATH",
                         text);
  }
  std::string kind = lower(text.substr(0, colon));
  std::vector<std::string_view> parts = split(text.substr(colon + 1), ',');
  std::size_t first_option = 0;
  if (kind == "ram" || kind == "null") {
    arg.kind = kind == "ram" ? NamespaceArg::Kind::kRam : NamespaceArg::Kind::kNull;
  } else if (kind == "file" || kind == "bdev") {
    arg.kind = kind == "file" ? NamespaceArg::Kind::kFile : NamespaceArg::Kind::kBdev;
    arg.path = std::string(parts[0]);
    if (arg.path.empty())
      return Status::error(StatusCode::kInvalidArgument, "namespace '{}': no path after '{}:'", text, kind);
    first_option = 1;
  } else {
    return Status::error(StatusCode::kInvalidArgument, "namespace '{}': unknown kind '{}' (ram, null, file or bdev)",
                         text, kind);
  }
  for (std::size_t i = first_option; i < parts.size(); ++i) {
    std::string_view part = parts[i];
    std::size_t eq = part.find('=');
    std::string key = lower(part.substr(0, eq));
    std::string_view value = eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
    if (eq == std::string_view::npos || value.empty()) {
      return Status::error(StatusCode::kInvalidArgument, "namespace '{}': '{}' is not KEY=VALUE", text, part);
    }
    if (key == "size") {
      auto bytes = parse_size(value);
      if (!bytes.ok())
        return Status(StatusCode::kInvalidArgument, fmt::format("namespace '{}': {}", text, bytes.status().message()));
      arg.bytes = *bytes;
    } else if (key == "bs") {
      auto bs = parse_size(value);
      if (!bs.ok() || (*bs != 512 && *bs != 4096)) {
        return Status::error(StatusCode::kInvalidArgument, "namespace '{}': bs={} is not 512 or 4096", text, value);
      }
      arg.block_size = static_cast<std::uint32_t>(*bs);
    } else {
      return Status::error(StatusCode::kInvalidArgument, "namespace '{}': unknown option '{}' (size, bs)", text, key);
    }
  }
  bool needs_size = arg.kind == NamespaceArg::Kind::kRam || arg.kind == NamespaceArg::Kind::kNull;
  if (needs_size && arg.bytes == 0) {
    return Status::error(StatusCode::kInvalidArgument, "namespace '{}': {} namespaces need size=N (e.g. size=1G)", text,
                         kind);
  }
  if (arg.bytes % arg.block_size != 0) {
    return Status::error(StatusCode::kInvalidArgument, "namespace '{}': size {} is not a multiple of bs {}", text,
                         arg.bytes, arg.block_size);
  }
  return arg;
}

Result<Backend> parse_backend(std::string_view name) {
  if (name == "emu") return Backend::kEmu;
  if (name == "uring") return Backend::kUring;
  if (name == "vfio") return Backend::kVfio;
  return Status::error(StatusCode::kInvalidArgument, "unknown backend '{}' (emu, uring or vfio)", name);
}

std::string_view to_string(Backend backend) {
  switch (backend) {
    case Backend::kEmu: return "emu";
    case Backend::kUring: return "uring";
    case Backend::kVfio: return "vfio";
  }
  return "?";
}

namespace {

// The emu namespace a --ns argument names; a file without size=N takes the size the file has.
Result<NamespaceSpec> emu_namespace(const NamespaceArg& a) {
  NamespaceSpec spec;
  spec.block_size = a.block_size;
  switch (a.kind) {
    case NamespaceArg::Kind::kRam: spec.backing = NamespaceBacking::kRam; break;
    case NamespaceArg::Kind::kNull: spec.backing = NamespaceBacking::kNull; break;
    case NamespaceArg::Kind::kFile: {
      spec.backing = NamespaceBacking::kFile;
      spec.path = a.path;
      std::uint64_t bytes = a.bytes;
      struct stat sb {};
      const bool exists = ::stat(a.path.c_str(), &sb) == 0;
      if (exists && !S_ISREG(sb.st_mode)) {
        return Status::error(StatusCode::kInvalidArgument, "namespace '{}': {} is {}, not a regular file", a.text,
                             a.path,
                             S_ISDIR(sb.st_mode)   ? "a directory"
                             : S_ISBLK(sb.st_mode) ? "a block device (use --backend uring --ns bdev:PATH)"
                                                   : "a special file");
      }
      if (bytes == 0 && exists) {
        bytes = static_cast<std::uint64_t>(sb.st_size);
        if (bytes == 0) {
          return Status::error(StatusCode::kInvalidArgument, "namespace '{}': {} is empty; give size=N to use it",
                               a.text, a.path);
        }
        if (bytes % a.block_size != 0) {
          return Status::error(StatusCode::kInvalidArgument,
                               "namespace '{}': {} holds {} bytes, not a multiple of bs {}; give size=N to use a "
                               "part of it",
                               a.text, a.path, bytes, a.block_size);
        }
      }
      if (bytes == 0) {
        return Status::error(StatusCode::kInvalidArgument,
                             "namespace '{}': {} does not exist; give size=N to create it", a.text, a.path);
      }
      spec.blocks = bytes / a.block_size;
      return spec;
    }
    case NamespaceArg::Kind::kBdev:
      return Status::error(StatusCode::kInvalidArgument,
                           "namespace '{}': block devices are reached through the uring backend (--backend uring)",
                           a.text);
  }
  spec.blocks = a.bytes / a.block_size;
  return spec;
}

// The emu backend: a 1 GiB ram namespace when none is given.
Result<std::unique_ptr<Controller>> open_emu_controller(const BackendOptions& options) {
  EmuOptions emu;
  emu.name = options.name.empty() ? "emu0" : options.name;
  emu.engine = options.emu_inline_engine ? EmuEngine::kInline : EmuEngine::kThread;
  emu.engine_core = options.emu_engine_core;
  emu.latency_us = options.emu_latency_us;
  emu.dma_arena_bytes = options.dma_arena_bytes;
  emu.max_io_queues = options.max_io_queues;
  std::vector<NamespaceArg> args = options.namespaces;
  if (args.empty())
    args.push_back(NamespaceArg{NamespaceArg::Kind::kRam, "", std::uint64_t{1} << 30, 4096, "ram:size=1G"});
  for (const NamespaceArg& a : args) {
    auto spec = emu_namespace(a);
    if (!spec.ok()) return spec.status();
    emu.namespaces.push_back(std::move(spec).value());
  }
  auto ctrl = EmuController::create(std::move(emu));
  if (!ctrl.ok()) return ctrl.status();
  return std::unique_ptr<Controller>(std::move(ctrl).value());
}

// The uring backend: files and block devices only, at least one.
Result<std::unique_ptr<Controller>> open_uring_controller(const BackendOptions& options) {
  UringOptions uring;
  uring.name = options.name.empty() ? "uring0" : options.name;
  uring.direct = options.uring_direct;
  uring.sqpoll = options.uring_sqpoll;
  uring.dma_arena_bytes = options.dma_arena_bytes;
  uring.max_io_queues = options.max_io_queues;
  if (options.namespaces.empty()) {
    return Status::error(StatusCode::kInvalidArgument,
                         "the uring backend needs --ns file:PATH,size=N or --ns bdev:/dev/DEVICE");
  }
  for (const NamespaceArg& a : options.namespaces) {
    if (a.kind == NamespaceArg::Kind::kRam || a.kind == NamespaceArg::Kind::kNull) {
      return Status::error(StatusCode::kInvalidArgument,
                           "namespace '{}': ram and null namespaces exist only on the emu backend (--backend emu)",
                           a.text);
    }
    if (a.kind == NamespaceArg::Kind::kBdev) {
      struct stat sb {};
      if (::stat(a.path.c_str(), &sb) != 0 || !S_ISBLK(sb.st_mode)) {
        return Status::error(StatusCode::kInvalidArgument, "namespace '{}': {} is not a block device", a.text, a.path);
      }
    }
    uring.namespaces.push_back(UringNamespace{a.path, a.bytes, a.block_size});
  }
  auto ctrl = UringController::create(std::move(uring));
  if (!ctrl.ok()) return ctrl.status();
  return std::unique_ptr<Controller>(std::move(ctrl).value());
}

// The vfio backend: a PCIe controller by its address; its namespaces are its own.
Result<std::unique_ptr<Controller>> open_vfio_controller(const BackendOptions& options) {
  if (!options.namespaces.empty()) {
    return Status::error(StatusCode::kInvalidArgument,
                         "namespace '{}': the vfio backend uses the controller's own namespaces; drop --ns",
                         options.namespaces.front().text);
  }
  if (options.pci_address.empty()) {
    return Status::error(StatusCode::kInvalidArgument,
                         "the vfio backend needs --pci ADDR (a controller bound to vfio-pci; scripts/nvmux-setup "
                         "status lists them)");
  }
  VfioOptions vfio;
  vfio.name = options.name.empty() ? "vfio0" : options.name;
  vfio.pci_address = options.pci_address;
  vfio.dma_arena_bytes = options.dma_arena_bytes;
  vfio.max_io_queues = options.max_io_queues;
  vfio.huge_pages = options.vfio_huge_pages;
  auto ctrl = VfioController::create(std::move(vfio));
  if (!ctrl.ok()) return ctrl.status();
  return std::unique_ptr<Controller>(std::move(ctrl).value());
}

}  // namespace

Result<std::unique_ptr<Controller>> open_controller(const BackendOptions& options) {
  switch (options.backend) {
    case Backend::kEmu: return open_emu_controller(options);
    case Backend::kUring: return open_uring_controller(options);
    case Backend::kVfio: return open_vfio_controller(options);
  }
  return Status::error(StatusCode::kInvalidArgument, "unknown backend");
}

}  // namespace nvmux::nvme
