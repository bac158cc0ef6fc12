#pragma once
// DMA memory model shared by the driver and a controller backend.
//
// A DmaArena is one contiguous region the "device" can reach. Every byte in it has an I/O virtual
// address (IOVA) = iova_base + offset, deliberately unrelated to the host pointer, so code that
// puts a host pointer where an IOVA belongs fails translation instead of working by accident.
// PRP entries carry IOVAs; the device turns them back into host pointers with translate(), which
// refuses any range that is not wholly inside the arena (a bad PRP is a status, never a crash).
//
// Threading: DmaArena is thread-safe. alloc() and buffer release take a mutex (setup path only);
// translate() is lock-free and may run on the device thread at the same time. A DmaBuffer is a
// move-only handle owned by one thread at a time; the bytes it names are shared with the device
// under the queue's ordering rules (qpair.hpp). Buffers keep their arena alive.
//
// Errors: alloc() returns kInvalidArgument (size 0, alignment not a power of two or above the page)
// or kUnavailable (arena exhausted or too fragmented, with the sizes in the message).
//
// Foreign regions: memory the arena did not allocate (a client's shared-memory arena mapped by
// nvmuxd) can be made device-reachable with map_foreign(). It gets an IOVA range of its own, far
// above the arena's, and translate() resolves it like arena memory, so the device moves data
// straight into that memory (zero copy). The region stays reachable until its ForeignRegion handle
// is destroyed; the caller must not destroy it while commands that name it are outstanding.
//
// Behind an IOMMU (the vfio backend) the device reaches only what the IOMMU maps. The backend maps
// the arena itself once, and installs IommuHooks so that every foreign region is mapped at its IOVA
// before map_foreign returns and unmapped before its slot can be reused.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>

#include "nvmux/common/status.hpp"

namespace nvmux::nvme {

// A device-visible byte range: where the device should read or write.
struct IoVec {
  std::uint64_t iova = 0;
  std::uint32_t bytes = 0;
};

class DmaArena;

// A foreign memory region made device-reachable by DmaArena::map_foreign. Move-only; destroying it
// (or reset()) makes the range unreachable again. Owned by one thread at a time.
class ForeignRegion {
 public:
  ForeignRegion() = default;
  ForeignRegion(ForeignRegion&& other) noexcept { *this = std::move(other); }
  ForeignRegion& operator=(ForeignRegion&& other) noexcept;
  ForeignRegion(const ForeignRegion&) = delete;
  ForeignRegion& operator=(const ForeignRegion&) = delete;
  ~ForeignRegion() { reset(); }

  std::byte* data() const { return data_; }
  std::uint64_t iova() const { return iova_; }
  std::size_t size() const { return size_; }
  bool valid() const { return data_ != nullptr; }
  // The device view of [offset, offset + len); asserts the range lies inside the region.
  IoVec slice(std::size_t offset, std::size_t len) const {
    NVMUX_ASSERT(offset <= size_ && len <= size_ - offset && len <= UINT32_MAX,
                 "ForeignRegion slice [{}, +{}) outside a {}-byte region", offset, len, size_);
    return IoVec{iova_ + offset, static_cast<std::uint32_t>(len)};
  }
  void reset();

 private:
  friend class DmaArena;
  std::shared_ptr<DmaArena> arena_;
  std::size_t slot_ = 0;
  std::byte* data_ = nullptr;
  std::uint64_t iova_ = 0;
  std::size_t size_ = 0;
};

class DmaBuffer {
 public:
  DmaBuffer() = default;
  DmaBuffer(DmaBuffer&& other) noexcept { *this = std::move(other); }
  DmaBuffer& operator=(DmaBuffer&& other) noexcept;
  DmaBuffer(const DmaBuffer&) = delete;
  DmaBuffer& operator=(const DmaBuffer&) = delete;
  ~DmaBuffer() { reset(); }

  std::byte* data() const { return data_; }
  std::uint64_t iova() const { return iova_; }
  std::size_t size() const { return size_; }
  std::span<std::byte> bytes() const { return {data_, size_}; }
  bool valid() const { return data_ != nullptr; }
  // The device view of [offset, offset + len); asserts the range lies inside the buffer.
  IoVec slice(std::size_t offset, std::size_t len) const {
    NVMUX_ASSERT(offset <= size_ && len <= size_ - offset && len <= UINT32_MAX,
                 "DmaBuffer slice [{}, +{}) outside a {}-byte buffer", offset, len, size_);
    return IoVec{iova_ + offset, static_cast<std::uint32_t>(len)};
  }
  IoVec whole() const { return slice(0, size_); }
  // Returns the memory to its arena now (the destructor does the same).
  void reset();

 private:
  friend class DmaArena;
  std::shared_ptr<DmaArena> arena_;
  std::byte* data_ = nullptr;
  std::uint64_t iova_ = 0;
  std::size_t size_ = 0;
  std::size_t reserved_ = 0;  // bytes taken from the arena (size rounded up)
};

// What an arena's memory is made of. kHugePreferred takes 2 MiB huge pages (MAP_HUGETLB) when the
// system has enough free, else 4 KiB pages; page_bytes() says which it got.
enum class DmaPages { kSmall, kHugePreferred };

// How a backend behind an IOMMU follows the arena's foreign regions (vfio: VFIO_IOMMU_MAP_DMA and
// UNMAP_DMA). Called under the arena's mutex; `bytes` is the region's size rounded up to 4 KiB.
// A map error fails map_foreign with that status; unmap must not fail (it logs instead).
struct IommuHooks {
  std::function<Status(std::uint64_t iova, std::byte* host, std::size_t bytes)> map;
  std::function<void(std::uint64_t iova, std::size_t bytes)> unmap;
};

class DmaArena : public std::enable_shared_from_this<DmaArena> {
 public:
  // Default IOVA base: far from typical user-space pointers and not page zero.
  static constexpr std::uint64_t kDefaultIovaBase = 0x0000'4000'0000'0000ull;
  static constexpr std::size_t kAllocGranuleBytes = 64;
  // Foreign regions: at most kMaxForeignRegions at once, each at most kForeignRegionSpanBytes, at
  // IOVA kForeignIovaBase + slot * kForeignRegionSpanBytes.
  static constexpr std::size_t kMaxForeignRegions = 256;
  static constexpr std::uint64_t kForeignRegionSpanBytes = std::uint64_t{1} << 36;  // 64 GiB
  static constexpr std::uint64_t kForeignIovaBase = 0x0000'8000'0000'0000ull;

  static constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

  // Maps `bytes` (rounded up to the page size) of anonymous memory: 4 KiB pages reserved lazily
  // (MAP_NORESERVE), or 2 MiB huge pages reserved at once (see DmaPages).
  // Errors: kInvalidArgument (bytes 0), mmap's errno as its code (Status::from_errno).
  static Result<std::shared_ptr<DmaArena>> create(std::size_t bytes, std::uint64_t iova_base = kDefaultIovaBase,
                                                  DmaPages pages = DmaPages::kSmall);

  DmaArena(const DmaArena&) = delete;
  DmaArena& operator=(const DmaArena&) = delete;
  ~DmaArena();

  // Zero-filled memory of `bytes`, aligned to `align` (power of two, at most 4096). Thread-safe.
  Result<DmaBuffer> alloc(std::size_t bytes, std::size_t align = 4096);

  // Makes `memory` (page aligned, at most kForeignRegionSpanBytes) device-reachable until the
  // returned handle is destroyed. Thread-safe. Errors: kInvalidArgument (empty, misaligned, too
  // large), kUnavailable (kMaxForeignRegions in use), the IOMMU hook's map error.
  Result<ForeignRegion> map_foreign(std::span<std::byte> memory);
  // Installs the hooks every later map_foreign / region release calls. Once, before any foreign
  // region exists (asserted).
  void set_iommu_hooks(IommuHooks hooks);

  // Host pointer for [iova, iova + len), or nullptr when any byte lies outside the arena and every
  // mapped foreign region. Lock-free; the device's only way into host memory.
  std::byte* translate(std::uint64_t iova, std::size_t len) const {
    std::uint64_t offset = iova - iova_base_;  // wraps to a huge value below the base
    if (iova >= iova_base_ && offset <= size_ && len <= size_ - offset) return base_ + offset;
    return translate_foreign(iova, len);
  }
  // Whether [host, host + len) lies inside the arena's own memory (not a foreign region).
  bool owns(const std::byte* host, std::size_t len) const {
    return host >= base_ && host <= base_ + size_ && len <= static_cast<std::size_t>(base_ + size_ - host);
  }

  std::uint64_t iova_base() const { return iova_base_; }
  std::size_t size() const { return size_; }
  std::size_t page_bytes() const { return page_bytes_; }
  // The arena's own memory (for a backend that maps it into an IOMMU or registers it).
  std::byte* base() const { return base_; }
  std::size_t bytes_in_use() const;
  std::size_t foreign_regions_in_use() const;

  // For a backend that pins memory per region on its own (uring's registered buffers, one table
  // per ring): every map_foreign and unmap bumps foreign_epoch(); foreign_snapshot() reads every
  // slot consistently; foreign_generation(slot) is lock-free. A generation is never reused and is
  // 0 for a free slot, so an unchanged generation means the very same region is still mapped.
  struct ForeignView {
    std::byte* host = nullptr;
    std::size_t bytes = 0;
    std::uint64_t generation = 0;
  };
  std::uint64_t foreign_epoch() const { return foreign_epoch_.load(std::memory_order_acquire); }
  std::array<ForeignView, kMaxForeignRegions> foreign_snapshot() const;
  std::uint64_t foreign_generation(std::size_t slot) const {
    return foreign_[slot].generation.load(std::memory_order_acquire);
  }

 private:
  DmaArena(std::byte* base, std::size_t size, std::uint64_t iova_base, std::size_t page_bytes);
  void release(std::size_t offset, std::size_t bytes);
  void unmap_foreign(std::size_t slot);
  std::byte* translate_foreign(std::uint64_t iova, std::size_t len) const {
    std::uint64_t rel = iova - kForeignIovaBase;
    if (iova < kForeignIovaBase || rel / kForeignRegionSpanBytes >= kMaxForeignRegions) return nullptr;
    const ForeignSlot& slot = foreign_[rel / kForeignRegionSpanBytes];
    std::uint64_t offset = rel % kForeignRegionSpanBytes;
    // Acquire: pairs with map_foreign's release of bytes, so host is the region's pointer.
    std::size_t bytes = slot.bytes.load(std::memory_order_acquire);
    if (offset > bytes || len > bytes - offset) return nullptr;
    return slot.host.load(std::memory_order_relaxed) + offset;
  }
  friend class DmaBuffer;
  friend class ForeignRegion;

  // One foreign region; bytes == 0 when free. Written under mutex_, read lock-free by translate().
  struct ForeignSlot {
    std::atomic<std::byte*> host{nullptr};
    std::atomic<std::size_t> bytes{0};
    std::atomic<std::uint64_t> generation{0};
  };

  std::byte* const base_;
  const std::size_t size_;
  const std::uint64_t iova_base_;
  const std::size_t page_bytes_;
  mutable std::mutex mutex_;
  std::map<std::size_t, std::size_t> free_;  // offset -> bytes, coalesced
  std::size_t in_use_ = 0;
  std::array<ForeignSlot, kMaxForeignRegions> foreign_{};
  std::size_t foreign_in_use_ = 0;             // under mutex_
  std::uint64_t last_foreign_generation_ = 0;  // under mutex_
  std::atomic<std::uint64_t> foreign_epoch_{0};
  IommuHooks iommu_;  // under mutex_
};

}  // namespace nvmux::nvme
