# service_compare: nvmuxd's client path against a shm+semaphore peer, the bare cross-process ring
# and in-process nvmux-perf, side by side (docs/service.md, "Measured"). It starts nvmuxd and runs
# nvmux-perf itself, so both must be built with it.
nvmux_executable(service_compare SOURCES service_compare.cpp DEPS nvmux_client nlohmann_json::nlohmann_json)
if(TARGET nvmuxd AND TARGET nvmux-perf)
  add_dependencies(service_compare nvmuxd nvmux-perf)
endif()
# CI smoke: it completes and prints its table; whether the targets are met is the full run's news.
add_test(NAME service_compare_smoke COMMAND service_compare --quick --socket /tmp/nvmux-service-compare-smoke.sock)
set_tests_properties(service_compare_smoke PROPERTIES LABELS integration TIMEOUT 180
                     PASS_REGULAR_EXPRESSION "target \\(medians\\)[^\n]*\n[^\n]*(MET|NOT MET)")

# service-multiprocess: nvmuxd shared by client processes (fairness; four clients against four fio
# jobs on one file). CI smoke: one short round of each, on a small file in the build tree.
add_test(NAME service_multiprocess_smoke
         COMMAND ${PROJECT_SOURCE_DIR}/bench/service-multiprocess --rounds 1 --duration 0.5 --size 64M
                 --file ${CMAKE_CURRENT_BINARY_DIR}/service-fio-smoke.img --nvmuxd $<TARGET_FILE:nvmuxd>
                 --nvmux-perf $<TARGET_FILE:nvmux-perf>)
set_tests_properties(service_multiprocess_smoke PROPERTIES LABELS integration TIMEOUT 180
                     PASS_REGULAR_EXPRESSION "nvmuxd / fio: [^\n]*(met|MISSED)")
