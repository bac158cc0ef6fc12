nvmux_gtest(nvme_unit_test
  SOURCES unit/nvme/spec_test.cpp
  DEPS nvmux_nvme LABELS unit)
