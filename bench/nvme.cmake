nvmux_executable(nvme_bench SOURCES nvme_bench.cpp
  DEPS nvmux_nvme benchmark::benchmark nlohmann_json::nlohmann_json)
