#include "nvmux/nvme/spec.hpp"

#include <fmt/format.h>

namespace nvmux::nvme {

namespace {

const char* generic_name(std::uint8_t sc) {
  switch (static_cast<GenericStatus>(sc)) {
    case GenericStatus::kSuccess: return "success";
    case GenericStatus::kInvalidOpcode: return "invalid opcode";
    case GenericStatus::kInvalidField: return "invalid field in command";
    case GenericStatus::kCommandIdConflict: return "command id conflict";
    case GenericStatus::kDataTransferError: return "data transfer error";
    case GenericStatus::kAbortedPowerLoss: return "aborted: power loss";
    case GenericStatus::kInternalDeviceError: return "internal device error";
    case GenericStatus::kAbortedByRequest: return "aborted by request";
    case GenericStatus::kAbortedSqDeletion: return "aborted: SQ deletion";
    case GenericStatus::kAbortedFailedFused: return "aborted: failed fused";
    case GenericStatus::kAbortedMissingFused: return "aborted: missing fused";
    case GenericStatus::kInvalidNamespaceOrFormat: return "invalid namespace or format";
    case GenericStatus::kCommandSequenceError: return "command sequence error";
    case GenericStatus::kInvalidPrpOffset: return "invalid PRP offset";
    case GenericStatus::kNamespaceIsWriteProtected: return "namespace is write protected";
    case GenericStatus::kLbaOutOfRange: return "LBA out of range";
    case GenericStatus::kCapacityExceeded: return "capacity exceeded";
    case GenericStatus::kNamespaceNotReady: return "namespace not ready";
  }
  return "unknown generic status";
}

const char* command_specific_name(std::uint8_t sc) {
  switch (static_cast<CommandSpecificStatus>(sc)) {
    case CommandSpecificStatus::kCompletionQueueInvalid: return "completion queue invalid";
    case CommandSpecificStatus::kInvalidQueueIdentifier: return "invalid queue identifier";
    case CommandSpecificStatus::kInvalidQueueSize: return "invalid queue size";
    case CommandSpecificStatus::kAbortCommandLimitExceeded: return "abort command limit exceeded";
    case CommandSpecificStatus::kInvalidInterruptVector: return "invalid interrupt vector";
    case CommandSpecificStatus::kInvalidLogPage: return "invalid log page";
    case CommandSpecificStatus::kInvalidFormat: return "invalid format";
    case CommandSpecificStatus::kInvalidQueueDeletion: return "invalid queue deletion";
    case CommandSpecificStatus::kFeatureIdNotSaveable: return "feature id not saveable";
    case CommandSpecificStatus::kFeatureNotChangeable: return "feature not changeable";
    case CommandSpecificStatus::kConflictingAttributes: return "conflicting attributes";
    case CommandSpecificStatus::kInvalidProtectionInformation: return "invalid protection information";
    case CommandSpecificStatus::kAttemptedWriteToReadOnlyRange: return "write to read-only range";
  }
  return "unknown command-specific status";
}

const char* media_name(std::uint8_t sc) {
  switch (static_cast<MediaStatus>(sc)) {
    case MediaStatus::kWriteFault: return "write fault";
    case MediaStatus::kUnrecoveredReadError: return "unrecovered read error";
    case MediaStatus::kEndToEndGuardCheckError: return "end-to-end guard check error";
    case MediaStatus::kCompareFailure: return "compare failure";
    case MediaStatus::kAccessDenied: return "access denied";
    case MediaStatus::kDeallocatedOrUnwrittenBlock: return "deallocated or unwritten block";
  }
  return "unknown media status";
}

}  // namespace

std::string describe_status(std::uint8_t sct, std::uint8_t sc) {
  const char* name = "vendor or reserved status";
  switch (static_cast<StatusCodeType>(sct)) {
    case StatusCodeType::kGeneric: name = generic_name(sc); break;
    case StatusCodeType::kCommandSpecific: name = command_specific_name(sc); break;
    case StatusCodeType::kMediaError: name = media_name(sc); break;
    case StatusCodeType::kPath: name = "path related status"; break;
    case StatusCodeType::kVendorSpecific: name = "vendor specific status"; break;
  }
  return fmt::format("SCT {:#x} SC {:#04x} ({})", sct, sc, name);
}

}  // namespace nvmux::nvme
