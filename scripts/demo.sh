#!/usr/bin/env bash
# The main job on a built-in default: install, build, compile a GPT model exported from
# PyTorch, run it, profile it, and show its memory plan.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD" -j"${JOBS:-2}" ptc
PTC="$BUILD/ptc"
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
MODEL=tests/data/e2e/gpt_opset17
echo "== compile $MODEL/model.onnx"
"$PTC" compile "$MODEL/model.onnx" -o "$OUT/gpt.plan" --dim batch=2 --dim seq=16 --stats
echo "== run on the reference input"
"$PTC" run "$OUT/gpt.plan" --input idx="$MODEL/input_0.pb" --output-dir "$OUT/outputs" \
  --warmup 2 --repeat 20 --profile
echo "== memory plan"
"$PTC" dump "$OUT/gpt.plan" --format json > "$OUT/gpt.json"
python3 - "$OUT/gpt.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["memory"]
bufs = sorted((b for b in m["buffers"] if not b.get("alias_of")), key=lambda b: -b["bytes"])
print(f"arena {m['arena_bytes']} bytes, lower bound {m['lower_bound']} bytes, "
      f"{len(m['buffers'])} buffers")
for b in bufs[:8]:
    print(f"  {b['value']:<32} {b['bytes']:>10} B  offset {b['offset']:>10}  live [{b['first']}, {b['last']}]")
PY
"$PTC" dump "$OUT/gpt.plan" --format dot > "$OUT/gpt.dot"
command -v dot >/dev/null && dot -Tsvg "$OUT/gpt.dot" -o "$OUT/gpt.svg" && echo "graph: $OUT/gpt.svg"
echo "outputs in $OUT/"
