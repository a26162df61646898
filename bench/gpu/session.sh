#!/usr/bin/env bash
# The one device call (bench/gpu/README.md), made to end within BUDGET seconds:
#   source .gpu/env.sh && bash bench/gpu/session.sh [BUDGET=530] [BATCH=16] [STEPS=12]
# 1. run_all.sh tests: every CUDA test (at most a third of the budget);
# 2. gpt2_bench.sh: GPT-2 small training vs PyTorch eager and torch.compile, inference;
# 3. run_all.sh sanitizers: memcheck and racecheck with what is left.
# Environment: TEST_SECONDS (tests' limit), SANITIZER_SECONDS (kept for the sanitizers; 0: none),
# and gpt2_bench.sh's PEERS, VARIANTS, PROFILES.
# Stdout is also $OUT/session.log; the other logs are packed into $OUT/logs.tar.gz (the device
# returns at most 8 files). The summary tables come last, for the reply's output tail.
set -uo pipefail
budget=${1:-530}
B=${2:-16}
STEPS=${3:-12}
here=$(cd "$(dirname "$0")" && pwd)
start=$(date +%s)
final=${OUT:-/tmp/ptc-gpu-final}
export OUT=/tmp/ptc-gpu-out
rm -rf "$OUT"
mkdir -p "$OUT" "$final"
left() { echo $(( budget - ($(date +%s) - start) )); }
# stage NAME LIMIT CMD...: CMD with min(LIMIT, time left - 15 s); a line in stages.md.
stage() {
  local name=$1 limit=$2 t t0 rc
  shift 2
  t=$(( $(left) - 15 ))
  [ "$limit" -lt "$t" ] && t=$limit
  if [ "$t" -lt 20 ]; then
    echo "| $name | skipped: ${t} s left |" >> "$OUT/stages.md"
    return
  fi
  t0=$(date +%s)
  timeout -k 5 "$t" "$@"
  rc=$?
  echo "| $name | rc $rc in $(( $(date +%s) - t0 )) s (limit $t s) |" >> "$OUT/stages.md"
}
{
  reserve=${SANITIZER_SECONDS:-130}  # 0: no sanitizer stage
  stage tests "${TEST_SECONDS:-$(( budget / 3 ))}" bash "$here/run_all.sh" tests
  stage "GPT-2 bench" $(( $(left) - reserve )) bash "$here/gpt2_bench.sh" "$B" "$STEPS"
  # Stopped by its limit before its table: the table of what ran (from the files in $OUT).
  if [ ! -s "$OUT/summary-bench.md" ]; then
    (cd "$OUT" && SUMMARY_ONLY=1 timeout 30 bash "$here/gpt2_bench.sh" "$B" "$STEPS")
  fi
  if [ "$reserve" -gt 0 ]; then
    PTC_SANITIZER_BUDGET=$(( $(left) - 25 )) stage sanitizers 9999 bash "$here/run_all.sh" sanitizers
  fi
} 2>&1 | tee "$final/session.log"
tar -czf "$final/logs.tar.gz" -C "$OUT" . 2>/dev/null
{
  echo
  echo "==================== summary ($(( $(date +%s) - start )) s)"
  echo "| stage | result |"
  echo "| --- | --- |"
  cat "$OUT/stages.md"
  cat "$OUT"/summary-tests.md "$OUT"/summary-bench.md "$OUT"/summary-sanitizers.md 2>/dev/null
} | tee "$final/summary.md"
