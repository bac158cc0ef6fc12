// Policy::parse, the --policy file's parser: what it accepts, and that every refusal names the
// field. (tests/fuzz/policy_fuzz.cpp feeds it arbitrary bytes.)
#include <gtest/gtest.h>

#include "policy.hpp"

namespace nvmux::service {
namespace {

std::string refusal(std::string_view text) {
  auto policy = Policy::parse(text);
  return policy.ok() ? std::string("(accepted)") : policy.status().message();
}

TEST(PolicyParse, AcceptsRulesAndGrantsWhatTheyName) {
  auto policy = Policy::parse(
      R"({"clients": [{"uid": 1000, "namespaces": [{"nsid": 1, "access": "ro", "lba_ranges": [[0, 99]]}]}]})");
  ASSERT_TRUE(policy.ok()) << policy.status().to_string();
  ASSERT_EQ((*policy)->rules().size(), 1u);
  auto grant = (*policy)->grant_for(1000, 1000);
  ASSERT_TRUE(grant.ok()) << grant.status().to_string();
  ASSERT_EQ(grant->namespaces.size(), 1u);
  EXPECT_FALSE(grant->namespaces[0].writable);
  EXPECT_FALSE((*policy)->grant_for(1001, 1001).ok());
}

// nlohmann keeps the last of two equal keys; an access policy must not be read that way.
TEST(PolicyParse, AKeyGivenTwiceInOneObjectIsRefused) {
  EXPECT_EQ(refusal(R"({"clients": [], "clients": [{"uid": 0}]})"), "policy: clients: given twice in one object");
  EXPECT_EQ(refusal(R"({"clients": [{"uid": 1000, "uid": 0}]})"), "policy: uid: given twice in one object");
  EXPECT_EQ(refusal(R"({"clients": [{"uid": 1000, "namespaces": [{"nsid": 1, "access": "ro", "access": "rw"}]}]})"),
            "policy: access: given twice in one object");
  // The same key in sibling objects is fine.
  EXPECT_EQ(refusal(R"({"clients": [{"uid": 1000}, {"uid": 1001}]})"), "(accepted)");
}

TEST(PolicyParse, RefusalsNameWhatWasWrong) {
  EXPECT_EQ(refusal("{ not json"), "policy: not valid JSON");
  EXPECT_EQ(refusal("[]"), "policy: top level: expected an object {\"clients\": [...]}");
  EXPECT_EQ(refusal(R"({"client": []})"), "policy: client: unknown field (known: clients)");
}

}  // namespace
}  // namespace nvmux::service
