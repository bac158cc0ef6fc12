# nvmuxd and its client library: the daemon binary driven by real client processes.
add_executable(c_api_test ${PROJECT_SOURCE_DIR}/examples/nvmux_hello.c)
set_target_properties(c_api_test PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF
                                            LINKER_LANGUAGE CXX)
target_compile_options(c_api_test PRIVATE -Wall -Wextra -pedantic)
target_link_libraries(c_api_test PRIVATE nvmux_client nvmux_sanitizers)

nvmux_gtest(service_test SOURCES integration/service_test.cpp DEPS nvmux_client LABELS "integration;concurrency"
            TIMEOUT 300)
add_dependencies(service_test nvmuxd c_api_test)
target_compile_definitions(service_test PRIVATE NVMUXD_BINARY="$<TARGET_FILE:nvmuxd>"
                                                C_API_TEST_BINARY="$<TARGET_FILE:c_api_test>")

# A downstream build: cmake --install, then the C example through pkg-config and find_package.
# Not in sanitizer builds: the installed library would carry the sanitizer runtime into a program
# built without it (ASan refuses to start that way); packaging is checked by the release build.
if(NVMUX_SANITIZER STREQUAL "")
  add_test(NAME nvmux_install_pkgconfig
           COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/install_test.sh ${PROJECT_BINARY_DIR}
                   ${PROJECT_SOURCE_DIR})
  set_tests_properties(nvmux_install_pkgconfig PROPERTIES LABELS integration TIMEOUT 300
                       PASS_REGULAR_EXPRESSION "both ran against the installed nvmuxd")
endif()

# nvmux-verify: bad usage is exit 2 with the flag named; no daemon is exit 1 saying so.
add_test(NAME nvmux_verify_rejects_bad_partition COMMAND nvmux-verify --partition 4/4)
set_tests_properties(nvmux_verify_rejects_bad_partition PROPERTIES LABELS integration
                     PASS_REGULAR_EXPRESSION "--partition '4/4': expected K/N")
add_test(NAME nvmux_verify_without_daemon COMMAND nvmux-verify --socket /tmp/nvmux-test-no-daemon.sock -t 1)
set_tests_properties(nvmux_verify_without_daemon PROPERTIES LABELS integration
                     PASS_REGULAR_EXPRESSION "nvmuxd is not running at /tmp/nvmux-test-no-daemon.sock")

# nvmux-torture: a hostile client (tests/tools/torture.hpp), and the stress test that runs it
# against a real nvmuxd while this process verifies its own data through the same daemon.
find_package(CLI11 REQUIRED)
nvmux_library(nvmux_torture SOURCES tools/torture.cpp DEPS nvmux_client)
nvmux_executable(nvmux-torture SOURCES tools/nvmux_torture.cpp DEPS nvmux_torture nvmux_cli)
nvmux_gtest(service_torture_test SOURCES stress/service_torture_test.cpp DEPS nvmux_client
            LABELS "stress;concurrency" TIMEOUT 600)
add_dependencies(service_torture_test nvmuxd nvmux-torture)
target_compile_definitions(service_torture_test PRIVATE NVMUXD_BINARY="$<TARGET_FILE:nvmuxd>"
                                                        NVMUX_TORTURE_BINARY="$<TARGET_FILE:nvmux-torture>")

# The daemon's pure checks of client input (descriptors, control messages, hello's arena), no
# daemon needed; tests/fuzz feeds the same functions arbitrary bytes.
nvmux_gtest(service_unit_test SOURCES unit/service/validate_test.cpp unit/service/rpc_test.cpp
                                   unit/service/policy_test.cpp DEPS nvmux_service
            LABELS unit)
target_include_directories(service_unit_test PRIVATE ${PROJECT_SOURCE_DIR}/src/service)

# The admin socket (JSON-RPC) against the real daemon, through the client nvmux-ctl uses.
nvmux_gtest(admin_test SOURCES integration/admin_test.cpp DEPS nvmux_client nvmux_rpc LABELS integration TIMEOUT 120)
add_dependencies(admin_test nvmuxd)
target_include_directories(admin_test PRIVATE ${PROJECT_SOURCE_DIR}/src/service)
target_compile_definitions(admin_test PRIVATE NVMUXD_BINARY="$<TARGET_FILE:nvmuxd>")
add_test(NAME nvmux_ctl_without_daemon COMMAND nvmux-ctl --socket /tmp/nvmux-test-no-daemon.sock nvmuxd_get_version)
set_tests_properties(nvmux_ctl_without_daemon PROPERTIES LABELS integration WILL_FAIL FALSE
                     PASS_REGULAR_EXPRESSION "nvmux-ctl: nvmuxd is not running \\(no admin socket at")

# Crashes, repeated: clients and the daemon SIGKILLed mid-I/O (tests/stress/service_crash_test.cpp).
nvmux_gtest(service_crash_test SOURCES stress/service_crash_test.cpp DEPS nvmux_client nvmux_rpc
            LABELS "stress;concurrency" TIMEOUT 600)
add_dependencies(service_crash_test nvmuxd)
target_include_directories(service_crash_test PRIVATE ${PROJECT_SOURCE_DIR}/src/service)
target_compile_definitions(service_crash_test PRIVATE NVMUXD_BINARY="$<TARGET_FILE:nvmuxd>")

# Device faults (emu's injector through the admin socket) under the daemon.
nvmux_gtest(service_fault_test SOURCES integration/service_fault_test.cpp DEPS nvmux_client nvmux_rpc
            LABELS integration TIMEOUT 120)
add_dependencies(service_fault_test nvmuxd)
target_include_directories(service_fault_test PRIVATE ${PROJECT_SOURCE_DIR}/src/service)
target_compile_definitions(service_fault_test PRIVATE NVMUXD_BINARY="$<TARGET_FILE:nvmuxd>")

# packaging/nvmuxd.service: systemd-analyze verify, and the arguments it passes parse.
add_test(NAME nvmuxd_systemd_unit COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/systemd_unit_test.sh
                                          ${PROJECT_SOURCE_DIR} $<TARGET_FILE:nvmuxd>)
set_tests_properties(nvmuxd_systemd_unit PROPERTIES LABELS integration SKIP_RETURN_CODE 77
                     PASS_REGULAR_EXPRESSION "nvmuxd.service verified")

# nvmux-top in a real terminal (tmux), and --once without a daemon.
add_test(NAME nvmux_top_in_tmux COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/nvmux_top_test.sh
                                        $<TARGET_FILE:nvmuxd> $<TARGET_FILE:nvmux-top> $<TARGET_FILE:nvmux-verify>)
set_tests_properties(nvmux_top_in_tmux PROPERTIES LABELS integration TIMEOUT 120 SKIP_RETURN_CODE 77
                     PASS_REGULAR_EXPRESSION "every view shown, quit with q")
add_test(NAME nvmux_top_without_daemon COMMAND nvmux-top --socket /tmp/nvmux-test-no-daemon.sock --once)
set_tests_properties(nvmux_top_without_daemon PROPERTIES LABELS integration WILL_FAIL TRUE)
