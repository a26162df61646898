#!/usr/bin/env bash
# GPT-2 small (124M) on the lent GPU: ptc vs PyTorch eager and torch.compile (bench/gpu/
# torch_gpt2.py), the issue's training bench (bf16, batch x seq = B x 1024, AdamW) and the
# inference figures (forward at batch 1 and 16, generation with the KV cache). Device machine:
#   source .gpu/env.sh && bash bench/gpu/gpt2_bench.sh [BATCH=16] [STEPS=12]
# Prints a table at the end; logs and JSON in $OUT (default /tmp/ptc-gpu-out).
set -uo pipefail
out=${OUT:-/tmp/ptc-gpu-out}
mkdir -p "$out"
B=${1:-16}
STEPS=${2:-12}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
corpus=$(cd "$here/../.." && pwd)/.gpu/corpus.txt
cd "$out"

echo "== ptc: model, compile (training step bf16 on cuda), train $STEPS steps"
ptc model gpt2 --preset small --loss -o gpt2-loss.onnx > model.log 2>&1
ptc model gpt2 --preset small -o gpt2.onnx >> model.log 2>&1
t0=$(date +%s)
ptc compile gpt2-loss.onnx -o train.plan --train --target cuda --precision bf16 \
  --dim batch="$B" --dim seq=1024 --optimizer adamw --lr 3e-4 --weight-decay 0.1 \
  > compile-train.log 2>&1
echo "compile rc $? in $(( $(date +%s) - t0 )) s: $(tail -1 compile-train.log)"
(while sleep 0.5; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done) \
  > ptc-mem.txt 2>/dev/null &
mon=$!
ptc run train.plan --steps "$STEPS" --data "$corpus" --progress lines --log-json ptc-train.jsonl \
  > ptc-train.log 2>&1
ptc_rc=$?
kill $mon 2>/dev/null
tail -3 ptc-train.log
ptc_tok=$($py - <<'PY'
import json, statistics
rows = [json.loads(l) for l in open("ptc-train.jsonl") if '"tokens_per_s"' in l]
rows = rows[2:] or rows
print(f"{statistics.median(r['tokens_per_s'] for r in rows):.0f}" if rows else "n/a")
PY
)
ptc_mem=$(sort -n ptc-mem.txt | tail -1)
grep -h "training step on the device\|generated\|interpreter" ptc-train.log | head -3

echo "== ptc: device time per op of the training step (ptc run --profile, 3 steps)"
ptc run train.plan --steps 3 --data "$corpus" --progress none --profile > ptc-profile.log 2>&1
grep -A16 "^profile" ptc-profile.log

echo "== ptc again with the SIMT attention kernels (PTC_CUDA_OPTIONS=attention_simt)"
PTC_CUDA_OPTIONS=attention_simt ptc run train.plan --steps "$STEPS" --data "$corpus" \
  --progress lines --log-json ptc-train-simt.jsonl > ptc-train-simt.log 2>&1
simt_rc=$?
simt_tok=$($py - <<'PY'
import json, statistics
rows = [json.loads(l) for l in open("ptc-train-simt.jsonl") if '"tokens_per_s"' in l]
rows = rows[2:] or rows
print(f"{statistics.median(r['tokens_per_s'] for r in rows):.0f}" if rows else "n/a")
PY
)

echo "== ptc inference (bf16 forward, batch 1 and 16) and generation"
for bi in 1 16; do
  ptc compile gpt2.onnx -o infer$bi.plan --target cuda --precision bf16 --dim batch=$bi \
    --dim seq=1024 > compile-infer$bi.log 2>&1
  ptc run infer$bi.plan --random-inputs --warmup 3 --repeat 10 > ptc-infer$bi.log 2>&1
  tail -1 ptc-infer$bi.log
done

echo "== ptc generate on cuda (KV cache, bf16 plan of batch 1 x 1024), 256 tokens"
ptc generate infer1.plan --prompt 'The ' --tokens 256 --temperature 0 > ptc-gen.txt 2> ptc-gen.log
echo "rc $?: $(tail -1 ptc-gen.log)"
ptc_gen=$(grep -o '[0-9.]* tokens/s' ptc-gen.log | head -1)

echo "== PyTorch $($py -c 'import torch; print(torch.__version__)')"
for c in "" "--compile"; do
  $py "$here/torch_gpt2.py" train --batch "$B" --seq 1024 --steps "$STEPS" $c \
    > "torch-train$c.json" 2> "torch-train$c.log" || tail -3 "torch-train$c.log"
  cat "torch-train$c.json"
done
for bi in 1 16; do
  $py "$here/torch_gpt2.py" infer --batch $bi --seq 1024 > torch-infer$bi.json 2>torch-infer$bi.log \
    || tail -3 torch-infer$bi.log
  cat torch-infer$bi.json
done
$py "$here/torch_gpt2.py" generate --tokens 256 > torch-gen.json 2>torch-gen.log || tail -3 torch-gen.log
cat torch-gen.json

field() { $py -c "import json,sys; d=json.load(open(sys.argv[1])); print(round(d[sys.argv[2]]) if isinstance(d[sys.argv[2]], float) else d[sys.argv[2]])" "$1" "$2" 2>/dev/null || echo n/a; }
echo
echo "| GPT-2 small, bf16, batch $B x 1024, AdamW | tokens/s | peak memory |"
echo "| --- | --- | --- |"
echo "| ptc (rc $ptc_rc) | $ptc_tok | ${ptc_mem:-?} MiB (nvidia-smi, whole process) |"
echo "| ptc, SIMT attention (rc $simt_rc) | $simt_tok | |"
echo "| PyTorch eager | $(field torch-train.json tokens_per_s) | $(field torch-train.json peak_mem_bytes) B (max_memory_allocated) |"
echo "| torch.compile | $(field torch-train--compile.json tokens_per_s) | $(field torch-train--compile.json peak_mem_bytes) B |"
echo "| inference forward | ptc | PyTorch eager |"
echo "| batch 1 x 1024 | $(grep -o 'median [0-9.]* ms' ptc-infer1.log) | $(field torch-infer1.json forward_ms) ms |"
echo "| batch 16 x 1024 | $(grep -o 'median [0-9.]* ms' ptc-infer16.log) | $(field torch-infer16.json forward_ms) ms |"
echo "| generation (KV cache, 256 tokens) | ${ptc_gen:-n/a} (executor creation and prompt included) | $(field torch-gen.json tokens_per_s) tokens/s |"
