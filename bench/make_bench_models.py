#!/usr/bin/python3
"""Exports the benchmark GPT models from PyTorch to bench/models/ (git-ignored, regenerated).

  /usr/bin/python3 bench/make_bench_models.py [--variant gpt_bench|gpt2_small] [--opset 17]

For each variant it writes, under bench/models/:
  <variant>_opset<N>.onnx   the model (idx: i64[batch, seq] -> logits: f32[batch, seq, vocab])
  <variant>_opset<N>.json   sidecar: vocab, dims to bind, architecture (read by the C++ bench)
  <variant>.pt              the PyTorch state_dict, so that compare_inference.py runs PyTorch on
                            exactly the weights of the ONNX file

The architecture is the GPT of tests/e2e/make_references.py (nanoGPT layout, hand-written causal
attention, exact GELU, tied LM head), exported with do_constant_folding=False like the tests.
"""

import argparse
import importlib.util
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS_DIR = os.path.join(HERE, "models")

VARIANTS = {
    # The default bench model: GPT-2-like at a size a 2-core CI machine runs in milliseconds.
    "gpt_bench": dict(vocab=8192, n_layer=4, dim=256, n_head=4, block_size=128),
    # Optional: GPT-2 small shapes (124M parameters, ~500 MB ONNX).
    "gpt2_small": dict(vocab=50257, n_layer=12, dim=768, n_head=12, block_size=1024),
}
BATCH, SEQ = 8, 128


def load_reference_module():
    path = os.path.join(ROOT, "tests", "e2e", "make_references.py")
    spec = importlib.util.spec_from_file_location("make_references", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_model(variant, seed=0):
    refs = load_reference_module()
    cfg = VARIANTS[variant]
    torch.manual_seed(seed)
    model = refs.Gpt(**cfg)
    with torch.no_grad():  # GPT-2 initialization scale
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                p.normal_(0.0, 0.02)
    return model.eval(), cfg


def paths(variant, opset):
    stem = os.path.join(MODELS_DIR, f"{variant}_opset{opset}")
    return stem + ".onnx", stem + ".json", os.path.join(MODELS_DIR, f"{variant}.pt")


def export(variant, opset, force=False):
    onnx_path, json_path, pt_path = paths(variant, opset)
    if not force and all(os.path.exists(p) for p in (onnx_path, json_path, pt_path)):
        print(f"{onnx_path}: exists (use --force to regenerate)")
        return onnx_path
    os.makedirs(MODELS_DIR, exist_ok=True)
    model, cfg = build_model(variant)
    idx = torch.randint(0, cfg["vocab"], (BATCH, SEQ), generator=torch.Generator().manual_seed(1))
    torch.onnx.export(
        model, (idx,), onnx_path, opset_version=opset, do_constant_folding=False,
        input_names=["idx"], output_names=["logits"],
        dynamic_axes={"idx": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}})
    torch.save(model.state_dict(), pt_path)
    with open(json_path, "w") as f:
        json.dump({"variant": variant, "opset": opset, "vocab": cfg["vocab"],
                   "dims": {"batch": BATCH, "seq": SEQ}, "config": cfg,
                   "parameters": sum(p.numel() for p in model.parameters()),
                   "state_dict": os.path.basename(pt_path)}, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {onnx_path} ({os.path.getsize(onnx_path) / 2**20:.1f} MiB)")
    return onnx_path


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="gpt_bench")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    export(args.variant, args.opset, args.force)


if __name__ == "__main__":
    sys.exit(main())
