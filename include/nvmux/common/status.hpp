#pragma once
// Status and Result<T>: nvmux's operating errors are values, never exceptions.
//
// Thread-safety: plain values; copy them freely between threads.
//
// A Status is either ok() or carries a StatusCode plus a human-readable message that says what was
// wrong and with which value. At the C ABI a Status becomes a negative errno (to_errno()): the
// errno of the failed system call when the Status came from one (from_errno), otherwise the code's
// own errno (listed in to_errno in status.cpp).
// The data path avoids building messages: it returns bool / counts and builds a Status only on the
// slow, failing path.

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fmt/format.h>

#include "nvmux/common/assert.hpp"

namespace nvmux {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,    // the caller passed a value outside the documented range
  kWouldBlock,         // the operation could not complete now (ring full, lane full); retry later
  kCorruption,         // shared state failed validation (untrusted peer, bad header, bad index)
  kNotFound,           // named object does not exist
  kAlreadyExists,      // named object exists already
  kWrongThread,        // an owner-only operation was called from another thread
  kQueueFull,          // a device queue has no free slot
  kTimeout,            // a deadline passed
  kAborted,            // the operation was cancelled (qpair failed, runtime stopped)
  kIoError,            // the device or kernel reported an error
  kUnavailable,        // the peer (daemon, device) is gone or not started
  kUnsupported,        // the feature is not built in or not supported by this backend
  kPermissionDenied,   // access policy refused the request
  kOutOfRange,         // an index or address lies outside the object
  kResourceExhausted,  // memory, disk space, file descriptors or locked memory ran out
  kInternal,           // an unexpected failure (a system call's errno with no code of its own)
};

std::string_view to_string(StatusCode code);

// The code a system call's errno means: ENOENT kNotFound; EACCES, EPERM kPermissionDenied;
// EAGAIN/EWOULDBLOCK kWouldBlock; ENOMEM, ENOSPC, EMFILE, ENFILE, ENOBUFS, EDQUOT kResourceExhausted;
// ETIMEDOUT kTimeout; EEXIST kAlreadyExists; EINVAL kInvalidArgument; EIO kIoError; ENOTCONN,
// ECONNREFUSED, ECONNRESET, EPIPE kUnavailable; ECANCELED kAborted; ERANGE, EOVERFLOW kOutOfRange;
// ENOTSUP/EOPNOTSUPP, ENOSYS kUnsupported; EBADMSG kCorruption; any other kInternal.
StatusCode status_code_for_errno(int err);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return Status(); }

  template <class... Args>
  static Status error(StatusCode code, fmt::format_string<Args...> format, Args&&... args) {
    return Status(code, fmt::format(format, std::forward<Args>(args)...));
  }
  // An error built from errno (positive) of a failed system call: "<what>: <strerror> (errno N)",
  // its code from status_code_for_errno, and err kept for to_errno().
  static Status from_errno(int err, std::string_view what);

  bool ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "<code name>: <message>", or "ok".
  std::string to_string() const;
  // Negative errno for the C ABI (0 when ok): -sys_errno() when the Status came from a system
  // call, otherwise the code's errno.
  int to_errno() const;
  // The errno this Status was built from (from_errno), or 0.
  int sys_errno() const { return sys_errno_; }

  friend bool operator==(const Status& a, StatusCode c) { return a.code_ == c; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  int sys_errno_ = 0;
};

// Result<T>: a T or a non-ok Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : value_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    NVMUX_ASSERT(!std::get<Status>(value_).ok(), "a Result built from a Status must carry an error");
  }

  bool ok() const { return std::holds_alternative<T>(value_); }
  explicit operator bool() const { return ok(); }

  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(value_);
  }
  T& value() & {
    NVMUX_ASSERT(ok(), "Result::value() on an error: {}", std::get<Status>(value_).to_string());
    return std::get<T>(value_);
  }
  const T& value() const& {
    NVMUX_ASSERT(ok(), "Result::value() on an error: {}", std::get<Status>(value_).to_string());
    return std::get<T>(value_);
  }
  T&& value() && {
    NVMUX_ASSERT(ok(), "Result::value() on an error: {}", std::get<Status>(value_).to_string());
    return std::get<T>(std::move(value_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> value_;
};

}  // namespace nvmux

// Returns early from the enclosing function when `expr` (a Status) is an error.
#define NVMUX_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::nvmux::Status nvmux_status_ = (expr);        \
    if (!nvmux_status_.ok()) return nvmux_status_; \
  } while (0)
