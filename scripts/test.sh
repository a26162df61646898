#!/usr/bin/env bash
# The test command: configure, build (2 jobs) and run every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD" -j"${JOBS:-2}"
ctest --test-dir "$BUILD" --output-on-failure -j"${JOBS:-2}" "$@"
