#pragma once
// NVMe wire structures and codes, as laid out by the NVM Express Base Specification (2.0) and the
// NVM Command Set Specification. These bytes cross the device boundary: every struct has
// static_asserts on its size and on the offsets of the fields nvmux uses. Little-endian hosts only
// (x86-64, aarch64 LE); the static_assert below refuses anything else.
//
// Threading: plain values. Who may write a given entry in memory is the queue's contract (qpair.hpp):
// the driver writes submission entries, the device writes completion entries, and the device
// writes the completion status word last (it carries the phase tag).

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>

namespace nvmux::nvme {

static_assert(std::endian::native == std::endian::little, "nvmux's NVMe structures assume a little-endian host");

// Memory page size nvmux programs into CC.MPS (4 KiB). PRP entries describe pages of this size.
inline constexpr std::uint32_t kPageBytes = 4096;
inline constexpr std::uint32_t kPageShift = 12;
// Largest queue any NVMe controller may report (CAP.MQES is 16 bits, 0's based).
inline constexpr std::uint32_t kMaxQueueEntriesSpec = 65536;
// Largest number of ranges one Dataset Management command carries (NR is 8 bits, 0's based).
inline constexpr std::uint32_t kMaxDsmRanges = 256;
// Most namespaces one controller nvmux builds may have: the Identify active namespace list (one
// 4 KiB page of 4-byte NSIDs) names at most this many, and a driver learns namespaces from it.
inline constexpr std::uint32_t kMaxNamespaces = kPageBytes / 4;
// The broadcast NSID (FFFFFFFFh): "every namespace", accepted by Flush.
inline constexpr std::uint32_t kAllNamespaces = 0xffffffffu;

// ---------------------------------------------------------------------------------------------
// Opcodes
// ---------------------------------------------------------------------------------------------

enum class AdminOpcode : std::uint8_t {
  kDeleteIoSq = 0x00,
  kCreateIoSq = 0x01,
  kGetLogPage = 0x02,
  kDeleteIoCq = 0x04,
  kCreateIoCq = 0x05,
  kIdentify = 0x06,
  kAbort = 0x08,
  kSetFeatures = 0x09,
  kGetFeatures = 0x0a,
  kAsyncEventRequest = 0x0c,
  kKeepAlive = 0x18,
  kFormatNvm = 0x80,
};

enum class NvmOpcode : std::uint8_t {
  kFlush = 0x00,
  kWrite = 0x01,
  kRead = 0x02,
  kWriteUncorrectable = 0x04,
  kCompare = 0x05,
  kWriteZeroes = 0x08,
  kDatasetManagement = 0x09,
  kVerify = 0x0c,
};

// Identify CNS values (CDW10 bits 7:0).
enum class IdentifyCns : std::uint8_t {
  kNamespace = 0x00,
  kController = 0x01,
  kActiveNamespaceList = 0x02,
};

// Feature identifiers (Set/Get Features CDW10 bits 7:0).
enum class FeatureId : std::uint8_t {
  kArbitration = 0x01,
  kPowerManagement = 0x02,
  kVolatileWriteCache = 0x06,
  kNumberOfQueues = 0x07,
};

// ---------------------------------------------------------------------------------------------
// Status codes (completion DW3 bits 31:17)
// ---------------------------------------------------------------------------------------------

enum class StatusCodeType : std::uint8_t {
  kGeneric = 0x0,
  kCommandSpecific = 0x1,
  kMediaError = 0x2,
  kPath = 0x3,
  kVendorSpecific = 0x7,
};

enum class GenericStatus : std::uint8_t {
  kSuccess = 0x00,
  kInvalidOpcode = 0x01,
  kInvalidField = 0x02,
  kCommandIdConflict = 0x03,
  kDataTransferError = 0x04,
  kAbortedPowerLoss = 0x05,
  kInternalDeviceError = 0x06,
  kAbortedByRequest = 0x07,
  kAbortedSqDeletion = 0x08,
  kAbortedFailedFused = 0x09,
  kAbortedMissingFused = 0x0a,
  kInvalidNamespaceOrFormat = 0x0b,
  kCommandSequenceError = 0x0c,
  kInvalidPrpOffset = 0x13,
  kNamespaceIsWriteProtected = 0x20,
  // NVM command set specific values of the generic type.
  kLbaOutOfRange = 0x80,
  kCapacityExceeded = 0x81,
  kNamespaceNotReady = 0x82,
};

enum class CommandSpecificStatus : std::uint8_t {
  kCompletionQueueInvalid = 0x00,
  kInvalidQueueIdentifier = 0x01,
  kInvalidQueueSize = 0x02,
  kAbortCommandLimitExceeded = 0x03,
  kInvalidInterruptVector = 0x08,
  kInvalidLogPage = 0x09,
  kInvalidFormat = 0x0a,
  kInvalidQueueDeletion = 0x0c,
  kFeatureIdNotSaveable = 0x0d,
  kFeatureNotChangeable = 0x0e,
  // NVM command set specific.
  kConflictingAttributes = 0x80,
  kInvalidProtectionInformation = 0x81,
  kAttemptedWriteToReadOnlyRange = 0x82,
};

enum class MediaStatus : std::uint8_t {
  kWriteFault = 0x80,
  kUnrecoveredReadError = 0x81,
  kEndToEndGuardCheckError = 0x82,
  kCompareFailure = 0x85,
  kAccessDenied = 0x86,
  kDeallocatedOrUnwrittenBlock = 0x87,
};

// ---------------------------------------------------------------------------------------------
// Submission queue entry (64 bytes)
// ---------------------------------------------------------------------------------------------

// CDW0: opcode (7:0), fused (9:8), PSDT (15:14, 0 = PRPs), command identifier (31:16).
struct SubmissionEntry {
  std::uint8_t opcode;
  std::uint8_t flags;  // FUSE bits 1:0, PSDT bits 7:6 (always 0: nvmux uses PRPs)
  std::uint16_t cid;
  std::uint32_t nsid;
  std::uint32_t cdw2;
  std::uint32_t cdw3;
  std::uint64_t mptr;
  std::uint64_t prp1;
  std::uint64_t prp2;
  std::uint32_t cdw10;
  std::uint32_t cdw11;
  std::uint32_t cdw12;
  std::uint32_t cdw13;
  std::uint32_t cdw14;
  std::uint32_t cdw15;
};
static_assert(sizeof(SubmissionEntry) == 64);
static_assert(alignof(SubmissionEntry) == 8);
static_assert(offsetof(SubmissionEntry, opcode) == 0);
static_assert(offsetof(SubmissionEntry, flags) == 1);
static_assert(offsetof(SubmissionEntry, cid) == 2);
static_assert(offsetof(SubmissionEntry, nsid) == 4);
static_assert(offsetof(SubmissionEntry, mptr) == 16);
static_assert(offsetof(SubmissionEntry, prp1) == 24);
static_assert(offsetof(SubmissionEntry, prp2) == 32);
static_assert(offsetof(SubmissionEntry, cdw10) == 40);
static_assert(offsetof(SubmissionEntry, cdw15) == 60);

// NVM read/write/write-zeroes dword layout.
//   CDW10/11  starting LBA (low/high)
//   CDW12     NLB (15:0, 0's based), DEAC (25, write zeroes), FUA (30), LR (31)
inline constexpr std::uint32_t kCdw12NlbMask = 0xffff;
inline constexpr std::uint32_t kCdw12Deallocate = 1u << 25;
inline constexpr std::uint32_t kCdw12Fua = 1u << 30;
// Dataset management: CDW10 NR (7:0, 0's based), CDW11 attribute bits.
inline constexpr std::uint32_t kDsmAttrIntegralRead = 1u << 0;
inline constexpr std::uint32_t kDsmAttrIntegralWrite = 1u << 1;
inline constexpr std::uint32_t kDsmAttrDeallocate = 1u << 2;
// Create I/O queue CDW11: physically contiguous (bit 0); create SQ carries the CQ id in 31:16.
inline constexpr std::uint32_t kQueuePhysicallyContiguous = 1u << 0;

// One range of a Dataset Management command's data (16 bytes).
struct DsmRange {
  std::uint32_t context_attributes;
  std::uint32_t lba_count;
  std::uint64_t starting_lba;
};
static_assert(sizeof(DsmRange) == 16);
static_assert(offsetof(DsmRange, lba_count) == 4);
static_assert(offsetof(DsmRange, starting_lba) == 8);

// ---------------------------------------------------------------------------------------------
// Completion queue entry (16 bytes)
// ---------------------------------------------------------------------------------------------

// DW0 command specific, DW1 reserved, DW2 SQ head (15:0) and SQ id (31:16), DW3 command id (15:0)
// and status (31:16): phase P (bit 0 of the status half), SC (8:1), SCT (11:9), CRD (13:12),
// More (14), DNR (15).
struct CompletionEntry {
  std::uint32_t cdw0;
  std::uint32_t cdw1;
  std::uint16_t sq_head;
  std::uint16_t sq_id;
  std::uint16_t cid;
  std::uint16_t status;  // written last by the device: it carries the phase tag

  bool phase() const { return (status & 1u) != 0; }
  std::uint8_t sc() const { return static_cast<std::uint8_t>((status >> 1) & 0xffu); }
  std::uint8_t sct() const { return static_cast<std::uint8_t>((status >> 9) & 0x7u); }
  std::uint8_t crd() const { return static_cast<std::uint8_t>((status >> 12) & 0x3u); }
  bool more() const { return (status & (1u << 14)) != 0; }
  bool dnr() const { return (status & (1u << 15)) != 0; }
  // SCT and SC both zero.
  bool success() const { return (status & 0x0ffeu) == 0; }
};
static_assert(sizeof(CompletionEntry) == 16);
static_assert(alignof(CompletionEntry) == 4);
static_assert(offsetof(CompletionEntry, cdw0) == 0);
static_assert(offsetof(CompletionEntry, sq_head) == 8);
static_assert(offsetof(CompletionEntry, sq_id) == 10);
static_assert(offsetof(CompletionEntry, cid) == 12);
static_assert(offsetof(CompletionEntry, status) == 14);

// The status half-word without its phase bit: SC, SCT, More and DNR in their bit positions.
constexpr std::uint16_t make_status(StatusCodeType sct, std::uint8_t sc, bool dnr = false, bool more = false) {
  return static_cast<std::uint16_t>((static_cast<unsigned>(sc) << 1) | ((static_cast<unsigned>(sct) & 7u) << 9) |
                                    (more ? 1u << 14 : 0u) | (dnr ? 1u << 15 : 0u));
}
constexpr std::uint16_t make_status(GenericStatus sc, bool dnr = false) {
  return make_status(StatusCodeType::kGeneric, static_cast<std::uint8_t>(sc), dnr);
}
constexpr std::uint16_t make_status(CommandSpecificStatus sc, bool dnr = false) {
  return make_status(StatusCodeType::kCommandSpecific, static_cast<std::uint8_t>(sc), dnr);
}
constexpr std::uint16_t make_status(MediaStatus sc, bool dnr = false) {
  return make_status(StatusCodeType::kMediaError, static_cast<std::uint8_t>(sc), dnr);
}
static_assert(make_status(GenericStatus::kLbaOutOfRange, true) == ((0x80u << 1) | (1u << 15)));
static_assert(make_status(CommandSpecificStatus::kInvalidQueueDeletion) == ((0x0cu << 1) | (1u << 9)));

// "SCT 0x0 SC 0x80 (LBA out of range)" — for error messages.
std::string describe_status(std::uint8_t sct, std::uint8_t sc);

// ---------------------------------------------------------------------------------------------
// Identify data (4096 bytes each). Only the fields nvmux uses are named; the rest is explicit
// reserved padding so every named field sits at its specification offset.
// ---------------------------------------------------------------------------------------------

struct IdentifyController {
  std::uint16_t vid;                // 0: PCI vendor id
  std::uint16_t ssvid;              // 2: subsystem vendor id
  char sn[20];                      // 4: serial number (ASCII, space padded)
  char mn[40];                      // 24: model number
  char fr[8];                       // 64: firmware revision
  std::uint8_t rab;                 // 72: recommended arbitration burst
  std::uint8_t ieee[3];             // 73
  std::uint8_t cmic;                // 76
  std::uint8_t mdts;                // 77: max data transfer size, 2^n pages of CAP.MPSMIN; 0 = no limit
  std::uint16_t cntlid;             // 78: controller id
  std::uint32_t ver;                // 80: version (same encoding as the VS register)
  std::uint8_t reserved_84[428];    // 84..511
  std::uint8_t sqes;                // 512: SQ entry size, required (3:0) and max (7:4), as 2^n
  std::uint8_t cqes;                // 513: CQ entry size, same encoding
  std::uint16_t maxcmd;             // 514
  std::uint32_t nn;                 // 516: number of namespaces
  std::uint16_t oncs;               // 520: optional NVM command support
  std::uint16_t fuses;              // 522
  std::uint8_t fna;                 // 524
  std::uint8_t vwc;                 // 525: volatile write cache present (bit 0)
  std::uint16_t awun;               // 526
  std::uint16_t awupf;              // 528
  std::uint8_t reserved_530[3566];  // 530..4095
};
static_assert(sizeof(IdentifyController) == 4096);
static_assert(offsetof(IdentifyController, sn) == 4);
static_assert(offsetof(IdentifyController, mn) == 24);
static_assert(offsetof(IdentifyController, fr) == 64);
static_assert(offsetof(IdentifyController, mdts) == 77);
static_assert(offsetof(IdentifyController, cntlid) == 78);
static_assert(offsetof(IdentifyController, ver) == 80);
static_assert(offsetof(IdentifyController, sqes) == 512);
static_assert(offsetof(IdentifyController, cqes) == 513);
static_assert(offsetof(IdentifyController, maxcmd) == 514);
static_assert(offsetof(IdentifyController, nn) == 516);
static_assert(offsetof(IdentifyController, oncs) == 520);
static_assert(offsetof(IdentifyController, vwc) == 525);

// ONCS bits.
inline constexpr std::uint16_t kOncsCompare = 1u << 0;
inline constexpr std::uint16_t kOncsWriteUncorrectable = 1u << 1;
inline constexpr std::uint16_t kOncsDatasetManagement = 1u << 2;
inline constexpr std::uint16_t kOncsWriteZeroes = 1u << 3;

// LBA format descriptor: metadata size (15:0), LBA data size as 2^n (23:16), relative performance (25:24).
struct LbaFormat {
  std::uint16_t ms;
  std::uint8_t lbads;
  std::uint8_t rp;
};
static_assert(sizeof(LbaFormat) == 4);
static_assert(offsetof(LbaFormat, lbads) == 2);

struct IdentifyNamespace {
  std::uint64_t nsze;               // 0: namespace size in logical blocks
  std::uint64_t ncap;               // 8: capacity
  std::uint64_t nuse;               // 16: utilisation
  std::uint8_t nsfeat;              // 24: bit 2 = DAE (deallocated blocks read back as zeroes...)
  std::uint8_t nlbaf;               // 25: number of LBA formats, 0's based
  std::uint8_t flbas;               // 26: formatted LBA size: index into lbaf (3:0)
  std::uint8_t mc;                  // 27
  std::uint8_t dpc;                 // 28
  std::uint8_t dps;                 // 29
  std::uint8_t nmic;                // 30
  std::uint8_t rescap;              // 31
  std::uint8_t fpi;                 // 32
  std::uint8_t dlfeat;              // 33: bits 2:0 = 001b: deallocated blocks read as zeroes
  std::uint16_t nawun;              // 34
  std::uint16_t nawupf;             // 36
  std::uint16_t nacwu;              // 38
  std::uint8_t reserved_40[64];     // 40..103
  std::uint8_t nguid[16];           // 104
  std::uint8_t eui64[8];            // 120
  LbaFormat lbaf[64];               // 128..383
  std::uint8_t reserved_384[3712];  // 384..4095
};
static_assert(sizeof(IdentifyNamespace) == 4096);
static_assert(offsetof(IdentifyNamespace, ncap) == 8);
static_assert(offsetof(IdentifyNamespace, nsfeat) == 24);
static_assert(offsetof(IdentifyNamespace, nlbaf) == 25);
static_assert(offsetof(IdentifyNamespace, flbas) == 26);
static_assert(offsetof(IdentifyNamespace, dlfeat) == 33);
static_assert(offsetof(IdentifyNamespace, nguid) == 104);
static_assert(offsetof(IdentifyNamespace, eui64) == 120);
static_assert(offsetof(IdentifyNamespace, lbaf) == 128);

// ---------------------------------------------------------------------------------------------
// Controller registers (BAR0), the ones nvmux's emulated controller models.
// ---------------------------------------------------------------------------------------------

inline constexpr std::uint32_t kRegCap = 0x00;  // 64-bit: MQES (15:0), CQR (16), DSTRD (35:32), MPSMIN (51:48)
inline constexpr std::uint32_t kRegVs = 0x08;
inline constexpr std::uint32_t kRegCc = 0x14;    // EN (0), MPS (10:7), IOSQES (19:16), IOCQES (23:20)
inline constexpr std::uint32_t kRegCsts = 0x1c;  // RDY (0), CFS (1)
inline constexpr std::uint32_t kRegAqa = 0x24;   // ASQS (11:0), ACQS (27:16), both 0's based
inline constexpr std::uint32_t kRegAsq = 0x28;
inline constexpr std::uint32_t kRegAcq = 0x30;
inline constexpr std::uint32_t kRegDoorbellBase = 0x1000;
inline constexpr std::uint32_t kCcEnable = 1u << 0;
inline constexpr std::uint32_t kCstsReady = 1u << 0;
inline constexpr std::uint32_t kCstsFatal = 1u << 1;
inline constexpr std::uint32_t kVersion2_0 = 0x00020000;

// Doorbell register offsets for queue `qid` with stride 4 << dstrd bytes.
constexpr std::uint32_t sq_tail_doorbell_offset(std::uint16_t qid, std::uint32_t dstrd = 0) {
  return kRegDoorbellBase + (2u * qid) * (4u << dstrd);
}
constexpr std::uint32_t cq_head_doorbell_offset(std::uint16_t qid, std::uint32_t dstrd = 0) {
  return kRegDoorbellBase + (2u * qid + 1u) * (4u << dstrd);
}
static_assert(sq_tail_doorbell_offset(1) == 0x1008);
static_assert(cq_head_doorbell_offset(1) == 0x100c);

}  // namespace nvmux::nvme
