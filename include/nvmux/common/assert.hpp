#pragma once
// NVMUX_ASSERT: an invariant check that stays on in every build, release included.
//
// A broken invariant is a programmer error; it crashes at once with the file, line, the condition
// text and a formatted message saying which invariant broke and with which values:
//
//   NVMUX_ASSERT(tail - head <= capacity_, "ring {} overfull: head {} tail {}", name_, head, tail);
//
// Operating errors (bad input, full queues, dead peers) are not asserted: they return a Status.

#include <fmt/format.h>

#include <string>

namespace nvmux::detail {
[[noreturn]] void assert_fail(const char* file, int line, const char* condition, const std::string& message);
}  // namespace nvmux::detail

#define NVMUX_ASSERT(cond, ...)                                                            \
  do {                                                                                     \
    if (__builtin_expect(!(cond), 0)) {                                                    \
      ::nvmux::detail::assert_fail(__FILE__, __LINE__, #cond, ::fmt::format(__VA_ARGS__)); \
    }                                                                                      \
  } while (0)

// Marks a point the code must never reach (an unhandled enum value, say).
#define NVMUX_UNREACHABLE(...) \
  ::nvmux::detail::assert_fail(__FILE__, __LINE__, "unreachable", ::fmt::format(__VA_ARGS__))
