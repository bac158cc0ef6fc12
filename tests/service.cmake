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
