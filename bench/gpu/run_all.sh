#!/usr/bin/env bash
# The CUDA backend's checks on the device (see bench/gpu/README.md):
#   source .gpu/env.sh && bash bench/gpu/run_all.sh [tests|sanitizers|all]
# tests: device facts; every CUDA test, one test suite per process (a crash or a hang costs one
#   suite, not the rest), each with a time limit: the kernel case table vs the CPU kernels incl.
#   the losses, training ops and flash attention, flash fwd/bwd vs naive f64, GPT end to end,
#   10 fp32 training steps vs CPU, bf16/fp16 200-step curves, load-time errors; kernel resource
#   usage from the binary.
# sanitizers: compute-sanitizer memcheck on a short `ptc run` of a training plan (every kernel
#   of a training step: cuBLASLt, generated, flash, AdamW, CUDA-graph replay) and on a filter of
#   kernel cases; racecheck on the shared-memory kernels.
# Each mode ends with its summary table (also in $OUT/summary-<mode>.md). Logs go to $OUT.
set -uo pipefail
mode=${1:-all}
out=${OUT:-/tmp/ptc-gpu-out}
mkdir -p "$out"
tests=$(command -v ptc_cuda_tests || true)
if [ -z "$tests" ]; then
  echo "ptc_cuda_tests not on PATH: run bench/gpu/prepare.sh here, carry .gpu, source .gpu/env.sh"
  exit 2
fi
suite_limit=${PTC_SUITE_LIMIT:-150}

run_tests() {
  echo "== device"
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.max.sm \
    --format=csv 2>&1 | tee "$out/device.txt"
  echo "commit $(cat .gpu/commit 2>/dev/null || echo unknown)" | tee -a "$out/device.txt"
  uname -r | tee -a "$out/device.txt"

  echo "== tests (one process per suite, ${suite_limit} s each)"
  local t0 t1 suites suite rc all_rc=0 hung=""
  t0=$(date +%s)
  suites=$("$tests" --gtest_list_tests | grep -v '^ ' | grep '\.$' | sed 's/\.$//')
  # PTC_TEST_FILTER: one process with that gtest filter instead of every suite (quick checks).
  [ -n "${PTC_TEST_FILTER:-}" ] && suites=filtered
  : > "$out/tests.log"
  for suite in $suites; do
    local ts=$(date +%s) filter="$suite.*"
    [ "$suite" = filtered ] && filter=$PTC_TEST_FILTER
    timeout -k 5 "$suite_limit" "$tests" --gtest_filter="$filter" \
      --gtest_output="xml:$out/tests-${suite//\//_}.xml" >> "$out/tests.log" 2>&1
    rc=$?
    echo "  $suite: rc $rc, $(( $(date +%s) - ts )) s"
    if [ $rc -ne 0 ]; then
      all_rc=$rc
      if [ $rc -eq 124 ] || [ $rc -eq 137 ] || [ $rc -ge 128 ]; then
        hung="$hung $suite(rc $rc, last: $(grep '^\[ RUN      \]' "$out/tests.log" | tail -1 | cut -c14-))"
        echo "[  FAILED  ] $suite.<process> (rc $rc)" >> "$out/tests.log"
      fi
    fi
  done
  t1=$(date +%s)
  grep -E "^\[  FAILED  \] .*\(|Failure|host-fallback|device:|passes=|worst|loss scale" \
    "$out/tests.log" | head -60
  local passed failed skipped
  passed=$(grep -c '^\[       OK \]' "$out/tests.log")
  failed=$(grep -c '^\[  FAILED  \] .*(' "$out/tests.log")
  skipped=$(grep -c '^\[  SKIPPED \] .*(' "$out/tests.log")

  cuobjdump --dump-resource-usage "$tests" 2>/dev/null | grep -E "Function|REG" | paste - - \
    | sed -E 's/.*Function ([^:]*):.*REG:([0-9]+) STACK:([0-9]+) SHARED:([0-9]+).*/\2 regs, \3 B stack, \4 B smem  \1/' \
    | sort -u > "$out/resource_usage.txt"

  {
    echo
    echo "| step | result |"
    echo "| --- | --- |"
    echo "| device | $(head -2 "$out/device.txt" | tail -1) |"
    echo "| CUDA tests | rc $all_rc: $passed passed, $failed failed, $skipped skipped ($((t1 - t0)) s) |"
    [ -n "$hung" ] && echo "| crashed or timed out | $hung |"
    echo "| kernels in the binary (resource_usage.txt) | $(wc -l < "$out/resource_usage.txt") |"
  } | tee "$out/summary-tests.md"
  [ "$all_rc" -eq 0 ] && [ "$failed" -eq 0 ]
}

# compute-sanitizer TOOL LOG LIMIT CMD...: "ok: <summary>" or why not, on stdout.
sanitize() {
  local tool=$1 log=$2 limit=$3 rc summary
  shift 3
  timeout -k 5 "$limit" compute-sanitizer --tool "$tool" --error-exitcode 99 "$@" > "$log" 2>&1
  rc=$?
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$log" | tail -1)
  if [ $rc -eq 0 ]; then
    echo "ok: ${summary:-no summary}"
  elif grep -q "Device not supported" "$log"; then
    echo "unavailable on this machine (Device not supported)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "timed out after $limit s: $(grep -c '^\[       OK \]' "$log") tests done, errors so far: $(grep -c '^========= [A-Z]' "$log")"
  else
    echo "rc $rc: ${summary:-see $(basename "$log")}"
  fi
}

run_sanitizers() {
  if ! command -v compute-sanitizer >/dev/null; then
    echo "| sanitizers | compute-sanitizer not on PATH |" | tee "$out/summary-sanitizers.md"
    return 1
  fi
  local budget=${PTC_SANITIZER_BUDGET:-300} w=/tmp/ptc-san
  mkdir -p "$w"
  echo "== compute-sanitizer memcheck: ptc run of a small GPT training plan (bf16, 2 steps)"
  ptc model gpt2 --set vocab=512 --set layers=2 --dim 128 --heads 4 --seq 128 --loss \
    -o "$w/tiny.onnx" > "$w/model.log" 2>&1
  ptc compile "$w/tiny.onnx" -o "$w/tiny.plan" --train --target cuda --precision bf16 \
    --dim batch=4 --dim seq=128 --optimizer adamw > "$w/compile.log" 2>&1
  local run_result
  run_result=$(sanitize memcheck "$out/memcheck-run.log" $((budget / 4)) --leak-check full \
    ptc run "$w/tiny.plan" --steps 2 --progress none --data "${PTC_SOURCE_DIR:-.}/.gpu/corpus.txt")
  echo "$run_result"
  echo "== compute-sanitizer memcheck: kernel cases"
  local filter='CudaE2e.GptOpset17AllOnDevice:Table/CudaKernelCase.MatchesCpu/matmul_f32_batched:Table/CudaKernelCase.MatchesCpu/gather_embedding:Table/CudaKernelCase.MatchesCpu/layer_norm_bias_stats:Table/CudaKernelCase.MatchesCpu/attention_bhtd_causal:Table/CudaKernelCase.MatchesCpu/fused_bias_gelu:Table/CudaKernelCase.MatchesCpu/concat_three:Table/CudaKernelCase.MatchesCpu/attention_bthd_bf16:Table/CudaKernelCase.MatchesCpu/gather_grad_repeats:Table/CudaKernelCase.MatchesCpu/layer_norm_grad_many_rows:Table/CudaKernelCase.MatchesCpu/adamw_f32_tail:Table/CudaKernelCase.MatchesCpu/softmax_ce_vocab_bf16:Cases/FlashAttention.*:Table/CudaKernelCase.MatchesCpu/attention_tc_bf16_causal_ragged:Table/CudaKernelCase.MatchesCpu/attention_grad_tc_bf16_causal_ragged:Table/CudaKernelCase.MatchesCpu/layer_norm_grad_rows_1024_bf16:CudaFastPaths.*:Table/GeneratedKernelCase.MatchesCpu/bias_gelu_bf16:CudaTraining.GraphReplayMatchesEagerAndFetchSkipsResults:Table/CudaKernelCase.MatchesCpu/gemm_bgrad_*:CudaKernelOptions.GemmBgradReduceMatchesCpu:Table/CudaKernelCase.MatchesCpu/*_qkv_bf16:Table/CudaKernelCase.MatchesCpu/split_odd_bf16:Table/CudaKernelCase.MatchesCpu/layer_norm_f32_to_*:Table/CudaKernelCase.MatchesCpu/layer_norm_grad_*_dy_*:Table/CudaKernelCase.MatchesCpu/layer_norm_grad_addend_*:Table/CudaKernelCase.MatchesCpu/fused_matmul_*_odd_n_*:Table/CudaKernelCase.MatchesCpu/*_causal_attr*:Table/CudaKernelCase.MatchesCpu/layer_norm_grad_dx_low_*:Table/CudaKernelCase.MatchesCpu/gemm_bgrad_bf16_f32_y_only:Table/CudaKernelCase.MatchesCpu/matmul_f32_bcast_loop_odd:Table/CudaKernelCase.MatchesCpu/fused_matmul_*addend*:Table/CudaKernelCase.MatchesCpu/fused_matmul_*gelu_tanh*:Table/CudaKernelCase.MatchesCpu/linear_ce_loss_bf16_f32_grads:Table/CudaKernelCase.MatchesCpu/*packed*:CudaAutotune.*:CudaInference.*:CudaGenerate.DecoderLogitsMatchTheFullWindow:Table/CudaKernelCase.MatchesCpu/*_aux*:Table/CudaKernelCase.MatchesCpu/gemm_gelu_grad_*:CudaKernelOptions.GeluPassMatchesCpu:CudaTraining.GeluAuxFusionMatchesUnfusedStep'
  local cases_result
  cases_result=$(sanitize memcheck "$out/memcheck-cases.log" $((budget / 2)) --leak-check full \
    "$tests" --gtest_filter="$filter")
  echo "$cases_result"
  echo "== compute-sanitizer racecheck (flash attention, scan, layer_norm_grad)"
  local race_filter='Cases/FlashAttention.*:Table/CudaKernelCase.MatchesCpu/attention_tc_bf16_causal_ragged:Table/CudaKernelCase.MatchesCpu/attention_grad_tc_bf16_causal_ragged:Table/CudaKernelCase.MatchesCpu/layer_norm_grad_rows_1024_bf16:Table/CudaKernelCase.MatchesCpu/attention_long_tk_tiles:Table/CudaKernelCase.MatchesCpu/gather_grad_many_buckets:Table/CudaKernelCase.MatchesCpu/layer_norm_grad_many_rows:Table/CudaKernelCase.MatchesCpu/attention_grad_tc_bf16_causal_attr_ragged:Table/CudaKernelCase.MatchesCpu/attention_grad_tc_bf16_packed_causal:Table/CudaKernelCase.MatchesCpu/attention_grad_packed_bf16_simt_d32'
  local race_result
  race_result=$(sanitize racecheck "$out/racecheck.log" $((budget / 4)) \
    "$tests" --gtest_filter="$race_filter")
  echo "$race_result"
  {
    echo
    echo "| sanitizer run | result |"
    echo "| --- | --- |"
    echo "| memcheck: ptc run, 2 bf16 training steps of a small GPT | $run_result |"
    echo "| memcheck: kernel cases (GPT fwd, tensor-core attention, fast paths, generated, graphs) | $cases_result |"
    echo "| racecheck: flash fwd/bwd, scan, layer_norm_grad | $race_result |"
  } | tee "$out/summary-sanitizers.md"
}

case $mode in
  tests) run_tests ;;
  sanitizers) run_sanitizers ;;
  all) run_tests; rc=$?; run_sanitizers; exit $rc ;;
  *) echo "usage: run_all.sh [tests|sanitizers|all]"; exit 2 ;;
esac
