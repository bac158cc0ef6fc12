# Runtime layer tests: deterministic ones drive lightweight threads by hand from one OS thread;
# the rest run real reactors and are bounded in count and wall-clock time.
nvmux_gtest(runtime_unit_test
  SOURCES unit/runtime/runtime_test.cpp unit/runtime/thread_test.cpp unit/runtime/send_test.cpp
          unit/runtime/message_test.cpp unit/runtime/stats_test.cpp
  DEPS nvmux_runtime LABELS "unit;concurrency")

nvmux_gtest(runtime_reactor_test
  SOURCES unit/runtime/reactor_test.cpp
  DEPS nvmux_runtime LABELS "unit;concurrency")

nvmux_gtest(runtime_stress_test
  SOURCES stress/runtime_stress_test.cpp
  DEPS nvmux_runtime LABELS "stress;concurrency")

# The sleep/wake primitive (src/runtime/futex.hpp, header-only: common is all it needs). The unit
# test drives it from one thread; the stress test hands stamped elements between threads and
# across fork() through the sleep protocol.
nvmux_gtest(runtime_futex_test
  SOURCES unit/runtime/futex_test.cpp
  DEPS nvmux_common LABELS "unit;concurrency")
target_include_directories(runtime_futex_test PRIVATE ${PROJECT_SOURCE_DIR}/src/runtime)

nvmux_gtest(runtime_futex_stress_test
  SOURCES stress/futex_stress_test.cpp
  DEPS nvmux_common LABELS "stress;concurrency")
target_include_directories(runtime_futex_stress_test PRIVATE ${PROJECT_SOURCE_DIR}/src/runtime)
