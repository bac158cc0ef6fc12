# nvmux top-level targets. Each runs scripts/setup-deps first (silent when nothing is missing),
# then configures the CMake preset once and builds incrementally.
#
#   make demo            build (release) and run nvmux's main job on its embedded default
#   make test            build (release) and run the whole test suite with CTest
#   make test-sanitize   every test under ASan+UBSan, and every concurrency test under TSan
#   make bench           build and run the benchmarks (side by side, medians, ratios)
#   make format          apply .clang-format to every tracked C/C++ file
#   make lint            check formatting of every tracked C/C++ file, then clang-tidy (.clang-tidy)
#   make build           just build the release preset
#   make clean           remove build/

SHELL := /bin/bash
JOBS ?= $(shell nproc)
CTEST_ARGS ?=

# The configured build.ninja files are real outputs, not intermediates make may delete.
.PRECIOUS: build/%/build.ninja

.PHONY: all deps build demo test test-sanitize test-asan test-tsan bench format lint clean

all: build

deps:
	@scripts/setup-deps

# configure-<preset>: configure once; later builds re-run CMake by themselves when lists change.
build/%/build.ninja: | deps
	@cmake --preset $* >/dev/null

build-%: deps build/%/build.ninja
	@cmake --build --preset $* -j $(JOBS)

build: build-release

demo: build-release
	@scripts/demo

test: build-release
	@ctest --preset release -j $(JOBS) $(CTEST_ARGS)

test-asan: build-asan
	@ctest --preset asan -j $(JOBS) $(CTEST_ARGS)

test-tsan: build-tsan
	@ctest --preset tsan -j $(JOBS) $(CTEST_ARGS)

test-sanitize: test-asan test-tsan

bench: build-release
	@scripts/bench

format: deps
	@git ls-files -z -- '*.c' '*.cc' '*.cpp' '*.h' '*.hpp' | xargs -0 clang-format -i

# clang-tidy reads the release preset's compile database, so only a configure is needed.
lint: deps build/release/build.ninja
	@JOBS=$(JOBS) scripts/lint build/release

clean:
	rm -rf build
