// libFuzzer target: what nvmuxd does with bytes a client sends before acting on them:
// admit_control_message (size, magic, version, hello first and once, known type) and, for an
// admitted hello, session_arena_bytes; and the client's check_session_header of page 0 of the
// memfd the daemon hands it.
//
// Input: byte 0 picks the path and flags, the rest is the message (or header) as received:
//   bit 0  0: a control message; 1: a session header
//   bit 1  control: the session's hello was answered
//   bit 2  control: received_bytes is the input's length, not sizeof(ControlMessage)
// Control: bytes 1..208 are the ControlMessage (zero-padded); a hello's grant allows arg1 bytes of
// arena. Header: bytes 1..72 are the SessionHeader, the next 8 the mapped size.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "validate.hpp"

namespace {

using namespace nvmux::service;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "control_fuzz: %s\n", what);
  std::abort();
}

void fuzz_control(std::uint8_t flags, const std::uint8_t* data, std::size_t size) {
  ControlMessage m{};
  std::memcpy(&m, data, size < sizeof(m) ? size : sizeof(m));
  bool ready = (flags & 2) != 0;
  std::size_t received = (flags & 4) != 0 ? size : sizeof(m);
  auto type = admit_control_message(m, received, ready);
  bool well_formed = check_control_message(m, received).ok();
  if (!type.ok()) {
    if (type.status().message().empty()) fail("a refusal without a reason to log");
    if (well_formed != (type.status().code() != nvmux::StatusCode::kCorruption)) {
      fail("kCorruption does not match check_control_message");
    }
    return;
  }
  if (!well_formed || received != sizeof(ControlMessage) || m.magic != kControlMagic || m.version != kProtocolVersion) {
    fail("admitted a message check_control_message refuses");
  }
  if (m.type < 1 || m.type > 5 || static_cast<std::uint16_t>(*type) != m.type) fail("admitted an unknown type");
  if ((*type == ControlType::kHello) == ready) fail("admitted a second hello, or a request before hello");
  if (*type != ControlType::kHello) return;
  auto arena = session_arena_bytes(m.arg0, m.arg1);
  if (!arena.ok()) {
    if (m.arg0 <= kMaxArenaBytes && m.arg0 != 0 && m.arg0 <= m.arg1 && m.arg1 % kPageBytes == 0) {
      fail("refused an arena within both limits");
    }
    return;
  }
  std::uint64_t bytes = *arena;
  if (bytes == 0 || bytes % kPageBytes != 0) fail("an arena that is not a whole number of pages");
  if (bytes > kMaxArenaBytes || bytes > m.arg1) fail("an arena above a limit");
  if (bytes < m.arg0 || (m.arg0 != 0 && bytes - m.arg0 >= kPageBytes)) fail("an arena not the request rounded up");
}

void fuzz_header(const std::uint8_t* data, std::size_t size) {
  SessionHeader h{};
  std::uint64_t mapped = 0;
  std::memcpy(&h, data, size < sizeof(h) ? size : sizeof(h));
  if (size > sizeof(h)) std::memcpy(&mapped, data + sizeof(h), size - sizeof(h) < 8 ? size - sizeof(h) : 8);
  if (!check_session_header(h, mapped).ok()) return;
  if (h.magic != kSessionMagic || h.layout_version != kProtocolVersion) fail("accepted a foreign header");
  if (h.arena_bytes == 0 || h.arena_bytes > kMaxArenaBytes || h.arena_bytes % kPageBytes != 0) {
    fail("accepted a bad arena size");
  }
  if (h.arena_offset != kArenaOffset || h.total_bytes != kArenaOffset + h.arena_bytes || h.total_bytes > mapped) {
    fail("accepted an arena outside the mapping");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::uint8_t flags = data[0];
  if ((flags & 1) != 0) {
    fuzz_header(data + 1, size - 1);
  } else {
    fuzz_control(flags, data + 1, size - 1);
  }
  return 0;
}
