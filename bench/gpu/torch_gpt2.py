#!/usr/bin/env python3
"""GPT-2 small on one GPU with PyTorch: the peer of bench/gpu/gpt2_bench.sh (device machine).

  python3 bench/gpu/torch_gpt2.py train --batch 16 --seq 1024 --steps 12 [--compile]
  python3 bench/gpu/torch_gpt2.py infer --batch 1 --seq 1024 [--compile]
  python3 bench/gpu/torch_gpt2.py generate --prompt-len 16 --tokens 256
  python3 bench/gpu/torch_gpt2.py matmul      # the bf16 matmul rate MFU is measured against
  python3 bench/gpu/torch_gpt2.py export --out peer-loss.onnx   # this model, with its loss,
      # through torch.onnx's dynamo exporter (opset 20, optimize=False), for ptc to train

The architecture of ptc's `ptc model gpt2 --preset small` (nanoGPT layout: pre-norm, causal
attention through F.scaled_dot_product_attention (flash), tanh GELU (GPT-2's gelu_new, ptc's
default), tied LM head, vocab 50257, 12 layers, dim 768, 12 heads), bf16 autocast with fp32
master weights, AdamW (fused=True, lr 3e-4, weight decay 0.1). Prints one JSON line: tokens/s
(median step after warmup) and torch.cuda.max_memory_allocated.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    def forward(self, x, cache=None):
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.h, d // self.h).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            if cache[0] is not None:
                k = torch.cat([cache[0], k], dim=2)
                v = torch.cat([cache[1], v], dim=2)
            cache[0], cache[1] = k, v
        if hasattr(F, "scaled_dot_product_attention"):
            # Without a cache always causal (the same for t == 1; a constant for torch.export).
            causal = True if cache is None else t > 1
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        else:  # torch < 2.0 (the script's CPU dry run on the build machine)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            if t > 1:
                tk = k.shape[2]
                mask = torch.ones(t, tk, dtype=torch.bool, device=x.device).tril(tk - t)
                att = att.masked_fill(~mask, float("-inf"))
            y = att.softmax(-1) @ v
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab=50257, layers=12, d=768, h=12, seq=1024):  # noqa: PLR0913
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(Block(d, h) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, labels=None, caches=None, pos0=0):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(pos0, pos0 + t, device=idx.device))
        for i, blk in enumerate(self.blocks):
            x = blk(x, None if caches is None else caches[i])
        logits = self.ln_f(x) @ self.wte.weight.t()
        if labels is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, warmup, steps):
    times = []
    for i in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "infer", "generate", "matmul", "export"])
    ap.add_argument("--out", default="peer-loss.onnx", help="export: the ONNX file")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a dry run of the script")
    ap.add_argument("--tiny", action="store_true", help="2 layers, dim 64 (dry runs)")
    a = ap.parse_args()
    torch.manual_seed(0)
    dev = a.device
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    if a.mode == "matmul":  # 8192^3 bf16 on random data: 3 warm-ups, median of 10
        n = 8192 if dev == "cuda" else 512
        x = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        y = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        s = timed(lambda: x @ y, 3, 10)
        print(json.dumps({"mode": "matmul", "n": n, "tflops": 2 * n**3 / s / 1e12}), flush=True)
        return
    dims = dict(layers=2, d=64, h=4) if a.tiny else {}
    if a.mode == "export":  # on the CPU, f32: ptc's --precision bf16 makes the casts
        model = GPT(seq=max(a.seq, 1024), **dims)
        x = torch.randint(0, 50257, (2, 64))
        names = {0: "batch", 1: "seq"}
        t0 = time.perf_counter()
        torch.onnx.export(model, (x, x.clone()), a.out, input_names=["idx", "labels"],
                          output_names=["loss"], dynamic_axes={"idx": names, "labels": names},
                          dynamo=True, optimize=False, opset_version=20)
        print(json.dumps({"mode": "export", "out": a.out, "torch": torch.__version__,
                          "seconds": time.perf_counter() - t0}), flush=True)
        return
    model = GPT(seq=max(a.seq, 1024), **dims).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    fwd = torch.compile(model) if a.compile else model
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = {"mode": a.mode, "compile": a.compile, "batch": a.batch, "seq": a.seq,
           "params": n_params, "torch": torch.__version__,
           "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}
    amp = dict(device_type=dev, dtype=torch.bfloat16)
    if a.mode == "train":
        extra = {"fused": True} if dev == "cuda" else {}
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, **extra)
        x = torch.randint(0, 50257, (a.batch, a.seq), device=dev)
        y = torch.randint(0, 50257, (a.batch, a.seq), device=dev)
        losses = []

        def step():
            with torch.autocast(**amp):
                loss = fwd(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss))
        s = timed(step, a.warmup, a.steps)
        out.update(step_ms=s * 1e3, tokens_per_s=a.batch * a.seq / s, first_loss=losses[0])
        # 6N per token for the matmuls with weights + attention (causal: half of 12*L*T*d).
        layers, d = (2, 64) if a.tiny else (12, 768)
        flops = 6 * n_params * a.batch * a.seq + 6 * layers * a.batch * a.seq * a.seq * d
        out["model_tflops"] = flops / s / 1e12
    elif a.mode == "infer":
        x = torch.randint(0, 50257, (a.batch, a.seq), device=dev)
        with torch.no_grad(), torch.autocast(**amp):
            s = timed(lambda: fwd(x), a.warmup, a.steps)
        out.update(forward_ms=s * 1e3, tokens_per_s=a.batch * a.seq / s)
    else:
        prompt = torch.randint(0, 50257, (1, a.prompt_len), device=dev)

        def gen():
            caches = [[None, None] for _ in model.blocks]
            with torch.no_grad(), torch.autocast(**amp):
                logits = model(prompt, caches=caches)
                tok = logits[:, -1:].argmax(-1)
                for i in range(a.tokens):
                    logits = model(tok, caches=caches, pos0=a.prompt_len + i)
                    tok = logits[:, -1:].argmax(-1)
        s = timed(gen, 1, 3)
        out.update(generate_s=s, tokens_per_s=a.tokens / s)
    out["peak_mem_bytes"] = torch.cuda.max_memory_allocated() if dev == "cuda" else None
    out["peak_reserved_bytes"] = torch.cuda.max_memory_reserved() if dev == "cuda" else None
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
