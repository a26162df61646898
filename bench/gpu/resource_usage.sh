#!/usr/bin/env bash
# Registers / stack / shared memory of every CUDA kernel, from ptxas (`nvcc -Xptxas -v`), for
# CMAKE_CUDA_ARCHITECTURES' default sm_90. Needs nvcc only (no GPU):
#   bash bench/gpu/resource_usage.sh [sm_90]
# smem is static shared memory; FlashBackwardKernel also takes dynamic shared memory at launch
# (4 x 32 x (max(d, dv) + 1) x 4 bytes: 66 KiB at head dim 128, opted in with
# cudaFuncSetAttribute). The last line sums up: kernels, kernels that spill, most registers.
# With a built binary, `cuobjdump --dump-resource-usage BINARY` gives the same figures
# (bench/gpu/run_all.sh does that on the device).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
arch=${1:-sm_90}
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
table=$(mktemp)
trap 'rm -f "$table"' EXIT
printf "%-5s %-6s %-6s %-7s %s\n" regs stack smem spills kernel
for cu in "$root"/codegen/cuda/*.cu; do
  "$nvcc" -std=c++17 -arch="$arch" -I"$root" --expt-relaxed-constexpr -Xptxas -v -c "$cu" \
      -o /dev/null 2>&1 |
    awk -v file="$(basename "$cu")" '
      /Compiling entry function/ { match($0, /_Z[^'"'"']*/); name = substr($0, RSTART, RLENGTH) }
      /bytes stack frame/ { stack = $1; spills = $5 + $9 }
      /Used [0-9]+ registers/ {
        regs = $5; smem = 0
        if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH - 11)
        printf "%s %s %s %s %s\n", regs, stack, smem, spills, name
      }' |
    while read -r regs stack smem spills name; do
      printf "%-5s %-6s %-6s %-7s %s\n" "$regs" "$stack" "$smem" "$spills" \
          "$(echo "$name" | c++filt | sed -E 's/ptc::cuda::kernels::\(anonymous namespace\):://;
            s/\(ptc::cuda::kernels::DT\)0/f32/; s/\(ptc::cuda::kernels::DT\)1/f16/;
            s/\(ptc::cuda::kernels::DT\)2/bf16/; s/\(ptc::cuda::kernels::DT\)3/f64/;
            s/\(ptc::cuda::kernels::DT\)4/i8/; s/\(ptc::cuda::kernels::DT\)5/u8/;
            s/\(ptc::cuda::kernels::DT\)6/i32/; s/\(ptc::cuda::kernels::DT\)7/i64/;
            s/\(ptc::cuda::kernels::DT\)8/bool/; s/^void //; s/\(.*//')"
    done
done | tee "$table"
awk 'NF >= 5 { n++; if ($4 > 0) spill++; if ($1 > maxr) { maxr = $1; who = $5 } }
     END { printf "summary: %d kernels, %d with spills, most registers %d (%s)\n", n, spill, maxr, who }' "$table"
