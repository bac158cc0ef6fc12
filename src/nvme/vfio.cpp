#include "nvmux/nvme/vfio.hpp"

#include <fcntl.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <thread>
#include <utility>

#include "admin_flow.hpp"
#include "nvmux/common/cpu.hpp"
#include "nvmux/common/log.hpp"

namespace nvmux::nvme {

namespace {

constexpr std::uint64_t kMinReadyTimeoutNs = 1'000'000'000ull;  // CAP.TO of 0 still gets a second
constexpr std::uint64_t kTimeoutUnitNs = 500'000'000ull;        // CAP.TO counts 500 ms units
constexpr std::uint32_t kRegisterGone = 0xffffffffu;            // what a removed device's registers read
constexpr std::uint32_t kCcShutdownNormal = 1u << 14;           // CC.SHN = 01b
constexpr std::uint32_t kCstsShutdownMask = 3u << 2;            // CSTS.SHST
constexpr std::uint32_t kCstsShutdownComplete = 2u << 2;
// CC for enable: NVM command set (CSS 0), 4 KiB pages (MPS 0), round robin, 64-byte SQ and 16-byte
// CQ entries.
constexpr std::uint32_t kCcEnableValue = kCcEnable | (6u << 16) | (4u << 20);

namespace fs = std::filesystem;

// "00:04.0" -> "0000:00:04.0"; anything else must already be DDDD:BB:DD.F.
Result<std::string> canonical_pci_address(const std::string& text) {
  std::string addr = text.size() == 7 ? "0000:" + text : text;
  bool ok = addr.size() == 12 && addr[4] == ':' && addr[7] == ':' && addr[10] == '.';
  for (std::size_t i = 0; ok && i < addr.size(); ++i) {
    if (i == 4 || i == 7 || i == 10) continue;
    ok = std::isxdigit(static_cast<unsigned char>(addr[i])) != 0;
  }
  if (!ok) {
    return Status::error(StatusCode::kInvalidArgument, "PCI address '{}' is not DDDD:BB:DD.F (e.g. 0000:00:04.0)",
                         text);
  }
  for (char& c : addr) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return addr;
}

// The last component of a sysfs symlink's target ("" when there is no such link).
std::string link_name(const fs::path& link) {
  std::error_code ec;
  fs::path target = fs::read_symlink(link, ec);
  return ec ? std::string() : target.filename().string();
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

}  // namespace

// The VFIO file descriptors. Shared by the controller and the DMA arena's IOMMU hooks, so the
// container (and with it the IOMMU mappings) stays open while any DMA buffer or foreign region of
// the arena may still be named by a command.
struct VfioController::Vfio {
  Fd container;
  Fd group;
  Fd device;
  std::uint64_t config_offset = 0;  // of the PCI configuration space region in the device fd

  Status map(std::uint64_t iova, const std::byte* host, std::size_t bytes) const {
    vfio_iommu_type1_dma_map map{};
    map.argsz = sizeof(map);
    map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    map.vaddr = reinterpret_cast<std::uint64_t>(host);
    map.iova = iova;
    map.size = bytes;
    if (::ioctl(container.get(), VFIO_IOMMU_MAP_DMA, &map) != 0) {
      int err = errno;
      return Status::from_errno(err, fmt::format("VFIO_IOMMU_MAP_DMA of {} bytes at IOVA {:#x}{}", bytes, iova,
                                                 err == ENOMEM ? " (pinned memory above RLIMIT_MEMLOCK? raise "
                                                                 "it, or run as root)"
                                                               : ""));
    }
    return {};
  }
  void unmap(std::uint64_t iova, std::size_t bytes) const {
    vfio_iommu_type1_dma_unmap unmap{};
    unmap.argsz = sizeof(unmap);
    unmap.iova = iova;
    unmap.size = bytes;
    if (::ioctl(container.get(), VFIO_IOMMU_UNMAP_DMA, &unmap) != 0) {
      NVMUX_LOG_ERROR("VFIO_IOMMU_UNMAP_DMA of {} bytes at IOVA {:#x}: {}", bytes, iova, std::strerror(errno));
    }
  }
  Result<std::uint16_t> read_command() const {
    std::uint16_t value = 0;
    if (::pread(device.get(), &value, sizeof(value), static_cast<off_t>(config_offset + PCI_COMMAND)) != 2) {
      return Status::from_errno(errno, "reading the PCI command register");
    }
    return value;
  }
  Status write_command(std::uint16_t value) const {
    if (::pwrite(device.get(), &value, sizeof(value), static_cast<off_t>(config_offset + PCI_COMMAND)) != 2) {
      return Status::from_errno(errno, "writing the PCI command register");
    }
    return {};
  }
};

VfioController::VfioController(VfioOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<VfioController>> VfioController::create(VfioOptions options) {
  auto addr = canonical_pci_address(options.pci_address);
  if (!addr.ok()) return addr.status();
  options.pci_address = *addr;
  if (options.max_io_queues == 0) return Status::error(StatusCode::kInvalidArgument, "max_io_queues 0");
  if (options.admin_queue_entries < 2 || options.admin_queue_entries > 4096) {
    return Status::error(StatusCode::kInvalidArgument, "admin_queue_entries {} outside [2, 4096]",
                         options.admin_queue_entries);
  }
  std::unique_ptr<VfioController> ctrl(new VfioController(std::move(options)));
  NVMUX_RETURN_IF_ERROR(ctrl->open_device());
  NVMUX_RETURN_IF_ERROR(ctrl->map_dma_arena());
  NVMUX_RETURN_IF_ERROR(ctrl->reset_controller());
  NVMUX_RETURN_IF_ERROR(ctrl->enable_controller());
  NVMUX_RETURN_IF_ERROR(ctrl->identify());
  return ctrl;
}

// Container, group, device; bus master on; BAR0 mapped.
Status VfioController::open_device() {
  const std::string& addr = options_.pci_address;
  const fs::path sysfs = fs::path("/sys/bus/pci/devices") / addr;
  std::error_code ec;
  if (!fs::exists(sysfs, ec)) {
    return Status::error(StatusCode::kNotFound, "{}: no PCI function {} (scripts/nvmux-setup status lists NVMe ones)",
                         name(), addr);
  }
  const std::string driver = link_name(sysfs / "driver");
  if (driver != "vfio-pci") {
    return Status::error(StatusCode::kUnavailable,
                         "{}: {} is {}, not bound to vfio-pci; bind it with `scripts/nvmux-setup bind {}` (as root: "
                         "echo vfio-pci > {}/driver_override; echo {} > {}/driver/unbind; echo {} > "
                         "/sys/bus/pci/drivers_probe)",
                         name(), addr, driver.empty() ? "bound to no driver" : "bound to " + driver, addr,
                         sysfs.string(), addr, sysfs.string(), addr);
  }
  const std::string group_name = link_name(sysfs / "iommu_group");
  if (group_name.empty()) {
    return Status::error(StatusCode::kUnsupported,
                         "{}: {} has no IOMMU group: the IOMMU is off or missing (boot with intel_iommu=on or "
                         "amd_iommu=on); nvmux does not use VFIO's no-IOMMU mode",
                         name(), addr);
  }
  auto vfio = std::make_shared<Vfio>();

  vfio->container = Fd(::open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC));
  if (vfio->container.get() < 0) {
    return Status::from_errno(errno,
                              fmt::format("{}: opening /dev/vfio/vfio (is the vfio-pci module loaded?)", name()));
  }
  if (::ioctl(vfio->container.get(), VFIO_GET_API_VERSION) != VFIO_API_VERSION) {
    return Status::error(StatusCode::kUnsupported, "{}: the kernel's VFIO API version is not {}", name(),
                         VFIO_API_VERSION);
  }
  if (::ioctl(vfio->container.get(), VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0) {
    return Status::error(StatusCode::kUnsupported, "{}: the kernel's VFIO has no type1v2 IOMMU", name());
  }
  const std::string group_path = "/dev/vfio/" + group_name;
  vfio->group = Fd(::open(group_path.c_str(), O_RDWR | O_CLOEXEC));
  if (vfio->group.get() < 0) {
    int err = errno;
    return Status::from_errno(
        err, fmt::format("{}: opening {}{}", name(), group_path,
                         err == EBUSY ? " (the group is open already: another process or controller drives it)"
                         : err == EACCES || err == EPERM
                             ? " (run as root, or give this user the device file and a large RLIMIT_MEMLOCK)"
                             : ""));
  }
  vfio_group_status group_status{};
  group_status.argsz = sizeof(group_status);
  if (::ioctl(vfio->group.get(), VFIO_GROUP_GET_STATUS, &group_status) != 0) {
    return Status::from_errno(errno, fmt::format("{}: VFIO_GROUP_GET_STATUS on {}", name(), group_path));
  }
  if ((group_status.flags & VFIO_GROUP_FLAGS_VIABLE) == 0) {
    return Status::error(StatusCode::kUnavailable,
                         "{}: IOMMU group {} is not viable: every device in /sys/kernel/iommu_groups/{}/devices must "
                         "be bound to vfio-pci or to no driver",
                         name(), group_name, group_name);
  }
  int container_fd = vfio->container.get();
  if (::ioctl(vfio->group.get(), VFIO_GROUP_SET_CONTAINER, &container_fd) != 0) {
    return Status::from_errno(errno, fmt::format("{}: VFIO_GROUP_SET_CONTAINER", name()));
  }
  if (::ioctl(vfio->container.get(), VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) != 0) {
    return Status::from_errno(errno, fmt::format("{}: VFIO_SET_IOMMU (type1v2)", name()));
  }
  vfio->device = Fd(::ioctl(vfio->group.get(), VFIO_GROUP_GET_DEVICE_FD, addr.c_str()));
  if (vfio->device.get() < 0) {
    return Status::from_errno(errno, fmt::format("{}: VFIO_GROUP_GET_DEVICE_FD {}", name(), addr));
  }

  vfio_region_info config{};
  config.argsz = sizeof(config);
  config.index = VFIO_PCI_CONFIG_REGION_INDEX;
  if (::ioctl(vfio->device.get(), VFIO_DEVICE_GET_REGION_INFO, &config) != 0) {
    return Status::from_errno(errno, fmt::format("{}: region info of the configuration space", name()));
  }
  vfio->config_offset = config.offset;
  // Memory space decoding for BAR0, bus mastering so the controller may DMA.
  auto command = vfio->read_command();
  if (!command.ok()) return command.status();
  NVMUX_RETURN_IF_ERROR(vfio->write_command(*command | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));

  vfio_region_info bar{};
  bar.argsz = sizeof(bar);
  bar.index = VFIO_PCI_BAR0_REGION_INDEX;
  if (::ioctl(vfio->device.get(), VFIO_DEVICE_GET_REGION_INFO, &bar) != 0) {
    return Status::from_errno(errno, fmt::format("{}: region info of BAR0", name()));
  }
  if ((bar.flags & VFIO_REGION_INFO_FLAG_MMAP) == 0 || bar.size < kRegDoorbellBase + 8) {
    return Status::error(StatusCode::kUnsupported,
                         "{}: BAR0 of {} bytes (flags {:#x}) cannot be mapped as NVMe registers", name(), bar.size,
                         bar.flags);
  }
  void* p =
      ::mmap(nullptr, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED, vfio->device.get(), static_cast<off_t>(bar.offset));
  if (p == MAP_FAILED) return Status::from_errno(errno, fmt::format("{}: mmap of BAR0 ({} bytes)", name(), bar.size));
  bar0_ = static_cast<std::byte*>(p);
  bar0_bytes_ = bar.size;
  vfio_ = std::move(vfio);

  const std::uint32_t cap_low = read32(kRegCap);
  const std::uint32_t cap_high = read32(kRegCap + 4);
  if (cap_low == kRegisterGone && cap_high == kRegisterGone) {
    return Status::error(StatusCode::kUnavailable, "{}: {}'s registers read all-ones: the device is not responding",
                         name(), addr);
  }
  cap_ = (std::uint64_t{cap_high} << 32) | cap_low;
  doorbell_stride_shift_ = static_cast<std::uint32_t>((cap_ >> 32) & 0xfu);
  ready_timeout_ns_ = std::max(kMinReadyTimeoutNs, ((cap_ >> 24) & 0xffu) * kTimeoutUnitNs);
  const bool nvm_command_set = ((cap_ >> 37) & 1u) != 0;
  const auto mps_min = static_cast<std::uint32_t>((cap_ >> 48) & 0xfu);
  if (!nvm_command_set || mps_min != 0) {
    return Status::error(StatusCode::kUnsupported,
                         "{}: CAP {:#018x}: nvmux needs the NVM command set and 4 KiB memory pages (CSS bit 0 {}, "
                         "MPSMIN {})",
                         name(), cap_, nvm_command_set ? 1 : 0, mps_min);
  }
  return {};
}

// The DMA arena, mapped into the IOMMU at its own IOVAs; foreign regions follow through the hooks.
Status VfioController::map_dma_arena() {
  // Where the IOMMU can translate: the arena and every foreign slot must lie in its IOVA ranges.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;  // [start, end] inclusive
  {
    std::vector<std::uint64_t> buffer(64);  // 512 bytes; grown when the kernel asks for more
    auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buffer.data());
    info->argsz = static_cast<std::uint32_t>(buffer.size() * sizeof(std::uint64_t));
    if (::ioctl(vfio_->container.get(), VFIO_IOMMU_GET_INFO, info) != 0) {
      return Status::from_errno(errno, fmt::format("{}: VFIO_IOMMU_GET_INFO", name()));
    }
    if (info->argsz > buffer.size() * sizeof(std::uint64_t)) {
      buffer.resize((info->argsz + 7) / 8);
      info = reinterpret_cast<vfio_iommu_type1_info*>(buffer.data());
      info->argsz = static_cast<std::uint32_t>(buffer.size() * sizeof(std::uint64_t));
      if (::ioctl(vfio_->container.get(), VFIO_IOMMU_GET_INFO, info) != 0) {
        return Status::from_errno(errno, fmt::format("{}: VFIO_IOMMU_GET_INFO", name()));
      }
    }
    if ((info->flags & VFIO_IOMMU_INFO_CAPS) != 0 && info->cap_offset != 0) {
      // The kernel packs the capability chain at 4-byte offsets: copy each piece out (memcpy)
      // instead of reading through a pointer that may not be aligned for its type.
      const auto* bytes = reinterpret_cast<const std::byte*>(buffer.data());
      const std::size_t end = std::min<std::size_t>(info->argsz, buffer.size() * sizeof(std::uint64_t));
      for (std::size_t off = info->cap_offset; off != 0 && off + sizeof(vfio_info_cap_header) <= end;) {
        vfio_info_cap_header header{};
        std::memcpy(&header, bytes + off, sizeof(header));
        if (header.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
          const std::size_t count_at = off + offsetof(vfio_iommu_type1_info_cap_iova_range, nr_iovas);
          const std::size_t ranges_at = off + offsetof(vfio_iommu_type1_info_cap_iova_range, iova_ranges);
          std::uint32_t count = 0;
          if (count_at + sizeof(count) <= end) std::memcpy(&count, bytes + count_at, sizeof(count));
          for (std::uint32_t i = 0; i < count && ranges_at + (i + 1) * sizeof(vfio_iova_range) <= end; ++i) {
            vfio_iova_range range{};
            std::memcpy(&range, bytes + ranges_at + i * sizeof(vfio_iova_range), sizeof(range));
            ranges.emplace_back(range.start, range.end);
          }
        }
        off = header.next > off ? header.next : 0;  // the chain only moves forward
      }
    }
  }
  auto covered = [&](std::uint64_t start, std::uint64_t bytes) {
    if (ranges.empty()) return true;  // an older kernel does not say; MAP_DMA will
    for (auto [first, last] : ranges) {
      if (start >= first && bytes != 0 && start + bytes - 1 <= last) return true;
    }
    return false;
  };

  auto arena = DmaArena::create(options_.dma_arena_bytes, DmaArena::kDefaultIovaBase,
                                options_.huge_pages ? DmaPages::kHugePreferred : DmaPages::kSmall);
  if (!arena.ok()) return arena.status();
  arena_ = std::move(arena).value();
  const std::uint64_t foreign_bytes = DmaArena::kMaxForeignRegions * DmaArena::kForeignRegionSpanBytes;
  if (!covered(arena_->iova_base(), arena_->size()) || !covered(DmaArena::kForeignIovaBase, foreign_bytes)) {
    std::string have;
    for (auto [first, last] : ranges) have += fmt::format(" [{:#x}, {:#x}]", first, last);
    return Status::error(StatusCode::kUnsupported,
                         "{}: the IOMMU translates IOVAs{} only; nvmux's DMA layout needs [{:#x}, +{:#x}) and [{:#x}, "
                         "+{:#x}) (a 48-bit IOMMU address width)",
                         name(), have, arena_->iova_base(), arena_->size(), DmaArena::kForeignIovaBase, foreign_bytes);
  }
  NVMUX_RETURN_IF_ERROR(vfio_->map(arena_->iova_base(), arena_->base(), arena_->size()));
  NVMUX_LOG_INFO("{}: DMA arena of {} MiB in {} pages, mapped at IOVA {:#x}", name(), arena_->size() >> 20,
                 arena_->page_bytes() == DmaArena::kHugePageBytes ? "2 MiB" : "4 KiB", arena_->iova_base());
  std::shared_ptr<const Vfio> vfio = vfio_;
  arena_->set_iommu_hooks(IommuHooks{
      [vfio](std::uint64_t iova, std::byte* host, std::size_t bytes) { return vfio->map(iova, host, bytes); },
      [vfio](std::uint64_t iova, std::size_t bytes) { vfio->unmap(iova, bytes); }});
  return {};
}

std::uint32_t VfioController::read32(std::uint32_t offset) const {
  // MMIO: a volatile access of exactly 32 bits, which the compiler neither merges nor elides.
  return *reinterpret_cast<const volatile std::uint32_t*>(bar0_ + offset);
}

void VfioController::write32(std::uint32_t offset, std::uint32_t value) {
  *reinterpret_cast<volatile std::uint32_t*>(bar0_ + offset) = value;
}

std::atomic<std::uint32_t>* VfioController::doorbell(std::uint32_t offset) {
  NVMUX_ASSERT(offset + 4 <= bar0_bytes_, "{}: doorbell at {:#x} beyond BAR0's {} bytes", name(), offset, bar0_bytes_);
  // The QueuePair writes doorbells with 32-bit release stores: on x86 a plain aligned mov, ordered
  // after its SQ entry writes, which is what a doorbell write must be.
  static_assert(sizeof(std::atomic<std::uint32_t>) == 4 && std::atomic<std::uint32_t>::is_always_lock_free);
  return reinterpret_cast<std::atomic<std::uint32_t>*>(bar0_ + offset);
}

// A controller that failed (CSTS.CFS) or is gone (registers read all-ones); "" while healthy. Any
// thread: one MMIO read.
std::string VfioController::device_failure() const {
  const std::uint32_t csts = read32(kRegCsts);
  if (csts == kRegisterGone) {
    return fmt::format("{} ({}) does not respond: CSTS reads all-ones (the device was removed or reset)", name(),
                       options_.pci_address);
  }
  if ((csts & kCstsFatal) != 0) return fmt::format("{}: controller fatal status (CSTS {:#x})", name(), csts);
  return {};
}

std::string VfioController::registers() const {
  return fmt::format("CAP {:#018x}, CC {:#010x}, CSTS {:#010x}", cap_, read32(kRegCc), read32(kRegCsts));
}

// Waits until CSTS.RDY == ready, within CAP.TO. CSTS.CFS while enabling, or all-ones registers,
// end the wait at once.
Status VfioController::wait_ready(bool ready, const char* why) {
  const std::uint64_t deadline = monotonic_ns() + ready_timeout_ns_;
  while (true) {
    const std::uint32_t csts = read32(kRegCsts);
    if (csts == kRegisterGone) {
      return Status::error(StatusCode::kUnavailable, "{}: CSTS reads all-ones while {}: the device is gone", name(),
                           why);
    }
    if (ready && (csts & kCstsFatal) != 0) {
      return Status::error(StatusCode::kIoError, "{}: controller fatal status (CSTS.CFS) while {} ({})", name(), why,
                           registers());
    }
    if (((csts & kCstsReady) != 0) == ready) return {};
    if (monotonic_ns() > deadline) {
      return Status::error(StatusCode::kTimeout, "{}: CSTS.RDY did not become {} within CAP.TO ({} ms) while {} ({})",
                           name(), ready ? 1 : 0, ready_timeout_ns_ / 1'000'000, why, registers());
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// Disables the controller whatever state a previous user left it in.
Status VfioController::reset_controller() {
  const std::uint32_t cc = read32(kRegCc);
  if ((cc & kCcEnable) != 0) {
    // EN 1 while RDY 0 is a controller still coming up: let it finish before taking EN away.
    if ((read32(kRegCsts) & kCstsReady) == 0) (void)wait_ready(true, "finishing an earlier enable");
    write32(kRegCc, cc & ~kCcEnable);
  }
  return wait_ready(false, "disabling (CC.EN = 0)");
}

// Admin queue registers, CC.EN = 1, CSTS.RDY; then the admin queue pair on that memory.
Status VfioController::enable_controller() {
  const std::uint32_t n = options_.admin_queue_entries;
  auto memory = alloc_queue_memory(*this, n, n);
  if (!memory.ok()) return memory.status();
  write32(kRegAqa, (n - 1) | ((n - 1) << 16));
  write32(kRegAsq, static_cast<std::uint32_t>(memory->sq.iova()));
  write32(kRegAsq + 4, static_cast<std::uint32_t>(memory->sq.iova() >> 32));
  write32(kRegAcq, static_cast<std::uint32_t>(memory->cq.iova()));
  write32(kRegAcq + 4, static_cast<std::uint32_t>(memory->cq.iova() >> 32));
  write32(kRegCc, kCcEnableValue);
  enabled_ = true;
  NVMUX_RETURN_IF_ERROR(wait_ready(true, "enabling (CC.EN = 1)"));
  admin_qp_ = make_admin_qpair(*this, std::move(memory).value(), n, options_.admin_timeout_ms,
                               [this](auto... args) { return make_transport(std::move(args)...); });
  return {};
}

Status VfioController::identify() {
  auto page = dma_alloc(kPageBytes);
  if (!page.ok()) return page.status();
  NVMUX_RETURN_IF_ERROR(identify_controller(*this, *page, info_).status());
  info_.max_queue_entries = static_cast<std::uint32_t>(cap_ & 0xffffu) + 1;
  auto namespaces = identify_namespaces(*this, *page);
  if (!namespaces.ok()) return namespaces.status();
  namespaces_ = std::move(namespaces).value();
  auto granted = set_number_of_queues(*this, options_.max_io_queues);
  if (!granted.ok()) return granted.status();
  info_.io_queues = *granted;
  // Every granted queue's doorbells must lie inside BAR0.
  const std::uint32_t last = cq_head_doorbell_offset(info_.io_queues, doorbell_stride_shift_);
  if (last + 4 > bar0_bytes_) {
    return Status::error(StatusCode::kUnsupported, "{}: {} I/O queues need doorbells up to {:#x}; BAR0 has {} bytes",
                         name(), info_.io_queues, last + 4, bar0_bytes_);
  }
  qids_.reset(info_.io_queues);
  NVMUX_LOG_INFO(
      "{}: {} '{}' serial '{}' firmware '{}', {} namespace(s), {} I/O queues, MDTS {} bytes, MQES+1 {}, "
      "doorbell stride {} bytes",
      name(), options_.pci_address, info_.model, info_.serial, info_.firmware, namespaces_.size(), info_.io_queues,
      info_.max_transfer_bytes, info_.max_queue_entries, 4u << doorbell_stride_shift_);
  return {};
}

// Normal shutdown (CC.SHN, wait for CSTS.SHST complete), then CC.EN = 0; bounded by CAP.TO.
void VfioController::shut_down() {
  write32(kRegCc, read32(kRegCc) | kCcShutdownNormal);
  const std::uint64_t deadline = monotonic_ns() + ready_timeout_ns_;
  while (true) {
    const std::uint32_t csts = read32(kRegCsts);
    if (csts == kRegisterGone || (csts & kCstsShutdownMask) == kCstsShutdownComplete) break;
    if (monotonic_ns() > deadline) {
      NVMUX_LOG_WARN("{}: shutdown not complete within CAP.TO ({}); disabling anyway", name(), registers());
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  write32(kRegCc, 0);
  Status s = wait_ready(false, "disabling after shutdown");
  if (!s.ok()) NVMUX_LOG_WARN("{}", s.to_string());
}

VfioController::~VfioController() {
  {
    std::lock_guard lock(qid_mutex_);
    NVMUX_ASSERT(qids_.in_use() == 0, "{}: destroyed with {} I/O queue pairs alive; destroy them first", name(),
                 qids_.in_use());
  }
  admin_qp_.reset();
  if (bar0_ != nullptr) {
    if (enabled_) shut_down();
    if (auto command = vfio_->read_command(); command.ok()) {
      (void)vfio_->write_command(*command & ~PCI_COMMAND_MASTER);  // no DMA from here on
    }
    ::munmap(bar0_, bar0_bytes_);
  }
  // The device fd closes now; the container stays open while the arena (and its mappings) lives.
  if (vfio_) vfio_->device.reset();
}

std::unique_ptr<QueueTransport> VfioController::make_transport(std::uint16_t qid, DmaBuffer sq,
                                                               std::uint32_t sq_entries, DmaBuffer cq,
                                                               std::uint32_t cq_entries) {
  DeviceQueueTransport::Device d;
  d.ctrl = this;
  d.sq_tail_doorbell = doorbell(sq_tail_doorbell_offset(qid, doorbell_stride_shift_));
  d.cq_head_doorbell = doorbell(cq_head_doorbell_offset(qid, doorbell_stride_shift_));
  d.health = [](void* ctx) { return static_cast<const VfioController*>(ctx)->device_failure(); };
  d.health_ctx = this;
  d.release_qid = [](void* ctx, std::uint16_t q) { static_cast<VfioController*>(ctx)->release_qid(q); };
  d.release_ctx = this;
  return std::make_unique<DeviceQueueTransport>(d, qid, std::move(sq), sq_entries, std::move(cq), cq_entries);
}

void VfioController::release_qid(std::uint16_t qid) {
  std::lock_guard lock(qid_mutex_);
  qids_.release(qid, name());
}

std::size_t VfioController::dma_page_bytes() const { return arena_->page_bytes(); }
std::size_t VfioController::registered_regions() const { return arena_->foreign_regions_in_use(); }

Result<DmaBuffer> VfioController::dma_alloc(std::size_t bytes, std::size_t align) {
  return arena_->alloc(bytes, align);
}

// The arena's IOMMU hooks map the region at its slot's IOVA before it is handed out.
Result<ForeignRegion> VfioController::register_memory(std::span<std::byte> memory) {
  return arena_->map_foreign(memory);
}

Result<CompletionEntry> VfioController::admin_command(const SubmissionEntry& command, IoVec data) {
  std::lock_guard lock(admin_mutex_);
  return wait_admin_command(*admin_qp_, command, data);
}

Result<std::unique_ptr<QueuePair>> VfioController::create_io_qpair(const QueuePairOptions& options) {
  auto entries = io_queue_entries(name(), options, info_.max_queue_entries);
  if (!entries.ok()) return entries.status();
  std::uint16_t qid = 0;
  {
    std::lock_guard lock(qid_mutex_);
    auto acquired = qids_.acquire(name(), "the controller granted");
    if (!acquired.ok()) return acquired.status();
    qid = *acquired;
  }
  auto qp = create_device_qpair(*this, qid, *entries, options,
                                [this](auto... args) { return make_transport(std::move(args)...); });
  if (!qp.ok()) release_qid(qid);
  return qp;
}

ControllerFactory VfioController::factory(VfioOptions base, std::vector<std::string> pci_addresses) {
  return [base = std::move(base),
          pci_addresses = std::move(pci_addresses)](const ControllerSpec& spec) -> Result<std::unique_ptr<Controller>> {
    for (const NamespaceSpec& ns : spec.namespaces) {
      if (ns.backing != NamespaceBacking::kRam) {
        return Status::error(StatusCode::kUnsupported,
                             "vfio: a PCIe controller's namespaces are its own; no {} namespace",
                             ns.backing == NamespaceBacking::kNull ? "null" : "file");
      }
    }
    std::string why;
    for (const std::string& addr : pci_addresses) {
      VfioOptions options = base;
      options.name = spec.name;
      options.pci_address = addr;
      auto ctrl = create(std::move(options));
      if (!ctrl.ok()) {
        why += fmt::format("; {}: {}", addr, ctrl.status().to_string());
        continue;
      }
      const auto& have = (*ctrl)->namespaces();
      bool fits = have.size() >= spec.namespaces.size();
      for (std::size_t i = 0; fits && i < spec.namespaces.size(); ++i) {
        fits = have[i].block_size == spec.namespaces[i].block_size && have[i].blocks >= spec.namespaces[i].blocks;
      }
      if (fits) return std::unique_ptr<Controller>(std::move(ctrl).value());
      why += fmt::format("; {}: its namespaces do not fit", addr);
    }
    return Status::error(StatusCode::kUnavailable, "vfio: no controller fits {} namespace(s){}", spec.namespaces.size(),
                         why);
  };
}

}  // namespace nvmux::nvme
