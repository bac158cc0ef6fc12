#pragma once
// I/O queue ids and queue sizes, as every controller backend hands them out.
//
// Threading: IoQueueIds is not thread-safe; its controller calls it under the controller's own lock.

#include <cstdint>
#include <string_view>
#include <vector>

#include "nvmux/common/status.hpp"
#include "nvmux/nvme/qpair.hpp"

namespace nvmux::nvme {

// Which I/O queue ids (1..count) are handed out. Id 0, the admin queue, never is.
class IoQueueIds {
 public:
  // Forgets every id and makes 1..io_queues available.
  void reset(std::uint16_t io_queues);
  // The lowest free id, now in use. Errors: kUnavailable ("<controller>: all N I/O queues ... are
  // in use"; `what` names the limit, e.g. "the device granted").
  Result<std::uint16_t> acquire(std::string_view controller, std::string_view what = "");
  // Returns an id. Releasing an id that is not in use is a broken invariant and crashes.
  void release(std::uint16_t qid, std::string_view controller);
  std::uint16_t capacity() const { return static_cast<std::uint16_t>(in_use_.empty() ? 0 : in_use_.size() - 1); }
  std::uint32_t in_use() const { return in_use_count_; }

 private:
  std::vector<bool> in_use_;  // [qid]; [0] unused
  std::uint32_t in_use_count_ = 0;
};

// The SQ and CQ sizes of a new I/O queue pair: options.cq_entries 0 means the SQ's size. Errors:
// kInvalidArgument when either lies outside [2, max_entries].
struct QueueEntries {
  std::uint32_t sq = 0;
  std::uint32_t cq = 0;
};
Result<QueueEntries> io_queue_entries(std::string_view controller, const QueuePairOptions& options,
                                      std::uint32_t max_entries);

}  // namespace nvmux::nvme
