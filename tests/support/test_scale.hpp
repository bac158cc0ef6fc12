#pragma once
// Scales stress-test counts: full size in optimised builds, smaller under sanitizers (which run
// 5-20x slower), and adjustable with NVMUX_STRESS_SCALE (a factor, e.g. 0.1 or 2).

#include <cstdint>
#include <cstdlib>
#include <string>

namespace nvmux::test {

inline double stress_factor() {
  double factor = 1.0;
#if defined(NVMUX_TSAN)
  factor = 0.02;
#elif defined(NVMUX_SANITIZED)
  factor = 0.1;
#endif
  if (const char* env = std::getenv("NVMUX_STRESS_SCALE")) factor *= std::strtod(env, nullptr);
  return factor;
}

// `full` scaled by stress_factor(), at least `floor`.
inline std::uint64_t stress_count(std::uint64_t full, std::uint64_t floor = 1000) {
  auto n = static_cast<std::uint64_t>(static_cast<double>(full) * stress_factor());
  return n < floor ? floor : n;
}

}  // namespace nvmux::test
