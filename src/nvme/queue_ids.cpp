#include "nvmux/nvme/queue_ids.hpp"

#include "nvmux/common/assert.hpp"

namespace nvmux::nvme {

void IoQueueIds::reset(std::uint16_t io_queues) {
  in_use_.assign(std::size_t{io_queues} + 1, false);
  in_use_count_ = 0;
}

Result<std::uint16_t> IoQueueIds::acquire(std::string_view controller, std::string_view what) {
  for (std::size_t q = 1; q < in_use_.size(); ++q) {
    if (!in_use_[q]) {
      in_use_[q] = true;
      ++in_use_count_;
      return static_cast<std::uint16_t>(q);
    }
  }
  return Status::error(StatusCode::kUnavailable, "{}: all {} I/O queues {}{}are in use", controller, capacity(), what,
                       what.empty() ? "" : " ");
}

void IoQueueIds::release(std::uint16_t qid, std::string_view controller) {
  NVMUX_ASSERT(qid < in_use_.size() && in_use_[qid], "{}: releasing qid {} that is not in use", controller, qid);
  in_use_[qid] = false;
  --in_use_count_;
}

Result<QueueEntries> io_queue_entries(std::string_view controller, const QueuePairOptions& options,
                                      std::uint32_t max_entries) {
  QueueEntries entries{options.sq_entries, options.cq_entries == 0 ? options.sq_entries : options.cq_entries};
  if (entries.sq < 2 || entries.sq > max_entries || entries.cq < 2 || entries.cq > max_entries) {
    return Status::error(StatusCode::kInvalidArgument, "{}: queue of {} SQ / {} CQ entries outside [2, {}]", controller,
                         entries.sq, entries.cq, max_entries);
  }
  return entries;
}

}  // namespace nvmux::nvme
