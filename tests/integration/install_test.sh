#!/usr/bin/env bash
# What a downstream project does: install nvmux into a prefix, build the C example with
# pkg-config and a CMake project with find_package(nvmux), and run both against a live nvmuxd.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d /tmp/nvmux-install-XXXXXX)
daemon=""
trap '[ -n "$daemon" ] && kill -TERM $daemon 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
libdir=$(dirname "$(find "$work/prefix" -name nvmux.pc | head -1)")/..
export PKG_CONFIG_PATH="$libdir/pkgconfig"
echo "pkg-config: $(pkg-config --cflags --libs nvmux)"
cc -std=c11 -Wall -Wextra -pedantic "$src/examples/nvmux_hello.c" $(pkg-config --cflags --libs nvmux) -o "$work/hello"
mkdir -p "$work/cmake-app"
cat >"$work/cmake-app/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(app LANGUAGES C CXX)
find_package(nvmux REQUIRED)
add_executable(hello_cmake hello.c)
target_link_libraries(hello_cmake PRIVATE nvmux::client)
CMAKE
cp "$src/examples/nvmux_hello.c" "$work/cmake-app/hello.c"
cmake -S "$work/cmake-app" -B "$work/cmake-app/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cmake-app/build" >/dev/null
sock="$work/nvmuxd.sock"
"$work/prefix/bin/nvmuxd" --socket "$sock" --ns ram:size=16M --cores 0 --log-level warn >"$work/nvmuxd.out" 2>&1 &
daemon=$!
for _ in $(seq 100); do grep -q "ready on" "$work/nvmuxd.out" && break; sleep 0.1; done
export LD_LIBRARY_PATH="$libdir"
"$work/hello" "$sock"
"$work/cmake-app/build/hello_cmake" "$sock"
echo "install_test: pkg-config and find_package builds both ran against the installed nvmuxd"
