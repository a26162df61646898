#!/usr/bin/env bash
# The main job on a built-in default: install, build, make a small byte-level GPT, compile a
# training step, train it on Debian's fortunes corpus with a progress bar, sample text before
# and after training, and show the memory plan.
#   STEPS=2000 BATCH=8 SEQ=64 ./scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
BUILD=${BUILD:-build}
STEPS=${STEPS:-2000}
BATCH=${BATCH:-8}
SEQ=${SEQ:-64}
OUT=${OUT:-out/demo}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD" -j"${JOBS:-2}" ptc
PTC="$BUILD/ptc"
mkdir -p "$OUT"
rm -rf "$OUT/ckpt"

echo "== 1. make a model: GPT-2 style, byte-level (vocab 256), 4 layers, dim 256"
"$PTC" model gpt2 --preset tiny --loss -o "$OUT/tiny-loss.onnx"
"$PTC" model gpt2 --preset tiny -o "$OUT/tiny.onnx"

echo "== 2. compile the training step (AdamW, cosine schedule, grad clipping)"
"$PTC" compile "$OUT/tiny-loss.onnx" -o "$OUT/train.plan" --train --dim batch="$BATCH" --dim seq="$SEQ" \
  --optimizer adamw --lr 2e-3 --weight-decay 0.1 --no-decay 'ln|bias|wpe' --grad-clip 1 \
  --schedule cosine --warmup 50 --total-steps "$STEPS" --min-lr-ratio 0.1

echo "== 3. before training, the model says:"
"$PTC" compile "$OUT/tiny.onnx" -o "$OUT/gen0.plan" --dim batch=1 --dim seq=128
"$PTC" generate "$OUT/gen0.plan" --prompt "The " --tokens 120 | cat -v

echo "== 4. train on the fortunes corpus (/usr/share/games/fortunes)"
"$PTC" run "$OUT/train.plan" --steps "$STEPS" --eval-every $((STEPS / 5)) \
  --log-json "$OUT/train-log.jsonl" --checkpoint "$OUT/ckpt" --checkpoint-every $((STEPS / 2))

echo "== 5. after training, the model says:"
"$PTC" export "$OUT/ckpt" --model "$OUT/tiny.onnx" -o "$OUT/tiny-trained.onnx"
"$PTC" compile "$OUT/tiny-trained.onnx" -o "$OUT/gen.plan" --dim batch=1 --dim seq=128
"$PTC" generate "$OUT/gen.plan" --prompt "The " --tokens 300

echo "== 6. memory plan of the training step"
if "$PTC" dump --help 2>/dev/null | grep -q -- --memory; then
  "$PTC" dump "$OUT/train.plan" --memory
  "$PTC" dump "$OUT/train.plan" --memory --format json > "$OUT/memory.json"
  "$PTC" dump "$OUT/train.plan" --memory --format svg > "$OUT/memory.svg"
  echo "memory timeline: $OUT/memory.svg, JSON: $OUT/memory.json"
else
  "$PTC" dump "$OUT/train.plan" --format json > "$OUT/train.json"
  python3 - "$OUT/train.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["memory"]
bufs = sorted((b for b in m["buffers"] if not b.get("alias_of")), key=lambda b: -b["bytes"])
print(f"arena {m['arena_bytes']} bytes, lower bound {m['lower_bound']} bytes, {len(m['buffers'])} buffers")
for b in bufs[:8]:
    print(f"  {b['value']:<40} {b['bytes']:>10} B  offset {b['offset']:>10}  live [{b['first']}, {b['last']}]")
PY
fi
echo "outputs in $OUT/ (training log: $OUT/train-log.jsonl)"
