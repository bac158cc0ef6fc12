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
