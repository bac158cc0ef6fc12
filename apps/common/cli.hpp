#pragma once
// How every nvmux tool reads its command line with CLI11, so they share one exit-code convention:
// 0 after --help (printed to stdout), 2 for bad usage with "<tool>: <what CLI11 found> (see --help)"
// on stderr. CLI11's own codes (105, 106, 109, ...) never reach the shell.

#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>

namespace nvmux::apps {

inline constexpr int kExitUsage = 2;

// Parses argv into `app`. nullopt: go on; otherwise main returns the value.
inline std::optional<int> parse_command_line(CLI::App& app, const char* tool, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help (CallForHelp is a Success)
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", tool, e.what());
    return kExitUsage;
  }
  return std::nullopt;
}

}  // namespace nvmux::apps
