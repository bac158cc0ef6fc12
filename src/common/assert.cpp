#include "nvmux/common/assert.hpp"

#include <cstdio>
#include <cstdlib>

namespace nvmux::detail {

[[noreturn]] void assert_fail(const char* file, int line, const char* condition, const std::string& message) {
  // stderr directly, not the logger: the logger may be the thing that is broken.
  std::fprintf(stderr, "nvmux: invariant broken at %s:%d: %s\n  check: %s\n", file, line, message.c_str(), condition);
  std::fflush(stderr);
  std::abort();
}

}  // namespace nvmux::detail
