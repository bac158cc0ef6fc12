#pragma once
// nvmux-torture: a hostile nvmuxd client. It speaks the wire protocol itself (not through
// libnvmux_client, whose checks would stop it) and, in bounded rounds, attacks the daemon the ways
// a buggy or malicious process could:
//
//   descriptors  floods a queue with descriptors whose every field is out of range in turn
//                (opcode, namespace, LBA and LBA + count overflow, block counts, arena offset and
//                length, alignment), mixed with valid ones inside its own LBA range; checks every
//                completion: the tag is one it sent and still outstanding, a bad descriptor never
//                succeeds, a good one never fails
//   unread       fills the SQ and never reads its CQ, then drains: the daemon must stop at the
//                CQ's room, not overflow it
//   garbage      writes random bytes over its session memory (everything, a queue block, ring
//                indices, the arena) and kicks the owner
//   indices      publishes impossible ring indices (SQ tail beyond capacity or backwards, CQ head
//                beyond the tail): the daemon must close the session, and the time it takes is
//                measured
//   seals        tries to grow, shrink and re-seal the session memfd: the kernel must refuse
//   control      sends malformed, truncated, oversized and unknown control messages, requests with
//                out-of-range arguments, and file descriptors the daemon never asked for
//   queues       creates queues past the session cap, destroys unknown and busy ones
//   vanish       leaves with requests in flight, without a goodbye
//
// After every round a well-behaved control connection asks the daemon for its counters: a daemon
// that does not answer within the liveness bound ends the run as a failure.
//
// Threading: run_torture runs on the calling thread.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nvmux/common/status.hpp"

namespace nvmux::torture {

struct TortureParams {
  std::string socket;                  // "" = the default socket path
  std::uint64_t rounds = 100;          // attack rounds, spread over every attack kind
  std::uint64_t descriptors = 100000;  // hostile descriptors in all, spread over descriptor rounds
  std::uint64_t seed = 1;
  // The only LBAs a valid write of this client may touch (namespace 1): [lba_first, lba_first + lba_count).
  std::uint64_t lba_first = 0;
  std::uint64_t lba_count = 0;       // 0: no valid writes at all (valid-looking requests are reads)
  int liveness_timeout_ms = 5000;    // a daemon silent for longer counts as hung
  int detection_timeout_ms = 5000;   // a corrupt session must be closed within this
  std::vector<std::string> attacks;  // the attack kinds to run, in turn ({}: every one)
  int unread_hold_ms = 10;           // how long an unread round leaves its CQ full and its SQ waiting
};

struct AttackCount {
  std::string name;
  std::uint64_t rounds = 0;
  std::uint64_t sessions_closed_by_daemon = 0;  // the daemon hung up on the hostile session
};

struct TortureReport {
  std::vector<AttackCount> attacks;
  std::uint64_t descriptors_sent = 0;
  std::uint64_t completions = 0;
  std::uint64_t refused = 0;           // error completions for bad descriptors (expected)
  std::uint64_t valid_completed = 0;   // valid descriptors that completed with status 0
  std::uint64_t control_messages = 0;  // malformed or hostile control messages sent
  std::uint64_t control_errors = 0;    // ... answered with an error status
  std::uint64_t seals_refused = 0;     // resize / re-seal attempts the kernel refused
  std::uint64_t max_detection_ms = 0;  // worst time from impossible indices to the daemon's hang-up
  std::uint64_t max_liveness_ms = 0;   // worst answer time of the daemon between rounds
  // Failures: each is a daemon bug (or a dead daemon). Empty when the daemon held.
  std::vector<std::string> failures;
};

// Runs every attack for params.rounds rounds in all. Errors: kInvalidArgument for bad params,
// kUnavailable when no daemon answers at the start. A daemon that dies or misbehaves during the
// run is not an error of the call: it is reported in `failures`.
Result<TortureReport> run_torture(const TortureParams& params,
                                  const std::function<void(std::uint64_t round)>& progress = {});

std::string format_report(const TortureReport& report);

}  // namespace nvmux::torture
