# Deterministic tests: the emu device is stepped by hand, time is a manual clock.
nvmux_gtest(nvme_unit_test
  SOURCES unit/nvme/spec_test.cpp unit/nvme/qpair_test.cpp unit/nvme/emu_test.cpp unit/nvme/uring_test.cpp
          unit/nvme/backend_test.cpp unit/nvme/dma_test.cpp unit/nvme/prp_test.cpp
  DEPS nvmux_nvme LABELS unit)
# prp_test reaches the PRP walker, which lives beside its backends in src/nvme.
target_include_directories(nvme_unit_test PRIVATE ${PROJECT_SOURCE_DIR}/src/nvme)

# The backend-neutral data-integrity and error suite (ControllerFactory-parameterised). Its
# emu_thread instance runs the device on its own thread, so it also runs under TSan.
nvmux_gtest(nvme_data_test
  SOURCES unit/nvme/controller_data_test.cpp unit/nvme/dma_foreign_test.cpp
  DEPS nvmux_nvme LABELS "unit;concurrency")

# Real threads: four owners at once, and two threads sharing one qpair (the spdk#3557 misuse).
nvmux_gtest(nvme_stress_test
  SOURCES stress/nvme_qpair_stress_test.cpp
  DEPS nvmux_nvme LABELS "stress;concurrency")
