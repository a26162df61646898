#!/usr/bin/env bash
# GPT-2 small (124M) on the lent GPU: ptc vs PyTorch eager and torch.compile (bench/gpu/
# torch_gpt2.py), the issue's training bench (bf16, batch x seq = B x 1024, AdamW) and the
# inference figures (forward at batch 1 and 16, generation with the KV cache). Device machine:
#   source .gpu/env.sh && bash bench/gpu/gpt2_bench.sh [BATCH=16] [STEPS=12]
# ptc's training run and PyTorch's come first (the issue's main figure), then inference and
# generation, then the extras (ptc's variants, per-op profiles, ncu); every run has a time
# limit, and the summary table prints at the end or, when a time limit (session.sh's stage)
# stops the script, from what ran. Peak memory is the most
# nvidia-smi showed for the GPU while the run went (the whole process: CUDA context, library
# workspaces, arena), polled every 0.2 s for ptc and PyTorch alike; PyTorch's own
# max_memory_allocated / reserved are in its JSON. MFU = (6 N + causal attention) FLOPs per
# token x tokens/s over the bf16 matmul rate measured in the same run (8192^3, random data).
# PEERS=0 skips PyTorch (a quick check of ptc alone; PEER_EXPORT=0 only the training of the
# peer's own model exported by torch.onnx); VARIANTS="a b,c" adds training runs with
# PTC_CUDA_OPTIONS=a and =b,c (default: no_autotune, bgrad_reduce, linear_ce_f32_logits,
# gelu_pass);
# PROFILES="default a" lists the PTC_CUDA_OPTIONS of the per-op profiles. The main run autotunes (the default: the
# first step times cuBLASLt's candidate algorithms and the attention kernels, cuDNN's included)
# and its log ends with the table of choices (PTC_CUDA_AUTOTUNE_TABLE=1).
# Prints a table at the end (also $OUT/summary-bench.md); logs and JSON in $OUT, plans and
# models in $WORK (default /tmp/ptc-gpu-work).
set -uo pipefail
out=${OUT:-/tmp/ptc-gpu-out}
work=${WORK:-/tmp/ptc-gpu-work}
mkdir -p "$out" "$work"
B=${1:-16}
STEPS=${2:-12}
# PRESET / SEQ: another model and length (a dry run of this script on the CUDA CPU emulation:
#   PATH=build:$PATH PRESET=tiny SEQ=64 PEERS=0 NCU=0 PTC_CUDA_EMULATE=1 \
#     bash bench/gpu/gpt2_bench.sh 2 3
# exercises every step and the summary without a GPU).
PRESET=${PRESET:-small}
SEQ=${SEQ:-1024}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
corpus=$(cd "$here/../.." && pwd)/.gpu/corpus.txt
cd "$out"

# watch NAME LIMIT CMD...: runs CMD with a time limit while polling the GPU's used memory into
# NAME.mem; the run's peak is then `peak NAME`.
watch() {
  local name=$1 limit=$2 mon rc
  shift 2
  (while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done) \
    > "$name.mem" 2>/dev/null &
  mon=$!
  timeout -k 5 "$limit" "$@"
  rc=$?
  kill $mon 2>/dev/null
  wait $mon 2>/dev/null
  return $rc
}
peak() { sort -n "$1.mem" 2>/dev/null | tail -1; }
base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
median_tok() {
  $py - "$1" <<'PY'
import json, statistics, sys
try:
    rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
except OSError:
    rows = []
rows = rows[2:] or rows
print(f"{statistics.median(r['tokens_per_s'] for r in rows):.0f}" if rows else "n/a")
PY
}
field() { $py -c "import json,sys; d=json.load(open(sys.argv[1])); v=d[sys.argv[2]]; print(round(v, 1) if isinstance(v, float) else v)" "$1" "$2" 2>/dev/null || echo n/a; }
ms() { $py -c "import json,sys; print(round(1e3 * json.load(open(sys.argv[1]))[sys.argv[2]], 2))" "$1" "$2" 2>/dev/null || echo n/a; }

mfu() {  # tokens/s -> "x% MFU (y TFLOP/s)" at the matmul rate $rate
  $py - "$1" "$rate" <<'PY'
import sys
try:
    tok, rate = float(sys.argv[1]), float(sys.argv[2])
except ValueError:
    print("n/a"); sys.exit()
n, layers, d, t = 124439808, 12, 768, 1024  # GPT-2 small incl. position embeddings, tied head
tf = tok * (6 * n + 6 * layers * t * d) / 1e12
print(f"{100 * tf / rate:.1f}% ({tf:.0f} TFLOP/s)")
PY
}
mib() { [ "$1" = n/a ] && echo n/a || echo "$(( $1 / 1048576 )) MiB"; }

# The summary table, from whatever ran: at the end, or when a time limit (session.sh's stage:
# SIGTERM to the script and its runs) stops the script early.
# Everything it reads is in files of $OUT, so session.sh can also make it after a killed run
# (SUMMARY_ONLY=1: the summary of the files there, nothing run).
summarized=0
summarize() {
  [ "$summarized" = 1 ] && return
  summarized=1
  rate=$(field matmul.json tflops)
  local t_eager t_comp ptc_rc ptc_tok ptc_gen variant_rows="" v
  t_eager=$(field torch-train.json tokens_per_s)
  t_comp=$(field torch-compile.json tokens_per_s)
  ptc_rc=$(cat ptc-train.rc 2>/dev/null || echo n/a)
  ptc_tok=$(median_tok ptc-train.jsonl)
  ptc_gen=$(grep -o '[0-9.]* tokens/s' ptc-gen.log 2>/dev/null | head -1)
  for v in ${VARIANTS-no_autotune bgrad_reduce linear_ce_f32_logits gelu_pass} nopack dropout; do
    [ -e "ptc-train-$v.rc" ] || continue
    local label=$v
    [ "$v" = nopack ] && label=--no-pack-qkv
    [ "$v" = dropout ] && label=--dropout
    variant_rows="$variant_rows$label $(cat "ptc-train-$v.rc") $(median_tok "ptc-train-$v.jsonl")\n"
  done
  {
    echo
    echo "bf16 matmul rate: $rate TFLOP/s; GPU memory used before the runs: ${base:-?} MiB"
    echo
    echo "| GPT-2 $PRESET, bf16, batch $B x $SEQ, AdamW | tokens/s | MFU | peak GPU memory (nvidia-smi) | allocator peak |"
    echo "| --- | --- | --- | --- | --- |"
    echo "| ptc (rc $ptc_rc) | $ptc_tok | $(mfu "$ptc_tok") | $(peak ptc-train) MiB | $(grep -o 'arena [0-9.]* [KMG]iB' compile-train.log 2>/dev/null | head -1) |"
    printf "%b" "$variant_rows" | while read -r v vrc vtok; do
      case "$v" in
        --dropout) label="GPT-2's dropout 0.1 (ptc model gpt2 --dropout 0.1: embeddings, attention and MLP outputs in the elementwise / layer-norm-gradient kernels, attention probabilities in the flash kernels)" ;;
        --*) label="compiled with $v" ;;
        *) label="PTC_CUDA_OPTIONS=$v" ;;
      esac
      [ -n "$v" ] && echo "| ptc, $label (rc $vrc) | $vtok | $(mfu "$vtok") | | |"
    done
    [ -e ptc-peer.rc ] && echo "| ptc on PyTorch's own model (torch_gpt2.py exported by torch.onnx, dynamo) (rc $(cat ptc-peer.rc)) | $(median_tok ptc-peer.jsonl) | $(mfu "$(median_tok ptc-peer.jsonl)") | $(peak ptc-peer) MiB | $(grep -o 'arena [0-9.]* [KMG]iB' compile-peer.log 2>/dev/null | head -1) |"
    echo "| PyTorch eager | $t_eager | $(mfu "$t_eager") | $(peak torch-train) MiB | $(mib "$(field torch-train.json peak_mem_bytes)") allocated, $(mib "$(field torch-train.json peak_reserved_bytes)") reserved |"
    echo "| torch.compile | $t_comp | $(mfu "$t_comp") | $(peak torch-compile) MiB | $(mib "$(field torch-compile.json peak_mem_bytes)") allocated, $(mib "$(field torch-compile.json peak_reserved_bytes)") reserved |"
    echo
    echo "| inference | ptc | PyTorch eager |"
    echo "| --- | --- | --- |"
    # ptc's timed runs leave the logits on the device, as PyTorch's; the copy to the host beside.
    for bi in 1 16; do
      echo "| forward, batch $bi x $SEQ | $(ms ptc-infer$bi.json median_seconds) ms ($(ms ptc-infer$bi.json fetch_seconds) ms with the logits copied to the host) | $(field torch-infer$bi.json forward_ms) ms |"
    done
    echo "| forward, batch 16 x $SEQ, split q/k/v and bf16 logits cast up (before session 13) | $(ms ptc-infer16-split.json median_seconds) ms | |"
    echo "| generation, KV cache, 256 tokens | ${ptc_gen:-n/a} (executor creation and prompt included) | $(field torch-gen.json tokens_per_s) tokens/s |"
  } | tee summary-bench.md
}
if [ "${SUMMARY_ONLY:-0}" = 1 ]; then
  summarize
  exit 0
fi
trap summarize EXIT
trap 'echo "== stopped by a time limit: the summary of what ran"; exit 143' TERM

echo "== bf16 matmul rate (PyTorch, 8192^3)"
timeout 60 $py "$here/torch_gpt2.py" matmul > matmul.json 2> matmul.log; cat matmul.json

echo "== ptc: model, compile (training step bf16 on cuda), train $STEPS steps"
ptc model gpt2 --preset "$PRESET" --loss -o "$work/gpt2-loss.onnx" > model.log 2>&1
ptc model gpt2 --preset "$PRESET" -o "$work/gpt2.onnx" >> model.log 2>&1
t0=$(date +%s)
ptc compile "$work/gpt2-loss.onnx" -o "$work/train.plan" --train --target cuda --precision bf16 \
  --dim batch="$B" --dim seq="$SEQ" --optimizer adamw --lr 3e-4 --weight-decay 0.1 \
  > compile-train.log 2>&1
echo "compile rc $? in $(( $(date +%s) - t0 )) s: $(head -2 compile-train.log | tr '\n' ' ')"
# The step on this GPU's roofline (the matmul rate measured above; HBM3e 4.8 TB/s): the ideal
# per-op times to set against the profile below.
rate=$($py -c "import json; print(json.load(open('matmul.json'))['tflops'])" 2>/dev/null || echo 732)
ptc dump "$work/train.plan" --cost --peak-tflops "$rate" > cost-train.txt 2>&1
tail -1 cost-train.txt
export PTC_CUDA_ROOFLINE="$rate,4800"  # ptc's progress MFU and the profiles' ideal times
watch ptc-train 120 env PTC_CUDA_AUTOTUNE_TABLE=1 ptc run "$work/train.plan" --steps "$STEPS" \
  --data "$corpus" --progress lines --log-json ptc-train.jsonl > ptc-train.log 2>&1
echo $? > ptc-train.rc
grep -Ev '^  (gemm|attention)' ptc-train.log | tail -4
grep -E '^  (gemm|attention)' ptc-train.log | head -40  # the autotune table

if [ "${PEERS:-1}" = 1 ]; then
echo "== PyTorch $($py -c 'import torch; print(torch.__version__)' 2>/dev/null): eager, then torch.compile"
watch torch-train 150 $py "$here/torch_gpt2.py" train --batch "$B" --seq "$SEQ" --steps "$STEPS" \
  > torch-train.json 2> torch-train.log || tail -3 torch-train.log
cat torch-train.json
watch torch-compile 300 $py "$here/torch_gpt2.py" train --batch "$B" --seq "$SEQ" --steps "$STEPS" \
  --compile > torch-compile.json 2> torch-compile.log || tail -3 torch-compile.log
cat torch-compile.json
fi  # PEERS

# ptc on the peer's own model: torch_gpt2.py's GPT (the code PyTorch runs above) exported by
# torch.onnx's dynamo exporter, compiled and trained as the main run. PEER_EXPORT=0 skips.
if [ "${PEERS:-1}" = 1 ] && [ "${PEER_EXPORT:-1}" = 1 ]; then
  echo "== ptc on the peer's own model (torch.onnx.export, dynamo=True): compile, train $STEPS steps"
  {
    timeout 120 $py "$here/torch_gpt2.py" export --out "$work/peer-loss.onnx" \
      $([ "$PRESET" = tiny ] && echo --tiny) > peer-export.json 2> peer-export.log &&
    ptc compile "$work/peer-loss.onnx" -o "$work/peer.plan" --train --target cuda \
      --precision bf16 --dim batch="$B" --dim seq="$SEQ" --optimizer adamw --lr 3e-4 \
      --weight-decay 0.1 > compile-peer.log 2>&1 &&
    watch ptc-peer 120 ptc run "$work/peer.plan" --steps "$STEPS" --data "$corpus" \
      --progress lines --log-json ptc-peer.jsonl > ptc-peer.log 2>&1
  }
  echo $? > ptc-peer.rc
  cat peer-export.json 2>/dev/null || tail -3 peer-export.log
  head -2 compile-peer.log
  tail -2 ptc-peer.log 2>/dev/null
fi

echo "== inference: bf16 forward at batch 1 and 16 x $SEQ, ptc and PyTorch eager"
for bi in 1 16; do
  ptc compile "$work/gpt2.onnx" -o "$work/infer$bi.plan" --target cuda --precision bf16 \
    --dim batch=$bi --dim seq="$SEQ" > compile-infer$bi.log 2>&1
  timeout 60 ptc run "$work/infer$bi.plan" --random-inputs --warmup 3 --repeat 10 \
    --json ptc-infer$bi.json > ptc-infer$bi.log 2>&1
  tail -1 ptc-infer$bi.log
  [ "${PEERS:-1}" = 1 ] || continue
  timeout 90 $py "$here/torch_gpt2.py" infer --batch $bi --seq "$SEQ" > torch-infer$bi.json \
    2> torch-infer$bi.log || tail -3 torch-infer$bi.log
  cat torch-infer$bi.json
done

echo "== inference: batch 16 as compiled before session 13 (split q/k/v, bf16 logits cast up)"
ptc compile "$work/gpt2.onnx" -o "$work/infer16-split.plan" --target cuda --precision bf16 \
  --dim batch=16 --dim seq="$SEQ" --no-pack-qkv --passes default,-fold-matmul-casts \
  > compile-infer16-split.log 2>&1
timeout 60 ptc run "$work/infer16-split.plan" --random-inputs --warmup 3 --repeat 10 \
  --json ptc-infer16-split.json > ptc-infer16-split.log 2>&1
tail -1 ptc-infer16-split.log

echo "== generation with the KV cache, 256 tokens, ptc (bf16 plan of batch 1 x $SEQ) and PyTorch"
timeout 90 ptc generate "$work/infer1.plan" --prompt 'The ' --tokens 256 --temperature 0 \
  > ptc-gen.txt 2> ptc-gen.log
echo "rc $?: $(tail -1 ptc-gen.log)"
if [ "${PEERS:-1}" = 1 ]; then
  timeout 90 $py "$here/torch_gpt2.py" generate --tokens 256 > torch-gen.json 2> torch-gen.log \
    || tail -3 torch-gen.log
  cat torch-gen.json
fi

# Variants of the same training run (PTC_CUDA_OPTIONS values, space-separated).
for v in ${VARIANTS-no_autotune bgrad_reduce linear_ce_f32_logits gelu_pass}; do
  echo "== ptc again with PTC_CUDA_OPTIONS=$v"
  PTC_CUDA_OPTIONS=$v timeout 90 ptc run "$work/train.plan" --steps "$STEPS" --data "$corpus" \
    --progress lines --log-json "ptc-train-$v.jsonl" > "ptc-train-$v.log" 2>&1
  echo $? > "ptc-train-$v.rc"
  tail -2 "ptc-train-$v.log"
done
# The same step compiled without pack-qkv (split / concat around attention), NOPACK=0 skips.
if [ "${NOPACK:-1}" = 1 ]; then
  echo "== ptc again, compiled with --no-pack-qkv"
  ptc compile "$work/gpt2-loss.onnx" -o "$work/train-nopack.plan" --train --target cuda \
    --precision bf16 --dim batch="$B" --dim seq="$SEQ" --optimizer adamw --lr 3e-4 \
    --weight-decay 0.1 --no-pack-qkv > compile-train-nopack.log 2>&1
  timeout 90 ptc run "$work/train-nopack.plan" --steps "$STEPS" --data "$corpus" \
    --progress lines --log-json ptc-train-nopack.jsonl > ptc-train-nopack.log 2>&1
  echo $? > ptc-train-nopack.rc
  tail -2 ptc-train-nopack.log
fi
# The same model with GPT-2's dropout 0.1 (the dropout kernels and attention dropout in the
# flash kernels, redrawn in the backward), DROPOUT=0 skips.
if [ "${DROPOUT:-1}" = 1 ]; then
  echo "== ptc again, a model with dropout 0.1"
  ptc model gpt2 --preset "$PRESET" --dropout 0.1 --loss -o "$work/gpt2-loss-dropout.onnx" \
    > model-dropout.log 2>&1
  ptc compile "$work/gpt2-loss-dropout.onnx" -o "$work/train-dropout.plan" --train --target cuda \
    --precision bf16 --dim batch="$B" --dim seq="$SEQ" --optimizer adamw --lr 3e-4 \
    --weight-decay 0.1 > compile-train-dropout.log 2>&1
  timeout 90 ptc run "$work/train-dropout.plan" --steps "$STEPS" --data "$corpus" \
    --progress lines --log-json ptc-train-dropout.jsonl > ptc-train-dropout.log 2>&1
  echo $? > ptc-train-dropout.rc
  tail -2 ptc-train-dropout.log
fi

for prof in ${PROFILES-default attention_cudnn}; do
  popt=$prof
  [ "$prof" = default ] && popt=""
  echo "== ptc: device time per op of the training step (ptc run --profile, 3 steps, PTC_CUDA_OPTIONS=$popt)"
  PTC_CUDA_OPTIONS=$popt timeout 90 ptc run "$work/train.plan" --steps 3 --data "$corpus" \
    --progress none --profile > "ptc-profile-$prof.log" 2>&1
  grep -A24 "^profile" "ptc-profile-$prof.log"
  echo "== ptc: device time per op of the forward at batch 16 (PTC_CUDA_OPTIONS=$popt)"
  PTC_CUDA_OPTIONS=$popt timeout 60 ptc run "$work/infer16.plan" --random-inputs --repeat 3 \
    --profile > "ptc-infer16-profile-$prof.log" 2>&1
  grep -A12 "^profile" "ptc-infer16-profile-$prof.log"
done

# Hardware counters of the heaviest kernels (Firecracker machines; gVisor ones have none):
# speed-of-light and occupancy of the first launches of the attention, LM-head row, layer-norm
# and memory-bound (reduce, cast, split / concat, elementwise, AdamW) kernels
# in one training step of the batch-4 plan.
if [ "${NCU:-1}" = 1 ] && command -v ncu >/dev/null; then
  echo "== ncu: attention and linear_ce_loss kernels (one step at batch 4)"
  ptc compile "$work/gpt2-loss.onnx" -o "$work/train4.plan" --train --target cuda \
    --precision bf16 --dim batch=4 --dim seq="$SEQ" --optimizer adamw > compile-train4.log 2>&1
  timeout 120 ncu --clock-control none --target-processes all \
    --kernel-name 'regex:Tc|Flash|LinearCe|LayerNorm|LnGrad|Reduce|Cast|Split|Concat|Copy|Elementwise|Fused|Gelu|Adam' --launch-count 30 \
    --section SpeedOfLight --section Occupancy ptc run "$work/train4.plan" --steps 1 \
    --data "$corpus" --progress none > ncu.log 2>&1
  echo "ncu rc $?"
  grep -E "^  [A-Za-z_].*\(|Duration|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy" ncu.log | head -60
fi


