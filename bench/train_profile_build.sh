#!/bin/bash
# Builds the training-step profiler (target ptc_train_profile in bench/CMakeLists.txt):
#   bench/train_profile_build.sh build   ->  build/bench/ptc_train_profile (also linked as build/train_profile)
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR}
ninja -C "$build" ptc_train_profile >/dev/null
ln -sf bench/ptc_train_profile "$build/train_profile"
echo "built $build/bench/ptc_train_profile"
