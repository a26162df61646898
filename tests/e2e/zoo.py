#!/usr/bin/env python3
"""Which transformers causal LMs ptc takes, and how well: a tiny random instance of each
architecture (vocab 256: bytes, 2 layers, dim 32, 4 heads), exported by torch.onnx's dynamo exporter
(opset 20, optimize=False, the loss included), then with ptc:

  1. `ptc compile` (inference) and `ptc run` of the export: the loss against torch's;
  2. `ptc compile --train --target cuda --precision bf16`: the ops the training step keeps
     besides the ones every transformer needs (GEMMs, norms, attention, the fused loss, AdamW,
     casts, shape ops) -- what is left unfused, per architecture;
  3. the logits exported alone, `ptc generate --temperature 0` with the KV-cache decoder and
     with the full window (--no-kv-cache): the same greedy text, or what stopped the decoder.

Not part of CI (it needs torch >= 2.9 and transformers 5.25; the exports take a minute):

    python3 -m venv /opt/t211 && /opt/t211/bin/pip install torch==2.11.0 onnx onnxscript \\
        transformers==5.25.0
    /opt/t211/bin/python tests/e2e/zoo.py --ptc build/ptc [--only qwen2 phi] [--keep DIR]

Prints a Markdown table (tests/e2e/README.md keeps the last one).
"""

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile

import torch
import transformers as T
from onnx import TensorProto, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_references import hf_logits_wrapper, hf_loss_wrapper, perturb_all  # noqa: E402

COMMON = dict(vocab_size=256, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=64)
NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0)


def build(kind):
    """A tiny random model of architecture `kind`."""
    if kind == "gpt2":
        return T.GPT2LMHeadModel(T.GPT2Config(vocab_size=256, n_embd=32, n_layer=2, n_head=4,
                                              n_positions=64, attn_pdrop=0.0, **NO_DROPOUT))
    if kind == "llama":
        return T.LlamaForCausalLM(T.LlamaConfig(hidden_size=32, intermediate_size=88,
                                                num_key_value_heads=2, **COMMON))
    if kind == "mistral":
        return T.MistralForCausalLM(T.MistralConfig(hidden_size=32, intermediate_size=88,
                                                    num_key_value_heads=2, sliding_window=None,
                                                    **COMMON))
    if kind == "qwen2":
        return T.Qwen2ForCausalLM(T.Qwen2Config(hidden_size=32, intermediate_size=88,
                                                num_key_value_heads=2, **COMMON))
    if kind == "qwen3":
        return T.Qwen3ForCausalLM(T.Qwen3Config(hidden_size=32, intermediate_size=88,
                                                num_key_value_heads=2, head_dim=8, **COMMON))
    if kind == "gemma":
        return T.GemmaForCausalLM(T.GemmaConfig(hidden_size=32, intermediate_size=88,
                                                num_key_value_heads=2, head_dim=8, **COMMON))
    if kind == "gemma2":
        return T.Gemma2ForCausalLM(T.Gemma2Config(hidden_size=32, intermediate_size=88,
                                                  num_key_value_heads=2, head_dim=8,
                                                  sliding_window=64, **COMMON))
    if kind == "phi":
        return T.PhiForCausalLM(T.PhiConfig(hidden_size=32, intermediate_size=88,
                                            partial_rotary_factor=0.5, attention_dropout=0.0,
                                            **NO_DROPOUT, **COMMON))
    if kind == "stablelm":
        return T.StableLmForCausalLM(T.StableLmConfig(hidden_size=32, intermediate_size=88,
                                                      num_key_value_heads=2,
                                                      partial_rotary_factor=0.25, **COMMON))
    if kind == "neox":
        return T.GPTNeoXForCausalLM(T.GPTNeoXConfig(hidden_size=32, intermediate_size=88,
                                                    rotary_pct=0.5, hidden_dropout=0.0,
                                                    attention_dropout=0.0, **COMMON))
    if kind == "gptj":
        return T.GPTJForCausalLM(T.GPTJConfig(vocab_size=256, n_embd=32, n_layer=2, n_head=4,
                                              rotary_dim=4, n_positions=64, attn_pdrop=0.0,
                                              **NO_DROPOUT))
    if kind == "opt":
        return T.OPTForCausalLM(T.OPTConfig(vocab_size=256, hidden_size=32, num_hidden_layers=2,
                                            ffn_dim=88, num_attention_heads=4,
                                            max_position_embeddings=64, word_embed_proj_dim=32,
                                            dropout=0.0, attention_dropout=0.0))
    if kind == "bigcode":
        return T.GPTBigCodeForCausalLM(T.GPTBigCodeConfig(vocab_size=256, n_embd=32, n_layer=2,
                                                          n_head=4, n_positions=64,
                                                          multi_query=True, attn_pdrop=0.0,
                                                          **NO_DROPOUT))
    if kind == "falcon":
        return T.FalconForCausalLM(T.FalconConfig(vocab_size=256, hidden_size=32,
                                                  num_hidden_layers=2, num_attention_heads=4,
                                                  new_decoder_architecture=False,
                                                  multi_query=True, hidden_dropout=0.0,
                                                  attention_dropout=0.0))
    if kind == "bloom":
        return T.BloomForCausalLM(T.BloomConfig(vocab_size=256, hidden_size=32, n_layer=2,
                                                n_head=4, hidden_dropout=0.0,
                                                attention_dropout=0.0))
    if kind == "gemma3":
        return T.Gemma3ForCausalLM(T.Gemma3TextConfig(hidden_size=32, intermediate_size=88,
                                                      num_key_value_heads=2, head_dim=8,
                                                      sliding_window=8, **COMMON))
    if kind == "phi3":
        return T.Phi3ForCausalLM(T.Phi3Config(hidden_size=32, intermediate_size=88,
                                              num_key_value_heads=2, resid_pdrop=0.0,
                                              embd_pdrop=0.0, attention_dropout=0.0,
                                              pad_token_id=0, **COMMON))
    if kind == "olmo2":
        return T.Olmo2ForCausalLM(T.Olmo2Config(hidden_size=32, intermediate_size=88,
                                                num_key_value_heads=2, pad_token_id=0,
                                                **COMMON))
    if kind == "starcoder2":
        return T.Starcoder2ForCausalLM(T.Starcoder2Config(hidden_size=32, intermediate_size=88,
                                                          num_key_value_heads=2,
                                                          sliding_window=None, residual_dropout=0.0,
                                                          embedding_dropout=0.0, **COMMON))
    if kind == "granite":
        return T.GraniteForCausalLM(T.GraniteConfig(hidden_size=32, intermediate_size=88,
                                                    num_key_value_heads=2, **COMMON))
    if kind == "cohere":
        return T.CohereForCausalLM(T.CohereConfig(hidden_size=32, intermediate_size=88,
                                                  num_key_value_heads=2, pad_token_id=0,
                                                  **COMMON))
    if kind == "mixtral":
        return T.MixtralForCausalLM(T.MixtralConfig(hidden_size=32, intermediate_size=88,
                                                    num_key_value_heads=2, num_local_experts=4,
                                                    num_experts_per_tok=2, **COMMON))
    raise ValueError(kind)


KINDS = ["gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi", "stablelm",
         "neox", "gptj", "opt", "bigcode", "falcon", "bloom", "gemma3", "phi3", "olmo2",
         "starcoder2", "granite", "cohere", "mixtral"]

# Ops every transformer's training step has; the table lists the others.
EXPECTED = {"assign", "lr_schedule", "adamw_update", "gather", "gather_grad", "layer_norm",
            "layer_norm_grad", "fused_matmul", "gemm", "gemm_bgrad", "gemm_gelu_grad", "cast",
            "slice", "concat", "add", "fused_elementwise", "attention", "attention_grad",
            "linear_ce_loss", "rotary", "swiglu", "swiglu_grad", "reshape", "constant"}


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, (p.stdout + p.stderr).strip()


def check(kind, ptc, out):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = build(kind)
    perturb_all(model, gen)  # biases and norm weights off their 0 / 1 init
    w = hf_loss_wrapper(model.eval()).eval()
    ids = torch.randint(0, 256, (2, 16), generator=gen)
    want = w(ids, ids.clone()).item()
    path = os.path.join(out, f"{kind}.onnx")
    b, s = torch.export.Dim("batch"), torch.export.Dim("seq")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the exporter's progress lines
            torch.onnx.export(w, (ids, ids.clone()), path, opset_version=20,
                              input_names=["input_ids", "labels"], output_names=["loss"],
                              dynamic_shapes={"input_ids": {0: b, 1: s}, "labels": {0: b, 1: s}},
                              dynamo=True, optimize=False)
    except Exception as e:  # noqa: BLE001 (the exporter's own failure: nothing for ptc to run)
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        why = next((ln for ln in lines if "No ONNX function found" in ln),
                   lines[0] if lines else type(e).__name__)
        if op := re.search(r"op='([^']+)'", why):
            why = f"no ONNX function for {op.group(1)}"
        return want, None, "torch.onnx.export failed: " + why[:120], "", ""
    feeds = []
    for name in ("input_ids", "labels"):
        f = os.path.join(out, f"{kind}_{name}.pb")
        with open(f, "wb") as fh:
            fh.write(numpy_helper.from_array(ids.numpy(), name).SerializeToString())
        feeds += ["--input", f"{name}={f}"]
    dims = ["--dim", "batch=2", "--dim", "seq=16"]
    plan = os.path.join(out, f"{kind}.plan")
    rc, msg = run([ptc, "compile", path, *dims, "-o", plan])
    if rc != 0:
        return want, None, msg.splitlines()[-1][:160], "", ""
    rc, msg = run([ptc, "run", plan, *feeds, "--output-dir", os.path.join(out, kind)])
    if rc != 0:
        return want, None, msg.splitlines()[-1][:160], "", ""
    t = TensorProto()
    with open(os.path.join(out, kind, "output_0.pb"), "rb") as fh:
        t.ParseFromString(fh.read())
    got = float(numpy_helper.to_array(t))
    train = os.path.join(out, f"{kind}.train.plan")
    rc, msg = run([ptc, "compile", path, "--train", "--target", "cuda", "--precision", "bf16",
                   *dims, "-o", train])
    if rc != 0:
        return want, got, "", "training: " + msg.splitlines()[-1][:160], ""
    rc, dump = run([ptc, "dump", train])
    ops = {}
    in_main = False
    for line in dump.splitlines():
        if line.startswith("func @"):
            in_main = line.startswith("func @main(")  # the step (not @eval)
        if not in_main or " = " not in line or "(" not in line:
            continue
        op = line.split(" = ", 1)[1].split("(", 1)[0].strip()
        if op.isidentifier() and op not in EXPECTED:
            ops[op] = ops.get(op, 0) + 1
    left = ", ".join(f"{k} {v}" for k, v in sorted(ops.items())) or "none"
    return want, got, "", left, decode(model, kind, ptc, out)


def decode(model, kind, ptc, out):
    """Greedy bytes from the logits export, with the KV-cache decoder and the full window."""
    path = os.path.join(out, f"{kind}.logits.onnx")
    ids = torch.randint(0, 256, (1, 32))
    s = torch.export.Dim("seq")
    with contextlib.redirect_stdout(sys.stderr):
        torch.onnx.export(hf_logits_wrapper(model.eval()).eval(), (ids,), path, opset_version=20,
                          input_names=["input_ids"], output_names=["logits"],
                          dynamic_shapes={"input_ids": {1: s}}, dynamo=True, optimize=False)
    plan = os.path.join(out, f"{kind}.gen.plan")
    rc, msg = run([ptc, "compile", path, "--dim", "batch=1", "--dim", "seq=32", "-o", plan])
    if rc != 0:
        return "compile: " + msg.splitlines()[-1][:120]
    texts = []
    for extra in ([], ["--no-kv-cache"]):
        p = subprocess.run([ptc, "generate", plan, "--prompt", "The ", "--tokens", "24",
                            "--temperature", "0", *extra], capture_output=True)
        if p.returncode != 0:
            return "generate: " + p.stderr.decode(errors="replace").strip().splitlines()[-1][:120]
        err = p.stderr.decode(errors="replace")
        if not extra and "no KV cache" in err:  # the decoder declined: its reason
            return "no decoder: " + err.split("full window per token:", 1)[-1].strip()[:110]
        texts.append(p.stdout)
    return "same greedy text" if texts[0] == texts[1] else "texts differ"



def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ptc", default="build/ptc", help="the ptc binary")
    ap.add_argument("--only", nargs="+", choices=KINDS)
    ap.add_argument("--keep", help="write the exports and plans here (default: a temp dir)")
    a = ap.parse_args()
    out = a.keep or tempfile.mkdtemp(prefix="ptc-zoo-")
    os.makedirs(out, exist_ok=True)
    print(f"transformers {T.__version__}, torch {torch.__version__}; files in {out}",
          file=sys.stderr)
    print("| architecture | torch loss | ptc loss | rel. diff | left unfused in the bf16 "
          "training step | KV-cache decoding |")
    print("| --- | --- | --- | --- | --- | --- |")
    for kind in a.only or KINDS:
        want, got, err, left, dec = check(kind, a.ptc, out)
        if got is None:
            print(f"| {kind} | {want:.7f} | error: {err} | | | |")
            continue
        rel = abs(got - want) / abs(want)
        print(f"| {kind} | {want:.7f} | {got:.7f} | {rel:.1e} | {left} | {dec} |", flush=True)


if __name__ == "__main__":
    main()
