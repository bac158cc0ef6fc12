# Common-layer tests that need a process of their own (the logger's level is set once per process).
nvmux_gtest(common_log_test SOURCES unit/common/log_test.cpp DEPS nvmux_common LABELS unit)
