#include "nvmux/common/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <mutex>
#include <string>

namespace nvmux {

void init_logging(std::string_view default_level) {
  static std::once_flag once;
  std::call_once(once, [default_level] {
    auto logger = spdlog::stderr_color_mt("nvmux");
    logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] [%n] %v");
    const char* env = std::getenv("NVMUX_LOG_LEVEL");
    std::string level = env != nullptr ? env : std::string(default_level);
    logger->set_level(spdlog::level::from_str(level));
    spdlog::set_default_logger(logger);
  });
}

}  // namespace nvmux
