#!/usr/bin/env bash
# Usage: cli_test.sh PTC PTC_OPT SOURCE_DIR. Prints `N passed, N failed`; exits non-zero on failure.
set -u
PTC=$1; OPT=$2; SRC=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok()   { pass=$((pass + 1)); echo "ok   $1"; }
bad()  { fail=$((fail + 1)); echo "FAIL $1"; }
check() { local name=$1; shift; if "$@" >"$T/out" 2>"$T/err"; then ok "$name"; else bad "$name"; sed 's/^/    /' "$T/err" | head -5; fi; }
# A failing command must exit non-zero with exactly one line on stderr starting with "ptc: error:".
check_error() {
  local name=$1 pattern=$2; shift 2
  if "$@" >"$T/out" 2>"$T/err"; then bad "$name (exit 0)"; return; fi
  if [ "$(wc -l <"$T/err")" -ne 1 ] || ! grep -q "^ptc: error: .*$pattern" "$T/err"; then
    bad "$name"; sed 's/^/    /' "$T/err" | head -5; return; fi
  ok "$name"
}
M=$SRC/tests/data/e2e/gpt_opset17

check "help lists subcommands" bash -c "'$PTC' --help | grep -q compile && '$PTC' compile --help | grep -q Examples"
check "compile gpt" "$PTC" compile "$M/model.onnx" -o "$T/gpt.plan" --dim batch=2 --dim seq=16
check "run gpt" "$PTC" run "$T/gpt.plan" --input idx="$M/input_0.pb" --output-dir "$T/outputs"
check "run wrote output_0.pb" test -s "$T/outputs/output_0.pb"
check "run --profile --json" bash -c "'$PTC' run '$T/gpt.plan' --random-inputs --repeat 3 --profile --json '$T/run.json' && grep -q median_seconds '$T/run.json'"
# dump text re-parses to the same text (ptc-opt with no passes prints what it parsed).
"$PTC" dump "$T/gpt.plan" >"$T/dump.ir" 2>/dev/null
check "dump text round-trips" bash -c "'$OPT' '$T/dump.ir' --passes=none >'$T/reprint.ir' && diff -q '$T/dump.ir' '$T/reprint.ir'"
check "dump json parses" bash -c "'$PTC' dump '$T/gpt.plan' --format json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"memory\"][\"arena_bytes\"] > 0'"
if command -v dot >/dev/null; then
  check "dump dot renders" bash -c "'$PTC' dump '$T/gpt.plan' --format dot | dot -Tsvg >'$T/g.svg' && grep -q '<svg' '$T/g.svg'"
else
  echo "skip dump dot renders (graphviz not installed)"
fi
check "dump as ONNX re-imports" bash -c "'$PTC' dump '$T/gpt.plan' --format onnx >'$T/opt.onnx' && '$PTC' compile '$T/opt.onnx' -o '$T/opt.plan' && '$PTC' run '$T/opt.plan' --input idx='$M/input_0.pb' --output-dir '$T/opt-out'"
check "dump onnx directly" bash -c "'$PTC' dump '$M/model.onnx' --dim batch=1 --dim seq=4 | grep -q '^func @main'"

check_error "unbound dim" "seq" "$PTC" compile "$M/model.onnx" -o "$T/x.plan" --dim batch=2
check_error "bad dim syntax" "NAME=N" "$PTC" compile "$M/model.onnx" -o "$T/x.plan" --dim batch
check_error "unknown pass" "no-such-pass" "$PTC" compile "$M/model.onnx" -o "$T/x.plan" --dim batch=2 --dim seq=16 --passes no-such-pass
check_error "missing input" "missing input" "$PTC" run "$T/gpt.plan"
head -c 100 "$T/gpt.plan" >"$T/trunc.plan"
cp "$T/gpt.plan.weights" "$T/trunc.plan.weights"
check_error "truncated plan" "" "$PTC" run "$T/trunc.plan" --random-inputs
printf 'not a model' >"$T/bad.onnx"
check_error "garbage onnx" "bad.onnx" "$PTC" compile "$T/bad.onnx" -o "$T/x.plan"
check_error "wrong input type" "" "$PTC" run "$T/gpt.plan" --input idx="$M/output_0.pb"

check "compile --target cuda (no GPU needed)" "$PTC" compile "$M/model.onnx" -o "$T/gpu.plan" --target cuda --dim batch=2 --dim seq=16
if ! nvidia-smi >/dev/null 2>&1; then
  check_error "run a CUDA plan without a GPU" "CUDA" "$PTC" run "$T/gpu.plan" --input idx="$M/input_0.pb"
fi
check_error "unknown target" "target" "$PTC" compile "$M/model.onnx" -o "$T/x.plan" --target tpu --dim batch=2 --dim seq=16
check "compile --target cuda --precision bf16" "$PTC" compile "$M/model.onnx" -o "$T/gpu-bf16.plan" --target cuda --precision bf16 --dim batch=2 --dim seq=16
check "compile --target cuda prints the roofline" bash -c "'$PTC' compile '$M/model.onnx' -o '$T/gpu2.plan' --target cuda --dim batch=2 --dim seq=16 2>&1 | grep -q '^roofline (H200'"
check "dump --cost (text, json)" bash -c "'$PTC' dump '$T/gpu-bf16.plan' --cost | grep -q 'ideal step:' && '$PTC' dump '$T/gpu-bf16.plan' --cost --format json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"ideal_ms\"] > 0 and d[\"ops\"]'"
check "bf16 plan has bf16 matmuls" bash -c "'$PTC' dump '$T/gpu-bf16.plan' | grep -q 'matmul(.*: bf16\\['"
check_error "--precision bf16 on cpu" "needs --target cuda" "$PTC" compile "$M/model.onnx" -o "$T/x.plan" --precision bf16 --dim batch=2 --dim seq=16
check_error "unknown --precision" "precision 'fp8'" "$PTC" compile "$M/model.onnx" -o "$T/x.plan" --target cuda --precision fp8 --dim batch=2 --dim seq=16

# Model builder -> training -> checkpoint -> export -> generation, tiny sizes.
check "model gpt2 with loss" "$PTC" model gpt2 --preset tiny --layers 1 --dim 64 --heads 2 --seq 32 --loss -o "$T/l.onnx"
check "model gpt2" "$PTC" model gpt2 --preset tiny --layers 1 --dim 64 --heads 2 --seq 32 -o "$T/f.onnx"
# GPT-2's tanh GELU by default (one gelu {approximate="tanh"} per layer after match-gelu), the
# exact one with --gelu erf.
check "model gpt2: tanh gelu by default" bash -c "'$PTC' compile '$T/f.onnx' -o '$T/g.plan' --dim batch=1 --dim seq=4 --passes match-gelu && '$PTC' dump '$T/g.plan' | grep -q 'gelu(.*approximate=\"tanh\"'"
check "model gpt2 --gelu erf" bash -c "'$PTC' model gpt2 --preset tiny --layers 1 --dim 64 --heads 2 --seq 32 --gelu erf -o '$T/erf.onnx' && '$PTC' compile '$T/erf.onnx' -o '$T/e.plan' --dim batch=1 --dim seq=4 --passes match-gelu && '$PTC' dump '$T/e.plan' | grep -q 'gelu(.*approximate=\"none\"'"
check_error "model gpt2 --gelu relu" "gelu must be tanh or erf, got 'relu'" "$PTC" model gpt2 --gelu relu -o "$T/x.onnx"
# A seq longer than the model was built for (its position table): said up front, with the fix.
check_error "compile with seq beyond the model's" "is longer than the model was built for (32 positions" "$PTC" compile "$T/l.onnx" -o "$T/x.plan" --train --dim batch=2 --dim seq=64
check "compile --train" "$PTC" compile "$T/l.onnx" -o "$T/train.plan" --train --dim batch=2 --dim seq=16 --lr 3e-3
check "train 20 steps" "$PTC" run "$T/train.plan" --steps 20 --eval-every 10 --log-json "$T/log.jsonl" --checkpoint "$T/ckpt" --checkpoint-every 10 --progress lines
check "train with --profile prints the ops" bash -c "'$PTC' run '$T/train.plan' --steps 2 --progress none --profile 2>&1 | grep -q 'adamw_update'"
# Gradients are step results only with --keep-gradients (what --dump-gradients reads).
check_error "dump gradients of a plan without them" "--keep-gradients" "$PTC" run "$T/train.plan" --steps 1 --progress none --dump-gradients "$T/grads"
check "dump gradients with --keep-gradients" bash -c "'$PTC' compile '$T/l.onnx' -o '$T/train-kept.plan' --train --keep-gradients --dim batch=2 --dim seq=16 && '$PTC' run '$T/train-kept.plan' --steps 1 --progress none --dump-gradients '$T/grads' && test -s '$T/grads/wte.pb' && grep -q '\"wte\"' '$T/grads/index.json'"
check "log has 20 steps" bash -c "[ \$(grep -c '\"loss\"' '$T/log.jsonl') -ge 20 ]"
check "loss falls" python3 - "$T/log.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
first, last = rows[0]["loss"], rows[-1]["loss"]
assert last < first - 0.1, (first, last)
PY
check "export checkpoint" "$PTC" export "$T/ckpt" --model "$T/f.onnx" -o "$T/trained.onnx"
check "compile trained for generation" "$PTC" compile "$T/trained.onnx" -o "$T/gen.plan" --dim batch=1 --dim seq=32
check "generate" bash -c "'$PTC' generate '$T/gen.plan' --prompt 'A' --tokens 20 --seed 3 | grep -q '^A'"
check_error "generate from a training plan" "generation" "$PTC" generate "$T/train.plan" --tokens 2
check "generate from the checkpoint = from the exported plan" bash -c "[ \"\$('$PTC' generate '$T/ckpt' --model '$T/f.onnx' --seq 32 --prompt 'A' --tokens 20 --temperature 0 2>/dev/null)\" = \"\$('$PTC' generate '$T/gen.plan' --prompt 'A' --tokens 20 --temperature 0)\" ]"
check "compile --train --target cuda --precision fp16 (dynamic loss scaling)" bash -c "'$PTC' compile '$T/l.onnx' -o '$T/train-fp16.plan' --train --target cuda --precision fp16 --dim batch=2 --dim seq=16 && '$PTC' dump '$T/train-fp16.plan' | grep -q 'opt.loss_scale'"
check_error "unknown --loss-scale" "loss-scale" "$PTC" compile "$T/l.onnx" -o "$T/x.plan" --train --loss-scale static --dim batch=2 --dim seq=16
check "compile --train --target cuda (no GPU needed)" "$PTC" compile "$T/l.onnx" -o "$T/train-cuda.plan" --train --target cuda --precision bf16 --dim batch=2 --dim seq=16 --lr 3e-3 --passes default,-fuse-residual-add,-fold-matmul-casts
check_error "--passes dropping an absent pass" "not in the list before it" "$PTC" compile "$T/l.onnx" -o "$T/x.plan" --passes -fuse-residual-add,default --dim batch=2 --dim seq=16
# Generated fused_elementwise kernels (NVRTC at compile time) are listed by dump --kernels
# (the residual adds, fused elementwise chains without fuse-residual-add and
# fold-matmul-casts).
if ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so' || [ -e /usr/local/cuda/lib64/libnvrtc.so ]; then
  check "dump --kernels lists generated CUDA kernels" bash -c "'$PTC' dump '$T/train-cuda.plan' --kernels | grep -q '^ptc_fused_[0-9a-f]*  sm_90  cubin [1-9]' && '$PTC' dump '$T/train-cuda.plan' --kernels -v | grep -q 'extern \"C\" __global__'"
  check_error "compile --cuda-arch garbage" "must look like sm_90" "$PTC" compile "$T/l.onnx" -o "$T/x.plan" --train --target cuda --cuda-arch hopper --dim batch=2 --dim seq=16
else
  echo "skip dump --kernels (NVRTC not installed)"
fi
check "compile --target cuda without NVRTC stores no kernels" bash -c "PTC_NVRTC_LIBRARY=/nonexistent/libnvrtc.so '$PTC' compile '$T/l.onnx' -o '$T/train-nonvrtc.plan' --train --target cuda --precision bf16 --dim batch=2 --dim seq=16 --passes default,-fuse-residual-add,-fold-matmul-casts 2>&1 | grep -q 'no generated kernels (NVRTC not found' && '$PTC' dump '$T/train-nonvrtc.plan' --kernels | grep -q '^0 generated CUDA kernels'"
check "compile --no-cuda-codegen stores no kernels" bash -c "'$PTC' compile '$T/l.onnx' -o '$T/train-nocg.plan' --train --target cuda --precision bf16 --no-cuda-codegen --dim batch=2 --dim seq=16 && '$PTC' dump '$T/train-nocg.plan' --kernels | grep -q '^0 generated CUDA kernels'"
check_error "dump --kernels of an ONNX model" "needs a plan file" "$PTC" dump "$T/l.onnx" --kernels --dim batch=2 --dim seq=16
check "generate reports tokens/s" bash -c "'$PTC' generate '$T/gen.plan' --prompt 'A' --tokens 5 2>&1 >/dev/null | grep -q 'tokens/s, KV cache'"
check "compile for generation --target cuda" "$PTC" compile "$T/trained.onnx" -o "$T/gen-cuda.plan" --target cuda --dim batch=1 --dim seq=32
if ! nvidia-smi >/dev/null 2>&1; then
  check_error "train a CUDA plan without a GPU" "CUDA" "$PTC" run "$T/train-cuda.plan" --steps 2 --progress none
  check_error "generate with a CUDA plan without a GPU" "no CUDA device" "$PTC" generate "$T/gen-cuda.plan" --prompt 'A' --tokens 2
else
  check "generate on cuda = on cpu (greedy)" bash -c "[ \"\$('$PTC' generate '$T/gen-cuda.plan' --prompt 'A' --tokens 20 --temperature 0 2>/dev/null)\" = \"\$('$PTC' generate '$T/gen.plan' --prompt 'A' --tokens 20 --temperature 0 2>/dev/null)\" ]"
fi
if [ -x "$(dirname "$PTC")/ptc-cuda-race" ]; then
  check "train a CUDA plan on the CPU emulation's race checker" env PTC_CUDA_EMULATE=race "$PTC" run "$T/train-cuda.plan" --steps 2 --progress none
  check "generate on the race checker = on cpu (greedy)" bash -c "a=\$(PTC_CUDA_EMULATE=race '$PTC' generate '$T/gen-cuda.plan' --prompt 'A' --tokens 12 --temperature 0 2>/dev/null); b=\$('$PTC' generate '$T/gen.plan' --prompt 'A' --tokens 12 --temperature 0 2>/dev/null); [ -n \"\$a\" ] && [ \"\$a\" = \"\$b\" ]"
fi
check_error "PTC_CUDA_EMULATE=garbage" "is not one of 1" env PTC_CUDA_EMULATE=yes "$PTC" run "$T/train-cuda.plan" --steps 1
check_error "generate from a checkpoint without --model" "--model" "$PTC" generate "$T/ckpt" --tokens 2
check_error "generate from a checkpoint with the loss model" "without its loss" "$PTC" generate "$T/ckpt" --model "$T/l.onnx" --seq 32 --tokens 2

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
