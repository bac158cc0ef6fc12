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
    case StatusCode::kResourceExhausted: return "resource exhausted";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown status";
}

StatusCode status_code_for_errno(int err) {
  switch (err) {
    case ENOENT: return StatusCode::kNotFound;
    case EACCES:
    case EPERM: return StatusCode::kPermissionDenied;
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
      return StatusCode::kWouldBlock;
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case EDQUOT: return StatusCode::kResourceExhausted;
    case ETIMEDOUT: return StatusCode::kTimeout;
    case EEXIST: return StatusCode::kAlreadyExists;
    case EINVAL: return StatusCode::kInvalidArgument;
    case EIO: return StatusCode::kIoError;
    case ENOTCONN:
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE: return StatusCode::kUnavailable;
    case ECANCELED: return StatusCode::kAborted;
    case ERANGE:
    case EOVERFLOW: return StatusCode::kOutOfRange;
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
    case ENOSYS: return StatusCode::kUnsupported;
    case EBADMSG: return StatusCode::kCorruption;
    default: return StatusCode::kInternal;
  }
}

Status Status::from_errno(int err, std::string_view what) {
  Status s(status_code_for_errno(err), fmt::format("{}: {} (errno {})", what, std::strerror(err), err));
  if (err > 0) s.sys_errno_ = err;
  return s;
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return fmt::format("{}: {}", nvmux::to_string(code_), message_);
}

int Status::to_errno() const {
  if (sys_errno_ != 0) return -sys_errno_;
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
    case StatusCode::kResourceExhausted: return -ENOMEM;
    case StatusCode::kInternal: return -EFAULT;
  }
  return -EFAULT;
}

}  // namespace nvmux
