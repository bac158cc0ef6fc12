#include "policy.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace nvmux::service {

namespace {

using nlohmann::json;

Status field_error(const std::string& where, std::string_view what) {
  return Status::error(StatusCode::kInvalidArgument, "policy: {}: {}", where, what);
}

template <class T>
Result<T> unsigned_field(const json& j, const std::string& where, std::uint64_t max) {
  if (!j.is_number_unsigned()) return field_error(where, "expected a non-negative integer");
  auto v = j.get<std::uint64_t>();
  if (v > max) return field_error(where, fmt::format("{} is above the limit {}", v, max));
  return static_cast<T>(v);
}

Result<NamespaceGrant> parse_namespace(const json& j, const std::string& where) {
  if (!j.is_object()) return field_error(where, "expected an object {\"nsid\": N, \"access\": \"rw\"|\"ro\"}");
  NamespaceGrant g;
  for (const auto& [key, value] : j.items()) {
    std::string at = fmt::format("{}.{}", where, key);
    if (key == "nsid") {
      auto v = unsigned_field<std::uint32_t>(value, at, UINT32_MAX);
      if (!v.ok()) return v.status();
      if (*v == 0) return field_error(at, "nsid starts at 1");
      g.nsid = *v;
    } else if (key == "access") {
      if (value == "rw") {
        g.writable = true;
      } else if (value == "ro") {
        g.writable = false;
      } else {
        return field_error(at, "expected \"rw\" or \"ro\"");
      }
    } else if (key == "lba_ranges") {
      if (!value.is_array() || value.size() > kMaxLbaRanges) {
        return field_error(at, fmt::format("expected a list of at most {} [first, last] pairs", kMaxLbaRanges));
      }
      for (std::size_t i = 0; i < value.size(); ++i) {
        const json& r = value[i];
        std::string rat = fmt::format("{}[{}]", at, i);
        if (!r.is_array() || r.size() != 2) return field_error(rat, "expected [first, last]");
        auto first = unsigned_field<std::uint64_t>(r[0], rat, UINT64_MAX);
        if (!first.ok()) return first.status();
        auto last = unsigned_field<std::uint64_t>(r[1], rat, UINT64_MAX);
        if (!last.ok()) return last.status();
        if (*last < *first) return field_error(rat, fmt::format("last {} is below first {}", *last, *first));
        g.lba_ranges.emplace_back(*first, *last);
      }
    } else {
      return field_error(at, "unknown field (known: nsid, access, lba_ranges)");
    }
  }
  if (g.nsid == 0) return field_error(where, "missing \"nsid\"");
  return g;
}

Result<PolicyRule> parse_rule(const json& j, const std::string& where) {
  if (!j.is_object()) return field_error(where, "expected an object");
  PolicyRule rule;
  bool namespaces_given = false;
  for (const auto& [key, value] : j.items()) {
    std::string at = fmt::format("{}.{}", where, key);
    if (key == "uid") {
      auto v = unsigned_field<uid_t>(value, at, UINT32_MAX - 1);
      if (!v.ok()) return v.status();
      rule.uid = *v;
    } else if (key == "gid") {
      auto v = unsigned_field<gid_t>(value, at, UINT32_MAX - 1);
      if (!v.ok()) return v.status();
      rule.gid = *v;
    } else if (key == "namespaces") {
      if (!value.is_array()) return field_error(at, "expected a list");
      namespaces_given = true;
      for (std::size_t i = 0; i < value.size(); ++i) {
        auto g = parse_namespace(value[i], fmt::format("{}[{}]", at, i));
        if (!g.ok()) return g.status();
        rule.grant.namespaces.push_back(std::move(*g));
      }
    } else if (key == "max_queues") {
      auto v = unsigned_field<std::uint32_t>(value, at, 1024);
      if (!v.ok()) return v.status();
      rule.grant.max_queues = *v;
    } else if (key == "max_arena_bytes") {
      auto v = unsigned_field<std::uint64_t>(value, at, UINT64_MAX);
      if (!v.ok()) return v.status();
      rule.grant.max_arena_bytes = *v;
    } else if (key == "max_in_flight") {
      auto v = unsigned_field<std::uint32_t>(value, at, UINT32_MAX);
      if (!v.ok()) return v.status();
      rule.grant.max_in_flight = *v;
    } else {
      return field_error(at, "unknown field (known: uid, gid, namespaces, max_queues, max_arena_bytes, max_in_flight)");
    }
  }
  if (!rule.uid && !rule.gid) return field_error(where, "a rule names a \"uid\" or a \"gid\"");
  if (!namespaces_given) rule.grant.namespaces.push_back(NamespaceGrant{});  // every namespace, read-write
  rule.grant.rule = rule.uid ? fmt::format("uid {}", *rule.uid) : fmt::format("gid {}", *rule.gid);
  return rule;
}

}  // namespace

const NamespaceGrant* Grant::find(std::uint32_t nsid) const {
  for (const NamespaceGrant& g : namespaces) {
    if (g.nsid == nsid || g.nsid == 0) return &g;
  }
  return nullptr;
}

bool Grant::range_allowed(const NamespaceGrant& g, std::uint64_t lba, std::uint64_t blocks) {
  if (g.lba_ranges.empty()) return true;
  if (blocks == 0) return false;
  std::uint64_t last = lba + blocks - 1;
  if (last < lba) return false;  // overflow
  for (const auto& [first, end] : g.lba_ranges) {
    if (lba >= first && last <= end) return true;
  }
  return false;
}

std::shared_ptr<const Policy> Policy::default_for(uid_t daemon_uid) {
  auto policy = std::make_shared<Policy>();
  for (uid_t uid : {daemon_uid, uid_t{0}}) {
    PolicyRule rule;
    rule.uid = uid;
    rule.grant.namespaces.push_back(NamespaceGrant{});
    rule.grant.rule = uid == daemon_uid ? fmt::format("default: the daemon's uid {}", uid) : "default: root";
    policy->rules_.push_back(std::move(rule));
    if (daemon_uid == 0) break;
  }
  return policy;
}

Result<std::shared_ptr<const Policy>> Policy::parse(std::string_view text) {
  if (text.size() > kMaxPolicyBytes) {
    return Status::error(StatusCode::kInvalidArgument, "policy: {} bytes is above the {}-byte limit", text.size(),
                         kMaxPolicyBytes);
  }
  // A key given twice in one object is refused, not resolved silently (nlohmann keeps the last):
  // in an access policy, which of two "uid"s or "access"es was meant is not for the parser to guess.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto no_duplicate_keys = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) open_objects.emplace_back();
    if (event == json::parse_event_t::object_end && !open_objects.empty()) open_objects.pop_back();
    if (event == json::parse_event_t::key && !open_objects.empty() && duplicate.empty() &&
        !open_objects.back().insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json j = json::parse(text.begin(), text.end(), no_duplicate_keys, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::error(StatusCode::kInvalidArgument, "policy: not valid JSON");
  if (!duplicate.empty()) return field_error(duplicate, "given twice in one object");
  if (!j.is_object()) return field_error("top level", "expected an object {\"clients\": [...]}");
  auto policy = std::make_shared<Policy>();
  for (const auto& [key, value] : j.items()) {
    if (key != "clients") return field_error(key, "unknown field (known: clients)");
    if (!value.is_array() || value.size() > kMaxPolicyRules) {
      return field_error("clients", fmt::format("expected a list of at most {} rules", kMaxPolicyRules));
    }
    for (std::size_t i = 0; i < value.size(); ++i) {
      auto rule = parse_rule(value[i], fmt::format("clients[{}]", i));
      if (!rule.ok()) return rule.status();
      policy->rules_.push_back(std::move(*rule));
    }
  }
  return std::shared_ptr<const Policy>(std::move(policy));
}

Result<std::shared_ptr<const Policy>> Policy::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::from_errno(errno, fmt::format("policy file {}", path));
  std::ostringstream text;
  text << in.rdbuf();
  auto policy = parse(text.str());
  if (!policy.ok()) return Status(policy.status().code(), fmt::format("{}: {}", path, policy.status().message()));
  return policy;
}

Result<Grant> Policy::grant_for(uid_t uid, gid_t gid) const {
  for (const PolicyRule& r : rules_) {
    if (r.uid && *r.uid == uid) return r.grant;
  }
  for (const PolicyRule& r : rules_) {
    if (r.gid && *r.gid == gid) return r.grant;
  }
  return Status::error(StatusCode::kPermissionDenied, "policy names neither uid {} nor gid {}", uid, gid);
}

}  // namespace nvmux::service
