#include "nvmux/common/status.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <iterator>
#include <utility>

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
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find("open(/nope)"), std::string::npos);
  EXPECT_NE(s.message().find("errno 2"), std::string::npos);
  EXPECT_EQ(s.sys_errno(), ENOENT);
  EXPECT_EQ(s.to_errno(), -ENOENT) << "the C ABI sees the errno the system call gave, not -EFAULT";
}

// Every errno with a code of its own: from_errno gives that code and keeps the errno for to_errno.
struct ErrnoMapping {
  int err;
  StatusCode code;
};
constexpr ErrnoMapping kErrnoMappings[] = {
    {ENOENT, StatusCode::kNotFound},
    {EACCES, StatusCode::kPermissionDenied},
    {EPERM, StatusCode::kPermissionDenied},
    {EAGAIN, StatusCode::kWouldBlock},
    {EWOULDBLOCK, StatusCode::kWouldBlock},
    {ENOMEM, StatusCode::kResourceExhausted},
    {ENOSPC, StatusCode::kResourceExhausted},
    {EMFILE, StatusCode::kResourceExhausted},
    {ENFILE, StatusCode::kResourceExhausted},
    {ENOBUFS, StatusCode::kResourceExhausted},
    {EDQUOT, StatusCode::kResourceExhausted},
    {ETIMEDOUT, StatusCode::kTimeout},
    {EEXIST, StatusCode::kAlreadyExists},
    {EINVAL, StatusCode::kInvalidArgument},
    {EIO, StatusCode::kIoError},
    {ENOTCONN, StatusCode::kUnavailable},
    {ECONNREFUSED, StatusCode::kUnavailable},
    {ECONNRESET, StatusCode::kUnavailable},
    {EPIPE, StatusCode::kUnavailable},
    {ECANCELED, StatusCode::kAborted},
    {ERANGE, StatusCode::kOutOfRange},
    {EOVERFLOW, StatusCode::kOutOfRange},
    {ENOTSUP, StatusCode::kUnsupported},
    {EOPNOTSUPP, StatusCode::kUnsupported},
    {ENOSYS, StatusCode::kUnsupported},
    {EBADMSG, StatusCode::kCorruption},
};

TEST(Status, FromErrnoMapsEachCommonErrnoToItsCodeAndBack) {
  for (const ErrnoMapping& m : kErrnoMappings) {
    Status s = Status::from_errno(m.err, "call");
    EXPECT_EQ(s.code(), m.code) << "errno " << m.err << " (" << std::strerror(m.err) << ")";
    EXPECT_EQ(status_code_for_errno(m.err), m.code) << "errno " << m.err;
    EXPECT_EQ(s.to_errno(), -m.err) << "errno " << m.err << " must survive to the C ABI";
  }
}

TEST(Status, AnErrnoWithoutACodeIsInternalAndStillKept) {
  for (int err : {EFAULT, ELOOP, EXDEV, ENOTDIR}) {
    Status s = Status::from_errno(err, "call");
    EXPECT_EQ(s.code(), StatusCode::kInternal) << "errno " << err;
    EXPECT_EQ(s.to_errno(), -err) << "errno " << err;
  }
}

// The other way: a Status built from a code alone (no system call) reports the code's own errno,
// and that errno maps back to the same code, except where two codes share one errno on purpose.
TEST(Status, EachCodeHasAnErrnoThatMapsBackToIt) {
  for (int c = 1; c <= static_cast<int>(StatusCode::kInternal); ++c) {
    auto code = static_cast<StatusCode>(c);
    Status s(code, "x");
    EXPECT_EQ(s.sys_errno(), 0);
    int err = -s.to_errno();
    ASSERT_GT(err, 0) << to_string(code);
    StatusCode back = status_code_for_errno(err);
    switch (code) {
      case StatusCode::kWrongThread:  // EPERM, as a refused owner-only call is
        EXPECT_EQ(back, StatusCode::kPermissionDenied);
        break;
      case StatusCode::kQueueFull:  // ENOMEM, as spdk_nvme_ns_cmd_* report a full qpair
        EXPECT_EQ(back, StatusCode::kResourceExhausted);
        break;
      default: EXPECT_EQ(back, code) << to_string(code) << " -> errno " << err << " -> " << to_string(back);
    }
  }
}

TEST(Status, ErrnoOfEachCodeIsTheDocumentedOne) {
  const std::pair<StatusCode, int> expected[] = {
      {StatusCode::kInvalidArgument, EINVAL},   {StatusCode::kWouldBlock, EAGAIN},
      {StatusCode::kCorruption, EBADMSG},       {StatusCode::kNotFound, ENOENT},
      {StatusCode::kAlreadyExists, EEXIST},     {StatusCode::kWrongThread, EPERM},
      {StatusCode::kQueueFull, ENOMEM},         {StatusCode::kTimeout, ETIMEDOUT},
      {StatusCode::kAborted, ECANCELED},        {StatusCode::kIoError, EIO},
      {StatusCode::kUnavailable, ENOTCONN},     {StatusCode::kUnsupported, ENOTSUP},
      {StatusCode::kPermissionDenied, EACCES},  {StatusCode::kOutOfRange, ERANGE},
      {StatusCode::kResourceExhausted, ENOMEM}, {StatusCode::kInternal, EFAULT},
  };
  EXPECT_EQ(std::size(expected), static_cast<std::size_t>(StatusCode::kInternal)) << "one row per error code";
  for (const auto& [code, err] : expected) EXPECT_EQ(Status(code, "x").to_errno(), -err) << to_string(code);
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
