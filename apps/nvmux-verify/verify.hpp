#pragma once
// A verifying nvmuxd client: random writes and reads over one LBA partition of a namespace, every
// written block stamped (LBA, generation, seed) and every block read checked against the last
// stamp written there. Several processes verify one namespace side by side with --partition K/N.
//
// Threading: run_verify runs on the calling thread (one queue, polled).

#include <cstdint>
#include <functional>
#include <string>

#include "nvmux/common/partition.hpp"
#include "nvmux/common/status.hpp"

namespace nvmux::verify {

struct VerifyParams {
  std::string socket;  // "" = default
  std::uint32_t nsid = 1;
  Partition partition;  // --partition K/N
  std::uint32_t depth = 16;
  std::uint32_t io_blocks = 1;
  double seconds = 5;
  int write_percent = 50;
  std::uint64_t seed = 1;
};

struct VerifyReport {
  std::uint64_t writes = 0;
  std::uint64_t reads = 0;
  std::uint64_t mismatches = 0;
  std::uint64_t io_errors = 0;
  std::string first_error;  // "" when none
  double seconds = 0;
  std::uint64_t first_lba = 0;
  std::uint64_t lbas = 0;
  std::uint64_t session_id = 0;
};

// Errors: kInvalidArgument (bad params, naming the flag), kUnavailable (no daemon), the client's
// set-up errors. I/O errors and mismatches are counted in the report, not returned.
Result<VerifyReport> run_verify(const VerifyParams& params, const std::function<void(double)>& progress = {});

}  // namespace nvmux::verify
