# nvmux-perf: its engine in-process, then the binary itself as a CI smoke on both backends.
nvmux_gtest(perf_test SOURCES integration/perf_test.cpp DEPS nvmux_perf_engine LABELS integration TIMEOUT 300)
add_dependencies(perf_test nvmuxd nvmux-perf)
target_compile_definitions(perf_test PRIVATE NVMUXD_BINARY="$<TARGET_FILE:nvmuxd>"
                                             NVMUX_PERF_BINARY="$<TARGET_FILE:nvmux-perf>")

set(perf $<TARGET_FILE:nvmux-perf>)
add_test(NAME nvmux_perf_smoke_emu
         COMMAND ${perf} --backend emu --ns ram:size=64M -w randrw -q 16 -t 1 --verify -L
                 --json ${CMAKE_CURRENT_BINARY_DIR}/perf-smoke-emu.json)
add_test(NAME nvmux_perf_smoke_uring
         COMMAND ${perf} --backend uring --ns file:${CMAKE_CURRENT_BINARY_DIR}/perf-smoke.img,size=64M -w randrw
                 -q 16 -t 1 --verify -L --json ${CMAKE_CURRENT_BINARY_DIR}/perf-smoke-uring.json)
add_test(NAME nvmux_perf_rejects_bad_input COMMAND ${perf} --ns ram:size=banana)
set_tests_properties(nvmux_perf_smoke_emu nvmux_perf_smoke_uring PROPERTIES LABELS integration TIMEOUT 120
                     PASS_REGULAR_EXPRESSION "0 mismatching blocks")
set_tests_properties(nvmux_perf_rejects_bad_input PROPERTIES LABELS integration
                     PASS_REGULAR_EXPRESSION "size 'banana' is not a number")

# Both tools against a table of bad inputs: exit code, message, time bound, nothing left behind.
if(TARGET nvmux-msgbench)
  add_test(NAME cli_bad_input_test
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/cli_bad_input_test.sh ${perf}
                   $<TARGET_FILE:nvmux-msgbench>)
  set_tests_properties(cli_bad_input_test PROPERTIES LABELS integration TIMEOUT 600 RUN_SERIAL TRUE)
endif()
