// libFuzzer target: Policy::parse, the parser of nvmuxd's --policy file. Any bytes must give a
// Policy or an kInvalidArgument Status naming what is wrong: never a crash, an abort or an escaping
// exception (libFuzzer reports an uncaught exception as a crash).
//
// Input: the policy text. A Policy that parsed is then queried as the daemon does (grant_for the
// uids and gids it names, find, range_allowed) and checked against the documented limits.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "policy.hpp"

namespace {

using namespace nvmux::service;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "policy_fuzz: %s\n", what);
  std::abort();
}

void check_grant(const Grant& g) {
  if (g.rule.empty()) fail("a grant without a rule name");
  for (const NamespaceGrant& ns : g.namespaces) {
    if (ns.lba_ranges.size() > kMaxLbaRanges) fail("more LBA ranges than the limit");
    for (const auto& [first, last] : ns.lba_ranges) {
      if (last < first) fail("an LBA range that ends before it starts");
      if (!Grant::range_allowed(ns, first, 1)) fail("a range's first block is not allowed");
      if (!Grant::range_allowed(ns, last, 1)) fail("a range's last block is not allowed");
    }
    if (g.find(ns.nsid == 0 ? 1 : ns.nsid) == nullptr) fail("a granted namespace find() does not see");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto policy = Policy::parse(text);
  if (!policy.ok()) {
    if (policy.status().code() != nvmux::StatusCode::kInvalidArgument) fail("an error that is not kInvalidArgument");
    if (policy.status().message().rfind("policy: ", 0) != 0) fail("an error that does not start with \"policy: \"");
    return 0;
  }
  const auto& rules = (*policy)->rules();
  if (rules.size() > kMaxPolicyRules) fail("more rules than the limit");
  for (const PolicyRule& r : rules) {
    if (!r.uid && !r.gid) fail("a rule naming neither uid nor gid");
    check_grant(r.grant);
    auto g = (*policy)->grant_for(r.uid.value_or(UINT32_MAX), r.gid.value_or(UINT32_MAX));
    if (!g.ok()) fail("grant_for refuses an id a rule names");
    check_grant(*g);
  }
  return 0;
}
