#include "nvmux/nvme/dma.hpp"

#include <linux/mman.h>
#include <sys/mman.h>

#include <bit>
#include <cerrno>
#include <cstring>

#include "nvmux/common/log.hpp"

namespace nvmux::nvme {

namespace {
constexpr std::size_t kArenaPageBytes = 4096;
std::size_t round_up(std::size_t v, std::size_t to) { return (v + to - 1) / to * to; }
}  // namespace

DmaBuffer& DmaBuffer::operator=(DmaBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    arena_ = std::move(other.arena_);
    data_ = std::exchange(other.data_, nullptr);
    iova_ = std::exchange(other.iova_, 0);
    size_ = std::exchange(other.size_, 0);
    reserved_ = std::exchange(other.reserved_, 0);
  }
  return *this;
}

void DmaBuffer::reset() {
  if (arena_) {
    arena_->release(static_cast<std::size_t>(iova_ - arena_->iova_base()), reserved_);
    arena_.reset();
  }
  data_ = nullptr;
  iova_ = 0;
  size_ = 0;
  reserved_ = 0;
}

Result<std::shared_ptr<DmaArena>> DmaArena::create(std::size_t bytes, std::uint64_t iova_base, DmaPages pages) {
  if (bytes == 0) return Status::error(StatusCode::kInvalidArgument, "DMA arena of 0 bytes");
  if (iova_base % kArenaPageBytes != 0) {
    return Status::error(StatusCode::kInvalidArgument, "DMA arena IOVA base {:#x} is not page aligned", iova_base);
  }
  if (pages == DmaPages::kHugePreferred) {
    // Huge pages are reserved at mmap time (no MAP_NORESERVE): too few free fails here, never
    // later with a SIGBUS on first touch.
    const std::size_t huge_bytes = round_up(bytes, kHugePageBytes);
    void* p = ::mmap(nullptr, huge_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
    if (p != MAP_FAILED) {
      return std::shared_ptr<DmaArena>(new DmaArena(static_cast<std::byte*>(p), huge_bytes, iova_base, kHugePageBytes));
    }
    NVMUX_LOG_INFO("DMA arena of {} bytes: no 2 MiB huge pages ({}); using 4 KiB pages", huge_bytes,
                   std::strerror(errno));
  }
  bytes = round_up(bytes, kArenaPageBytes);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return Status::from_errno(errno, fmt::format("mmap of a {}-byte DMA arena", bytes));
  return std::shared_ptr<DmaArena>(new DmaArena(static_cast<std::byte*>(p), bytes, iova_base, kArenaPageBytes));
}

DmaArena::DmaArena(std::byte* base, std::size_t size, std::uint64_t iova_base, std::size_t page_bytes)
    : base_(base), size_(size), iova_base_(iova_base), page_bytes_(page_bytes) {
  free_.emplace(0, size);
}

DmaArena::~DmaArena() { ::munmap(base_, size_); }

std::size_t DmaArena::bytes_in_use() const {
  std::lock_guard lock(mutex_);
  return in_use_;
}

Result<DmaBuffer> DmaArena::alloc(std::size_t bytes, std::size_t align) {
  if (bytes == 0) return Status::error(StatusCode::kInvalidArgument, "DMA allocation of 0 bytes");
  if (!std::has_single_bit(align) || align > kArenaPageBytes) {
    return Status::error(StatusCode::kInvalidArgument, "DMA alignment {} is not a power of two up to {}", align,
                         kArenaPageBytes);
  }
  if (align < kAllocGranuleBytes) align = kAllocGranuleBytes;
  std::size_t need = round_up(bytes, kAllocGranuleBytes);
  std::lock_guard lock(mutex_);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    auto [offset, len] = *it;
    std::size_t start = round_up(offset, align);
    if (start - offset > len || len - (start - offset) < need) continue;
    // Split the free range into [offset, start) and [start + need, offset + len).
    free_.erase(it);
    if (start > offset) free_.emplace(offset, start - offset);
    if (offset + len > start + need) free_.emplace(start + need, offset + len - (start + need));
    in_use_ += need;
    DmaBuffer buf;
    buf.arena_ = shared_from_this();
    buf.data_ = base_ + start;
    buf.iova_ = iova_base_ + start;
    buf.size_ = bytes;
    buf.reserved_ = need;
    std::memset(buf.data_, 0, need);
    return buf;
  }
  return Status::error(StatusCode::kUnavailable,
                       "DMA arena of {} bytes cannot fit {} bytes aligned to {} ({} bytes in use)", size_, bytes, align,
                       in_use_);
}

ForeignRegion& ForeignRegion::operator=(ForeignRegion&& other) noexcept {
  if (this != &other) {
    reset();
    arena_ = std::move(other.arena_);
    slot_ = std::exchange(other.slot_, 0);
    data_ = std::exchange(other.data_, nullptr);
    iova_ = std::exchange(other.iova_, 0);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void ForeignRegion::reset() {
  if (arena_) {
    arena_->unmap_foreign(slot_);
    arena_.reset();
  }
  data_ = nullptr;
  iova_ = 0;
  size_ = 0;
}

std::size_t DmaArena::foreign_regions_in_use() const {
  std::lock_guard lock(mutex_);
  return foreign_in_use_;
}

Result<ForeignRegion> DmaArena::map_foreign(std::span<std::byte> memory) {
  if (memory.empty()) return Status::error(StatusCode::kInvalidArgument, "foreign DMA region of 0 bytes");
  if (reinterpret_cast<std::uintptr_t>(memory.data()) % kArenaPageBytes != 0) {
    return Status::error(StatusCode::kInvalidArgument, "foreign DMA region at {} is not page aligned",
                         static_cast<const void*>(memory.data()));
  }
  if (memory.size() > kForeignRegionSpanBytes) {
    return Status::error(StatusCode::kInvalidArgument, "foreign DMA region of {} bytes is above the {}-byte limit",
                         memory.size(), kForeignRegionSpanBytes);
  }
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < kMaxForeignRegions; ++i) {
    ForeignSlot& slot = foreign_[i];
    if (slot.bytes.load(std::memory_order_relaxed) != 0) continue;
    const std::uint64_t iova = kForeignIovaBase + i * kForeignRegionSpanBytes;
    if (iommu_.map) NVMUX_RETURN_IF_ERROR(iommu_.map(iova, memory.data(), round_up(memory.size(), kArenaPageBytes)));
    slot.host.store(memory.data(), std::memory_order_relaxed);
    slot.generation.store(++last_foreign_generation_, std::memory_order_relaxed);
    slot.bytes.store(memory.size(), std::memory_order_release);  // host before the size that opens it
    foreign_epoch_.fetch_add(1, std::memory_order_release);
    ++foreign_in_use_;
    ForeignRegion region;
    region.arena_ = shared_from_this();
    region.slot_ = i;
    region.data_ = memory.data();
    region.iova_ = iova;
    region.size_ = memory.size();
    return region;
  }
  return Status::error(StatusCode::kUnavailable, "all {} foreign DMA region slots are in use", kMaxForeignRegions);
}

void DmaArena::unmap_foreign(std::size_t slot) {
  std::lock_guard lock(mutex_);
  NVMUX_ASSERT(slot < kMaxForeignRegions && foreign_[slot].bytes.load(std::memory_order_relaxed) != 0,
               "unmapping foreign DMA region slot {} that is not mapped", slot);
  if (iommu_.unmap) {
    iommu_.unmap(kForeignIovaBase + slot * kForeignRegionSpanBytes,
                 round_up(foreign_[slot].bytes.load(std::memory_order_relaxed), kArenaPageBytes));
  }
  foreign_[slot].bytes.store(0, std::memory_order_release);  // closes the range before the slot is reused
  foreign_[slot].generation.store(0, std::memory_order_release);
  foreign_[slot].host.store(nullptr, std::memory_order_relaxed);
  foreign_epoch_.fetch_add(1, std::memory_order_release);
  --foreign_in_use_;
}

void DmaArena::set_iommu_hooks(IommuHooks hooks) {
  std::lock_guard lock(mutex_);
  NVMUX_ASSERT(foreign_in_use_ == 0, "IOMMU hooks installed with {} foreign DMA regions already mapped",
               foreign_in_use_);
  iommu_ = std::move(hooks);
}

std::array<DmaArena::ForeignView, DmaArena::kMaxForeignRegions> DmaArena::foreign_snapshot() const {
  std::array<ForeignView, kMaxForeignRegions> out;
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < kMaxForeignRegions; ++i) {
    out[i] =
        ForeignView{foreign_[i].host.load(std::memory_order_relaxed), foreign_[i].bytes.load(std::memory_order_relaxed),
                    foreign_[i].generation.load(std::memory_order_relaxed)};
  }
  return out;
}

void DmaArena::release(std::size_t offset, std::size_t bytes) {
  std::lock_guard lock(mutex_);
  NVMUX_ASSERT(in_use_ >= bytes, "DMA arena releases {} bytes with only {} in use", bytes, in_use_);
  in_use_ -= bytes;
  auto next = free_.lower_bound(offset);
  NVMUX_ASSERT(next == free_.end() || next->first >= offset + bytes, "DMA release [{}, +{}) overlaps a free range",
               offset, bytes);
  // Coalesce with the neighbours.
  if (next != free_.end() && next->first == offset + bytes) {
    bytes += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    NVMUX_ASSERT(prev->first + prev->second <= offset, "DMA release [{}, +{}) overlaps a free range", offset, bytes);
    if (prev->first + prev->second == offset) {
      prev->second += bytes;
      return;
    }
  }
  free_.emplace(offset, bytes);
}

}  // namespace nvmux::nvme
