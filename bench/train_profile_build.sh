#!/bin/bash
# Builds bench/train_profile.cc against an existing ptc build dir (the ptc target's libraries
# and link line), without touching bench/CMakeLists.txt:
#   bench/train_profile_build.sh build-trainbench   ->  build-trainbench/train_profile
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$build"
ninja ptc >/dev/null
libs=$(awk '/^build ptc:/{f=1} f && /LINK_LIBRARIES =/{sub(/.*LINK_LIBRARIES = /,""); print; exit}' build.ninja)
path=$(awk '/^build ptc:/{f=1} f && /LINK_PATH =/{sub(/.*LINK_PATH = /,""); print; exit}' build.ninja)
c++ -O2 -DNDEBUG -std=gnu++20 -fopenmp -mavx2 -mfma -mf16c -DONNX_ML=1 -DONNX_NAMESPACE=onnx \
  -I"$root" -I. -I/usr/include/x86_64-linux-gnu/openblas-pthread \
  "$root/bench/train_profile.cc" -o train_profile $path $libs
echo "built $build/train_profile"
