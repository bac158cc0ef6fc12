# nvmux top-level targets. Each runs scripts/setup-deps first (silent when nothing is missing),
# then configures the CMake preset once and builds incrementally.
#
#   make demo            build (release) and run nvmux's main job on its embedded default
#   make test            build (release) and run the whole test suite with CTest
#   make test-sanitize   every test under ASan+UBSan, and every concurrency test under TSan
#   make bench           build and run the benchmarks (side by side, medians, ratios)
#   make fuzz            build the libFuzzer targets (clang 14) and run each FUZZ_SECONDS (60) s
#   make format          apply .clang-format to every tracked C/C++ file
#   make lint            check formatting of every tracked C/C++ file, then clang-tidy (.clang-tidy)
#   make build           just build the release preset
#   make clean           remove build/

SHELL := /bin/bash
JOBS ?= $(shell nproc)
CTEST_ARGS ?=
FUZZ_SECONDS ?= 60

# The configured build.ninja files are real outputs, not intermediates make may delete.
.PRECIOUS: build/%/build.ninja

.PHONY: all deps build demo test test-sanitize test-asan test-tsan bench fuzz format lint clean

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

# Each target on a copy of its corpus (the tree is not modified); non-zero with the reproducer's
# path when one crashes. docs/fuzzing.md.
fuzz: build-fuzz
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz build/fuzz

format: deps
	@git ls-files -z -- '*.c' '*.cc' '*.cpp' '*.h' '*.hpp' | xargs -0 clang-format -i

# clang-tidy reads the release preset's compile database, so only a configure is needed.
lint: deps build/release/build.ninja
	@JOBS=$(JOBS) scripts/lint build/release

clean:
	rm -rf build
