#include "nvmux/common/status.hpp"

#include <gtest/gtest.h>

namespace nvmux {
namespace {

TEST(Status, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.to_string(), "ok");
  EXPECT_EQ(s.to_errno(), 0);
}

TEST(Status, ErrorCarriesCodeAndFormattedMessage) {
  Status s = Status::error(StatusCode::kInvalidArgument, "capacity {} is odd", 3);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "capacity 3 is odd");
  EXPECT_EQ(s.to_string(), "invalid argument: capacity 3 is odd");
  EXPECT_EQ(s.to_errno(), -EINVAL);
}

TEST(Status, FromErrnoNamesTheCallAndErrno) {
  Status s = Status::from_errno(ENOENT, "open(/nope)");
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("open(/nope)"), std::string::npos);
  EXPECT_NE(s.message().find("errno 2"), std::string::npos);
}

TEST(Status, EveryCodeHasANameAndAnErrno) {
  for (int c = 1; c <= static_cast<int>(StatusCode::kInternal); ++c) {
    Status s(static_cast<StatusCode>(c), "x");
    EXPECT_NE(to_string(s.code()), "unknown status") << c;
    EXPECT_LT(s.to_errno(), 0) << c;
  }
}

Result<int> half(int v) {
  if (v % 2 != 0) return Status::error(StatusCode::kInvalidArgument, "{} is odd", v);
  return v / 2;
}

Status chain(int v, int* out) {
  auto r = half(v);
  NVMUX_RETURN_IF_ERROR(r.status());
  *out = *r;
  return {};
}

TEST(Result, HoldsValueOrStatus) {
  auto good = half(8);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 4);
  EXPECT_TRUE(good.status().ok());
  auto bad = half(3);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  int out = 0;
  EXPECT_TRUE(chain(10, &out).ok());
  EXPECT_EQ(out, 5);
  EXPECT_EQ(chain(7, &out).code(), StatusCode::kInvalidArgument);
}

TEST(ResultDeathTest, ValueOfErrorCrashesWithTheError) {
  auto bad = half(3);
  EXPECT_DEATH((void)bad.value(), "3 is odd");
}

TEST(AssertDeathTest, AssertStaysOnAndSaysWhy) {
  int capacity = 3;
  EXPECT_DEATH(NVMUX_ASSERT(capacity % 2 == 0, "capacity {} must be even", capacity),
               "invariant broken.*capacity 3 must be even");
}

}  // namespace
}  // namespace nvmux
