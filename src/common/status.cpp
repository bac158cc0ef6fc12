#include "nvmux/common/status.hpp"

#include <cstring>

namespace nvmux {

std::string_view to_string(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kWouldBlock: return "would block";
    case StatusCode::kCorruption: return "corruption";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kAlreadyExists: return "already exists";
    case StatusCode::kWrongThread: return "wrong thread";
    case StatusCode::kQueueFull: return "queue full";
    case StatusCode::kTimeout: return "timeout";
    case StatusCode::kAborted: return "aborted";
    case StatusCode::kIoError: return "I/O error";
    case StatusCode::kUnavailable: return "unavailable";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kPermissionDenied: return "permission denied";
    case StatusCode::kOutOfRange: return "out of range";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown status";
}

Status Status::from_errno(int err, std::string_view what) {
  return Status(StatusCode::kInternal, fmt::format("{}: {} (errno {})", what, std::strerror(err), err));
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return fmt::format("{}: {}", nvmux::to_string(code_), message_);
}

int Status::to_errno() const {
  switch (code_) {
    case StatusCode::kOk: return 0;
    case StatusCode::kInvalidArgument: return -EINVAL;
    case StatusCode::kWouldBlock: return -EAGAIN;
    case StatusCode::kCorruption: return -EBADMSG;
    case StatusCode::kNotFound: return -ENOENT;
    case StatusCode::kAlreadyExists: return -EEXIST;
    case StatusCode::kWrongThread: return -EPERM;
    case StatusCode::kQueueFull: return -ENOMEM;  // as spdk_nvme_ns_cmd_* report a full qpair
    case StatusCode::kTimeout: return -ETIMEDOUT;
    case StatusCode::kAborted: return -ECANCELED;
    case StatusCode::kIoError: return -EIO;
    case StatusCode::kUnavailable: return -ENOTCONN;
    case StatusCode::kUnsupported: return -ENOTSUP;
    case StatusCode::kPermissionDenied: return -EACCES;
    case StatusCode::kOutOfRange: return -ERANGE;
    case StatusCode::kInternal: return -EFAULT;
  }
  return -EFAULT;
}

}  // namespace nvmux
