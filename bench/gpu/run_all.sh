#!/usr/bin/env bash
# The one device call for the CUDA backend (see bench/gpu/README.md):
#   source .gpu/env.sh && bash bench/gpu/run_all.sh
# 1. device facts; 2. every CUDA test (kernel case table vs the CPU kernels incl. the losses,
# training ops and flash attention, flash fwd/bwd vs naive f64, GPT end to end, load-time
# errors); 3. compute-sanitizer memcheck on a short run (GPT forward + a few kernel
# cases); 4. a summary table (last, so it lands in the reply's output tail). Logs go to $OUT.
set -uo pipefail
out=${OUT:-/tmp/ptc-gpu-out}
mkdir -p "$out"
tests=$(command -v ptc_cuda_tests || true)
if [ -z "$tests" ]; then
  echo "ptc_cuda_tests not on PATH: run bench/gpu/prepare.sh here, carry .gpu, source .gpu/env.sh"
  exit 2
fi

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv 2>&1 | tee "$out/device.txt"
echo "commit $(cat .gpu/commit 2>/dev/null || echo unknown)" | tee -a "$out/device.txt"

echo "== tests"
t0=$(date +%s)
"$tests" --gtest_output="xml:$out/tests.xml" > "$out/tests.log" 2>&1
tests_rc=$?
t1=$(date +%s)
grep -E "^\[  FAILED  \] .*\(|Failure|host-fallback|device:|passes=" "$out/tests.log" | head -60
passed=$(grep -c '^\[       OK \]' "$out/tests.log")
failed=$(grep -c '^\[  FAILED  \] .*(' "$out/tests.log")
skipped=$(grep -c '^\[  SKIPPED \] .*(' "$out/tests.log")

echo "== compute-sanitizer memcheck (short run)"
filter='CudaE2e.GptOpset17AllOnDevice:Table/CudaKernelCase.MatchesCpu/matmul_f32_batched:Table/CudaKernelCase.MatchesCpu/gather_embedding:Table/CudaKernelCase.MatchesCpu/layer_norm_bias_stats:Table/CudaKernelCase.MatchesCpu/attention_bhtd_causal:Table/CudaKernelCase.MatchesCpu/fused_bias_gelu:Table/CudaKernelCase.MatchesCpu/concat_three:Table/CudaKernelCase.MatchesCpu/attention_bthd_bf16:Table/CudaKernelCase.MatchesCpu/gather_grad_repeats:Table/CudaKernelCase.MatchesCpu/layer_norm_grad_many_rows:Table/CudaKernelCase.MatchesCpu/adamw_f32_tail:Table/CudaKernelCase.MatchesCpu/softmax_ce_vocab_bf16:Cases/FlashAttention.*:Table/CudaKernelCase.MatchesCpu/attention_tc_bf16_causal_ragged:Table/CudaKernelCase.MatchesCpu/attention_grad_tc_bf16_causal_ragged:Table/CudaKernelCase.MatchesCpu/layer_norm_grad_rows_1024_bf16:CudaFastPaths.*:Table/GeneratedKernelCase.MatchesCpu/bias_gelu_bf16:CudaTraining.GraphReplayMatchesEagerAndFetchSkipsResults'
san_result="not run"
if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck --leak-check full --error-exitcode 99 \
    "$tests" --gtest_filter="$filter" > "$out/memcheck.log" 2>&1
  san_rc=$?
  tail -5 "$out/memcheck.log"
  summary=$(grep -E "ERROR SUMMARY" "$out/memcheck.log" | tail -1)
  if [ $san_rc -eq 0 ]; then
    san_result="ok: ${summary:-no summary}"
  elif grep -q "Device not supported" "$out/memcheck.log"; then
    san_result="unavailable on this machine (Device not supported; gVisor kinds)"
  else
    san_result="rc $san_rc: ${summary:-see memcheck.log}"
  fi
else
  san_result="compute-sanitizer not on PATH"
fi

echo "== compute-sanitizer racecheck (shared-memory kernels: flash attention, scan, layer_norm_grad)"
race_filter='Cases/FlashAttention.*:Table/CudaKernelCase.MatchesCpu/attention_tc_bf16_causal_ragged:Table/CudaKernelCase.MatchesCpu/attention_grad_tc_bf16_causal_ragged:Table/CudaKernelCase.MatchesCpu/layer_norm_grad_rows_1024_bf16:Table/CudaKernelCase.MatchesCpu/attention_long_tk_tiles:Table/CudaKernelCase.MatchesCpu/gather_grad_many_buckets:Table/CudaKernelCase.MatchesCpu/layer_norm_grad_many_rows'
race_result="not run"
if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool racecheck --error-exitcode 99 "$tests" --gtest_filter="$race_filter" \
    > "$out/racecheck.log" 2>&1
  race_rc=$?
  summary=$(grep -E "RACECHECK SUMMARY|ERROR SUMMARY" "$out/racecheck.log" | tail -1)
  if [ $race_rc -eq 0 ]; then
    race_result="ok: ${summary:-no summary}"
  elif grep -q "Device not supported" "$out/racecheck.log"; then
    race_result="unavailable on this machine (Device not supported)"
  else
    race_result="rc $race_rc: ${summary:-see racecheck.log}"
  fi
fi

echo "== resource usage (from the binary: registers, smem, stack per kernel)"
cuobjdump --dump-resource-usage "$tests" 2>/dev/null | grep -E "Function|REG" | paste - - \
  | sed -E 's/.*Function ([^:]*):.*REG:([0-9]+) STACK:([0-9]+) SHARED:([0-9]+).*/\2 regs, \3 B stack, \4 B smem  \1/' \
  | sort -u > "$out/resource_usage.txt"
wc -l < "$out/resource_usage.txt" | xargs echo "kernels:"

echo
echo "| step | result |"
echo "| --- | --- |"
echo "| device | $(head -2 "$out/device.txt" | tail -1) |"
echo "| CUDA tests | rc $tests_rc: $passed passed, $failed failed, $skipped skipped ($((t1 - t0)) s) |"
echo "| memcheck (GPT fwd, kernel cases incl. tensor-core attention, fast paths, generated, graphs) | $san_result |"
echo "| racecheck (flash fwd/bwd incl. tensor cores, scan, layer_norm_grad) | $race_result |"
echo "| logs | $out: tests.log tests.xml memcheck.log racecheck.log resource_usage.txt |"
[ "$tests_rc" -eq 0 ] && [ "$failed" -eq 0 ]
