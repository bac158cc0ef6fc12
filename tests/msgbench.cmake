# nvmux-msgbench: the library's renderings (unit), every mode delivering every message on a short
# run (integration), and the CLI smoke of every mode with its JSON checked (scripts/msgbench-smoke).
# Included from tests/CMakeLists.txt; the library comes from apps/nvmux-msgbench.
if(NOT TARGET nvmux_msgbench)
  return()
endif()

nvmux_gtest(msgbench_unit_test
  SOURCES unit/msgbench/report_test.cpp
  DEPS nvmux_msgbench LABELS unit)

# Short multi-thread runs of the modes without DPDK: also run under ThreadSanitizer.
nvmux_gtest(msgbench_modes_test
  SOURCES integration/msgbench_modes_test.cpp integration/msgbench_bounds_test.cpp
  DEPS nvmux_msgbench LABELS "integration;concurrency")

# The DPDK modes: not labelled concurrency, so the TSan preset skips them. libdpdk is not built
# with TSan, so its mempool hands message objects between threads through code TSan cannot see,
# and every reuse of a message would be reported as a race.
if(TARGET nvmux_msgbench_dpdk)
  nvmux_gtest(msgbench_dpdk_test
    SOURCES integration/msgbench_dpdk_test.cpp
    DEPS nvmux_msgbench LABELS integration)
endif()

# The CLI smoke CI runs: every built mode at two points, one second each, JSON validated.
add_test(NAME msgbench_smoke
         COMMAND ${PROJECT_SOURCE_DIR}/scripts/msgbench-smoke $<TARGET_FILE:nvmux-msgbench>)
set_tests_properties(msgbench_smoke PROPERTIES LABELS integration TIMEOUT 300)
