#pragma once
// nvmuxd's access policy: who may connect, which namespaces each may use and how, and the caps on
// a session. Loaded from a JSON file (--policy FILE, docs/service.md "Policy") or the default:
// only the daemon's own uid and root may connect, with read-write access to every namespace.
//
// Threading: a Policy is immutable once built; share it as shared_ptr<const Policy>.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nvmux/common/status.hpp"

namespace nvmux::service {

// Limits for a policy file.
inline constexpr std::size_t kMaxPolicyBytes = 1 << 20;
inline constexpr std::size_t kMaxPolicyRules = 1024;
inline constexpr std::size_t kMaxLbaRanges = 64;  // per namespace grant

struct NamespaceGrant {
  std::uint32_t nsid = 0;  // 0: every namespace
  bool writable = true;
  // Allowed [first, last] LBA ranges (inclusive); empty: the whole namespace.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> lba_ranges;
};

// What one connected client may do.
struct Grant {
  std::string rule;  // which rule matched, for logs ("uid 1000", "default: daemon uid")
  std::vector<NamespaceGrant> namespaces;
  std::uint32_t max_queues = 16;
  std::uint64_t max_arena_bytes = std::uint64_t{1} << 30;
  std::uint32_t max_in_flight = 16 * 1024;  // summed over the session's queues (depths)

  // The grant for `nsid`, or nullptr when the namespace is not granted.
  const NamespaceGrant* find(std::uint32_t nsid) const;
  // Whether [lba, lba + blocks) lies inside one allowed range of `g` (blocks >= 1, no overflow).
  static bool range_allowed(const NamespaceGrant& g, std::uint64_t lba, std::uint64_t blocks);
};

struct PolicyRule {
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  Grant grant;
};

class Policy {
 public:
  // Only `daemon_uid` and root, full access.
  static std::shared_ptr<const Policy> default_for(uid_t daemon_uid);
  // Errors: kInvalidArgument naming the field (or the JSON error and its byte offset).
  static Result<std::shared_ptr<const Policy>> parse(std::string_view json);
  // Errors: as parse, plus the file's errno (kNotFound, kPermissionDenied, ...), naming the path.
  static Result<std::shared_ptr<const Policy>> load(const std::string& path);

  // The first rule naming `uid`, else the first naming `gid`; kPermissionDenied when none does.
  Result<Grant> grant_for(uid_t uid, gid_t gid) const;
  const std::vector<PolicyRule>& rules() const { return rules_; }

 private:
  std::vector<PolicyRule> rules_;
};

}  // namespace nvmux::service
