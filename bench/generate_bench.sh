#!/usr/bin/env bash
# tokens/s of `ptc generate` with the KV-cache decoder and with the full window (--no-kv-cache)
# on gpt2 tiny (random weights, 4 layers, dim 256, positions = window) at window 128 and 512. Greedy decoding, so
# both paths produce the same text (checked) while the output stays within the window.
#   bench/generate_bench.sh [PTC_BINARY] [TOKENS]
# Timings are wall-clock of the whole command (plan load + decoder build + prompt + tokens);
# the prompt is one byte, so prefill is negligible. Never asserted: machines are noisy.
set -euo pipefail
PTC=${1:-build/ptc}
TOKENS=${2:-100}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
now() { date +%s.%N; }
printf "%-8s %-8s %14s %14s %9s %s\n" model window "kv-cache tok/s" "full tok/s" speedup "same text"
for T in 128 512; do
  "$PTC" model gpt2 --preset tiny --seq "$T" -o "$WORK/g$T.onnx" >/dev/null 2>&1
  "$PTC" compile "$WORK/g$T.onnx" -o "$WORK/g$T.plan" --dim batch=1 --dim seq=$T >/dev/null 2>&1
  t0=$(now)
  "$PTC" generate "$WORK/g$T.plan" --prompt 'T' --tokens "$TOKENS" --temperature 0 >"$WORK/kv.txt"
  t1=$(now)
  "$PTC" generate "$WORK/g$T.plan" --prompt 'T' --tokens "$TOKENS" --temperature 0 --no-kv-cache >"$WORK/full.txt"
  t2=$(now)
  same=no
  if [ "$TOKENS" -lt "$T" ] && cmp -s "$WORK/kv.txt" "$WORK/full.txt"; then same=yes; fi
  if [ "$TOKENS" -ge "$T" ]; then same="n/a (past the window)"; fi
  awk -v n="$TOKENS" -v a="$t0" -v b="$t1" -v c="$t2" -v T="$T" -v same="$same" 'BEGIN {
    kv = n / (b - a); full = n / (c - b);
    printf "%-8s %-8d %14.1f %14.1f %8.1fx %s\n", "gpt2-tiny", T, kv, full, kv / full, same }'
done
