# Runtime micro-benchmarks (the side-by-side comparison with SPDK-style messaging is nvmux-msgbench).
nvmux_executable(runtime_bench SOURCES runtime_bench.cpp DEPS nvmux_runtime benchmark::benchmark)
