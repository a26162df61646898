#!/usr/bin/env bash
# Run HERE (the build machine, no GPU needed) before a device call. The device image has the
# CUDA toolkit, cmake and ninja but not ptc's Debian dependencies (abseil, protobuf, onnx,
# OpenBLAS, gtest), so ptc is built here and its test binaries travel with the shared libraries
# they need, packed into .gpu/ (git-ignored: name it in the device call's `carry`).
#
#   bash bench/gpu/prepare.sh
#   device run: carry [".gpu"], command
#     source .gpu/env.sh && bash bench/gpu/run_all.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${PTC_GPU_BUILD:-$root/build-gpu}
export CCACHE_NOHASHDIR=1
cmake -S "$root" -B "$build" -G Ninja -DPTC_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$build" -j"${PTC_JOBS:-2}" ptc_cuda_tests ptc ptc-cuda

stage=$root/.gpu/stage
rm -rf "$root/.gpu"
mkdir -p "$stage/bin" "$stage/lib"
bins=("$build/tests/cuda/ptc_cuda_tests" "$build/ptc" "$build/ptc-cuda")
cp "${bins[@]}" "$stage/bin/"
# Every shared library except the C/C++ runtime (newer on the device image) and CUDA's own
# (the device's toolkit matches its driver; cuBLASLt alone is 500 MB).
for bin in "${bins[@]}"; do
  ldd "$bin" | awk '/=> \//{print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libpthread.so*|libdl.so*|librt.so*) ;;
    libcuda.so*|libcudart.so*|libcublas*.so*|libnvidia*|libcudnn*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
  esac
done
tar -czf "$root/.gpu/bundle.tar.gz" -C "$stage" .
rm -rf "$stage"
cp "$root/bench/gpu/env.sh" "$root/.gpu/env.sh"
# Training text for bench/gpu/gpt2_bench.sh (the device image has no fortunes package).
find /usr/share/games/fortunes -type f ! -name '*.dat' ! -name '*.u8' -print0 2>/dev/null \
  | sort -z | xargs -0 cat 2>/dev/null | head -c 3000000 > "$root/.gpu/corpus.txt" || true
git -C "$root" rev-parse HEAD > "$root/.gpu/commit"
du -sh "$root/.gpu"
echo "ready: carry .gpu, run: source .gpu/env.sh && bash bench/gpu/run_all.sh"
echo "       (GPT-2 small bench: source .gpu/env.sh && bash bench/gpu/gpt2_bench.sh 16 12)"
