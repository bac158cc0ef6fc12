#include "nvmux/common/histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

#include "nvmux/common/counter.hpp"

namespace nvmux {

std::size_t Histogram::bucket_of(std::uint64_t value) {
  if (value < 2 * kSubBuckets) return static_cast<std::size_t>(value);
  unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(value));
  unsigned shift = msb - kSubBucketBits;  // keeps the top kSubBucketBits+1 bits
  std::uint64_t sub = value >> shift;     // in [kSubBuckets, 2*kSubBuckets)
  return static_cast<std::size_t>((shift + 1) * kSubBuckets + (sub - kSubBuckets));
}

std::uint64_t Histogram::bucket_upper(std::size_t bucket) {
  if (bucket < 2 * kSubBuckets) return bucket;
  std::uint64_t shift = bucket / kSubBuckets - 1;
  std::uint64_t sub = bucket % kSubBuckets + kSubBuckets;
  std::uint64_t upper_exclusive_hi = (sub + 1) << shift;  // may be 2^64 for the very top bucket
  return upper_exclusive_hi == 0 ? UINT64_MAX : upper_exclusive_hi - 1;
}

void Histogram::record_n(std::uint64_t value, std::uint64_t n) {
  if (n == 0) return;
  single_writer_add(buckets_[bucket_of(value)], n);
  single_writer_add(count_, n);
  single_writer_add(sum_, value * n);
  if (value < min_.load(std::memory_order_relaxed)) min_.store(value, std::memory_order_relaxed);
  if (value > max_.load(std::memory_order_relaxed)) max_.store(value, std::memory_order_relaxed);
}

void Histogram::merge(const Histogram& other) {
  for (std::size_t i = 0; i < kBuckets; ++i)
    single_writer_add(buckets_[i], other.buckets_[i].load(std::memory_order_relaxed));
  single_writer_add(count_, other.count());
  single_writer_add(sum_, other.sum_.load(std::memory_order_relaxed));
  min_.store(std::min(min_.load(std::memory_order_relaxed), other.min_.load(std::memory_order_relaxed)),
             std::memory_order_relaxed);
  max_.store(std::max(max(), other.max()), std::memory_order_relaxed);
}

void Histogram::reset() {
  for (auto& b : buckets_) b.store(0, std::memory_order_relaxed);
  count_.store(0, std::memory_order_relaxed);
  sum_.store(0, std::memory_order_relaxed);
  min_.store(UINT64_MAX, std::memory_order_relaxed);
  max_.store(0, std::memory_order_relaxed);
}

void Histogram::copy_from(const Histogram& other) {
  reset();
  merge(other);
}

std::uint64_t Histogram::min() const {
  std::uint64_t m = min_.load(std::memory_order_relaxed);
  return m == UINT64_MAX ? 0 : m;
}

double Histogram::mean() const {
  std::uint64_t n = count();
  return n == 0 ? 0.0 : static_cast<double>(sum_.load(std::memory_order_relaxed)) / static_cast<double>(n);
}

std::uint64_t Histogram::percentile(double pct) const {
  // Sum the buckets rather than trusting count_: a reader racing the writer must not overshoot.
  std::uint64_t total = 0;
  for (const auto& b : buckets_) total += b.load(std::memory_order_relaxed);
  if (total == 0) return 0;
  if (pct <= 0.0) return min();
  if (pct >= 100.0) return max();
  auto rank = static_cast<std::uint64_t>(std::ceil(pct / 100.0 * static_cast<double>(total)));
  rank = std::max<std::uint64_t>(rank, 1);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    std::uint64_t in_bucket = buckets_[i].load(std::memory_order_relaxed);
    if (seen + in_bucket >= rank) {
      // Interpolate within the bucket (values assumed spread evenly across it) rather than
      // returning its upper edge, which biases every percentile up by up to a bucket's width.
      std::uint64_t lower = bucket_lower(i);
      std::uint64_t width = bucket_upper(i) - lower + 1;
      double fraction = static_cast<double>(rank - seen) / static_cast<double>(in_bucket);  // in (0, 1]
      auto position = static_cast<std::uint64_t>(std::ceil(fraction * static_cast<double>(width)));
      std::uint64_t value = lower + (position == 0 ? 0 : position - 1);
      return std::clamp(value, min(), max());
    }
    seen += in_bucket;
  }
  return max();
}

}  // namespace nvmux
