#pragma once
// Logging through spdlog. init_logging() sets the default logger once per process: messages go to
// stderr as "[time] [level] [nvmux] text". Level from the argument, or the NVMUX_LOG_LEVEL
// environment variable (trace, debug, info, warn, error, off) when it is set.
//
// Thread-safety: init_logging is thread-safe (first call wins); the log macros are thread-safe.

#include <spdlog/spdlog.h>

#include <string_view>

namespace nvmux {

void init_logging(std::string_view default_level = "info");

}  // namespace nvmux

// Not SPDLOG_DEBUG: that is compiled out below SPDLOG_ACTIVE_LEVEL (info by default), so
// NVMUX_LOG_LEVEL=debug could never show it. The level check is one load; arguments are formatted
// only when debug is on. Keep it off the per-I/O and per-message paths.
#define NVMUX_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define NVMUX_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define NVMUX_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define NVMUX_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
