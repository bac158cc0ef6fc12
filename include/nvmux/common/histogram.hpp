#pragma once
// Histogram: a log-linear histogram of non-negative integer values (latencies in ns, batch sizes).
//
// Threading: single writer, many readers. record() must come from one thread at a time (the
// owner); snapshot(), percentile() and the other readers may run on any thread at the same time as
// the writer and see a slightly stale but never torn view. Counters are relaxed atomics written
// with plain load+store (no read-modify-write), so recording costs about as much as a plain
// increment.
//
// Precision: values below 64 are exact; above, buckets are 1/32 of a power of two wide (relative
// error under 3.2%). percentile() interpolates linearly within the bucket holding that rank
// (values assumed evenly spread across it), clipped to the smallest and largest values recorded.

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace nvmux {

class Histogram {
 public:
  static constexpr unsigned kSubBucketBits = 5;
  static constexpr std::uint64_t kSubBuckets = 1u << kSubBucketBits;                // 32
  static constexpr std::size_t kBuckets = (64 - kSubBucketBits + 1) * kSubBuckets;  // 1920

  Histogram() = default;
  Histogram(const Histogram& other) { copy_from(other); }
  Histogram& operator=(const Histogram& other) {
    if (this != &other) copy_from(other);
    return *this;
  }

  // Owner thread only.
  void record(std::uint64_t value) { record_n(value, 1); }
  void record_n(std::uint64_t value, std::uint64_t count);
  // Adds every count of `other` into this histogram (owner thread only).
  void merge(const Histogram& other);
  void reset();

  // Any thread.
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  std::uint64_t min() const;  // 0 when empty
  std::uint64_t max() const { return max_.load(std::memory_order_relaxed); }
  double mean() const;
  // The value at or below which `pct` percent of recorded values lie (pct in [0, 100]); 0 when empty.
  std::uint64_t percentile(double pct) const;

  // Calls fn(lower, upper, count) for every non-empty bucket, smallest values first; both bounds are
  // inclusive. For exporting the whole distribution (to merge runs, or to plot it).
  template <typename Fn>
  void for_each_bucket(Fn&& fn) const {
    for (std::size_t i = 0; i < kBuckets; ++i) {
      std::uint64_t n = buckets_[i].load(std::memory_order_relaxed);
      if (n != 0) fn(bucket_lower(i), bucket_upper(i), n);
    }
  }

  static std::size_t bucket_of(std::uint64_t value);
  static std::uint64_t bucket_lower(std::size_t bucket) { return bucket == 0 ? 0 : bucket_upper(bucket - 1) + 1; }
  static std::uint64_t bucket_upper(std::size_t bucket);

 private:
  void copy_from(const Histogram& other);

  std::array<std::atomic<std::uint64_t>, kBuckets> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_{0};
  std::atomic<std::uint64_t> min_{UINT64_MAX};
  std::atomic<std::uint64_t> max_{0};
};

}  // namespace nvmux
