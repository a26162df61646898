#!/usr/bin/python3
"""Training-step bench (issue 3): ptc vs PyTorch CPU vs ONNX Runtime Training, in one run.

One training step = forward + backward + AdamW update of a GPT (vocab 8192, 4 layers, dim 256,
4 heads, tanh GELU, tied LM head, pre-norm) on a batch of 8 x 128 tokens, on the CPU with 2 threads.
`--family llama`: a Llama of the same size instead (RMSNorm, rotary embeddings, 2 KV heads for
the 4 query heads, SwiGLU MLP of 768, untied LM head; `ptc model llama`), with a second ptc row
`ptc-unfused` compiled with `--passes default,-match-rms-norm,-match-rotary` (the RMS norms and
rotary embeddings as the exported ops: what those two passes gain).

  ptc      `ptc model gpt2 ... --loss`, `ptc compile --train --optimizer adamw`, `ptc run
           --steps N --log-json F`: per-step time from the log (tokens_per_s is per step, compile
           excluded), peak RSS from /usr/bin/time -v, planned bytes (arena + state) from the log
           and `ptc run`'s summary.
  ptc-exec the executor alone on the same plan (bench/train_profile --profile 0, built by
           bench/train_profile_build.sh; skipped when not built): no corpus, no @eval.
  torch    the same architecture written in PyTorch (this file), torch.optim.AdamW,
           torch.set_num_threads(2); time per step, peak RSS (/usr/bin/time -v).
  ort-t    onnxruntime-training artifacts generated from the SAME ONNX forward graph ptc compiles
           (generate_artifacts, AdamW; the optional SoftmaxCrossEntropyLoss / LayerNormalization
           outputs ORT's gradient builders need are added first), onnxruntime.training.api Module/Optimizer, 2 intra-op
           threads; time per step, peak RSS. Runs in its own venv (--ortt-python, see
           bench/README.md); skipped with a note when that python has no onnxruntime.training.

Each peer runs in its own process, the peers are interleaved (rotating order) and repeated
(--rounds); every worker does --warmup untimed steps, then --steps timed ones, and reports the
median step time. The table shows the median over rounds (and the spread), plus uptime load
averages before and after, since the machine is shared.

Usage (from the repository root; torch lives in Debian's /usr/bin/python3):
  /usr/bin/python3 bench/train_bench.py --ptc build-trainbench/ptc \
      [--ortt-python /tmp/ortt-venv2/bin/python] [--rounds 3] [--steps 10] [--warmup 3]
"""

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

VOCAB, LAYERS, DIM, HEADS, SEQ, BATCH = 8192, 4, 256, 4, 128, 8
KV_HEADS, FFN, ROPE_THETA, RMS_EPS = 2, 768, 10000.0, 1e-5  # --family llama
LR, WD, BETA1, BETA2, EPS = 1e-3, 0.01, 0.9, 0.999, 1e-8


# ----------------------------------------------------------------------------------------------
# Workers (each runs in its own process; prints one JSON line prefixed with RESULT).


def worker_torch(args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(DIM)
            self.c_attn = nn.Linear(DIM, 3 * DIM)
            self.attn_proj = nn.Linear(DIM, DIM)
            self.ln_2 = nn.LayerNorm(DIM)
            self.c_fc = nn.Linear(DIM, 4 * DIM)
            self.mlp_proj = nn.Linear(4 * DIM, DIM)
            self.register_buffer("mask", torch.tril(torch.ones(SEQ, SEQ, dtype=torch.bool)))

        def forward(self, x):
            b, t, c = x.shape
            hs = c // HEADS
            q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
            q = q.view(b, t, HEADS, hs).transpose(1, 2)
            k = k.view(b, t, HEADS, hs).transpose(1, 2)
            v = v.view(b, t, HEADS, hs).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att.masked_fill(~self.mask[:t, :t], float("-inf"))
            y = F.softmax(att, dim=-1) @ v
            y = y.transpose(1, 2).contiguous().view(b, t, c)
            x = x + self.attn_proj(y)
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class Gpt(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(VOCAB, DIM)
            self.wpe = nn.Embedding(SEQ, DIM)
            self.h = nn.ModuleList([Block() for _ in range(LAYERS)])
            self.ln_f = nn.LayerNorm(DIM)

        def forward(self, idx, labels):
            t = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(t).unsqueeze(0))
            for block in self.h:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.t()  # tied LM head
            return F.cross_entropy(logits.view(-1, VOCAB), labels.view(-1))

    class LlamaBlock(nn.Module):  # models/llama.cc: RMSNorm, rotate-half rotary, GQA, SwiGLU
        def __init__(self):
            super().__init__()
            hs = DIM // HEADS
            self.input_layernorm = nn.Parameter(torch.ones(DIM))
            self.q_proj = nn.Linear(DIM, DIM, bias=False)
            self.k_proj = nn.Linear(DIM, KV_HEADS * hs, bias=False)
            self.v_proj = nn.Linear(DIM, KV_HEADS * hs, bias=False)
            self.o_proj = nn.Linear(DIM, DIM, bias=False)
            self.post_attention_layernorm = nn.Parameter(torch.ones(DIM))
            self.gate_proj = nn.Linear(DIM, FFN, bias=False)
            self.up_proj = nn.Linear(DIM, FFN, bias=False)
            self.down_proj = nn.Linear(FFN, DIM, bias=False)
            self.register_buffer("mask", torch.tril(torch.ones(SEQ, SEQ, dtype=torch.bool)))

        @staticmethod
        def rms(x, w):
            return w * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS))

        @staticmethod
        def rope(x, cos, sin):
            half = x.shape[-1] // 2
            x1, x2 = x[..., :half], x[..., half:]
            return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

        def forward(self, x, cos, sin):
            b, t, c = x.shape
            hs = c // HEADS
            h = self.rms(x, self.input_layernorm)
            q = self.q_proj(h).view(b, t, HEADS, hs).transpose(1, 2)
            k = self.k_proj(h).view(b, t, KV_HEADS, hs).transpose(1, 2)
            v = self.v_proj(h).view(b, t, KV_HEADS, hs).transpose(1, 2)
            q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            k = k.repeat_interleave(HEADS // KV_HEADS, dim=1)
            v = v.repeat_interleave(HEADS // KV_HEADS, dim=1)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att.masked_fill(~self.mask[:t, :t], float("-inf"))
            y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).contiguous().view(b, t, c)
            x = x + self.o_proj(y)
            h = self.rms(x, self.post_attention_layernorm)
            return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            hs = DIM // HEADS
            self.embed_tokens = nn.Embedding(VOCAB, DIM)
            self.layers = nn.ModuleList([LlamaBlock() for _ in range(LAYERS)])
            self.norm = nn.Parameter(torch.ones(DIM))
            self.lm_head = nn.Linear(DIM, VOCAB, bias=False)
            inv = ROPE_THETA ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
            ang = torch.arange(SEQ, dtype=torch.float64)[:, None] * inv[None, :]
            self.register_buffer("cos", ang.cos().float())
            self.register_buffer("sin", ang.sin().float())

        def forward(self, idx, labels):
            t = idx.shape[1]
            x = self.embed_tokens(idx)
            for block in self.layers:
                x = block(x, self.cos[:t], self.sin[:t])
            logits = self.lm_head(LlamaBlock.rms(x, self.norm))
            return F.cross_entropy(logits.view(-1, VOCAB), labels.view(-1))

    model = Llama() if args.family == "llama" else Gpt()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=EPS,
                            weight_decay=WD)
    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)
    labels = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)
    times, losses = [], []
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(idx, labels)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        losses.append(float(loss))
        if s >= args.warmup:
            times.append(dt)
    params = sum(p.numel() for p in model.parameters())
    print("RESULT " + json.dumps({"times": times, "losses": losses, "params": params,
                                  "torch": torch.__version__}), flush=True)


def worker_ortt_prepare(args):
    """Generates ORT training artifacts from the forward ONNX (loss already in the graph)."""
    import onnx
    from onnxruntime.training import artifacts

    model = onnx.load(args.model)  # loads the external .data weights too
    params = [init.name for init in model.graph.initializer]
    # ORT's gradient builders read optional outputs that exporter-style graphs (like
    # torch.onnx's) leave out: SoftmaxCrossEntropyLoss's log_prob and LayerNormalization's
    # mean / inv_std_dev. Adding them changes no value.
    extra = {"SoftmaxCrossEntropyLoss": ["_log_prob"],
             "LayerNormalization": ["_mean", "_inv_std_dev"]}
    for node in model.graph.node:
        if node.op_type in extra and len(node.output) == 1:
            node.output.extend(node.output[0] + suffix for suffix in extra[node.op_type])
    # The graph already ends in SoftmaxCrossEntropyLoss: no loss block is added (loss=None),
    # the training model's first output is the loss.
    artifacts.generate_artifacts(
        model, requires_grad=params, frozen_params=[], loss=None,
        optimizer=artifacts.OptimType.AdamW, artifact_directory=args.artifacts)
    print("RESULT " + json.dumps({"params": params, "files": sorted(os.listdir(args.artifacts))}),
          flush=True)


def worker_ortt(args):
    import numpy as np
    import onnxruntime
    from onnxruntime.training import api

    d = args.artifacts
    state = api.CheckpointState.load_checkpoint(os.path.join(d, "checkpoint"))
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    if args.no_spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        module = api.Module(os.path.join(d, "training_model.onnx"), state,
                            os.path.join(d, "eval_model.onnx"), device="cpu", session_options=so)
    except TypeError:  # older API without session_options
        module = api.Module(os.path.join(d, "training_model.onnx"), state,
                            os.path.join(d, "eval_model.onnx"), device="cpu")
    optimizer = api.Optimizer(os.path.join(d, "optimizer_model.onnx"), module)
    optimizer.set_learning_rate(LR)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, VOCAB, (BATCH, SEQ), dtype=np.int64)
    labels = rng.integers(0, VOCAB, (BATCH, SEQ), dtype=np.int64)
    module.train()
    times, losses = [], []
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        out = module(idx, labels)
        optimizer.step()
        module.lazy_reset_grad()
        dt = time.perf_counter() - t0
        loss = out[0] if isinstance(out, (list, tuple)) else out
        losses.append(float(np.asarray(loss)))
        if s >= args.warmup:
            times.append(dt)
    print("RESULT " + json.dumps({"times": times, "losses": losses,
                                  "ort": onnxruntime.__version__}), flush=True)


# ----------------------------------------------------------------------------------------------
# Driver


def uptime():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def run_timed(cmd, env=None, cwd=None):
    """Runs cmd under /usr/bin/time -v; returns (stdout, stderr, max_rss_bytes, wall_s)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env,
                       cwd=cwd)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    rss = int(m.group(1)) * 1024 if m else -1
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n"
                           f"{p.stderr[-3000:]}")
    return p.stdout, p.stderr, rss, wall


def parse_result(stdout):
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError("worker printed no RESULT line:\n" + stdout[-3000:])


def check(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout + p.stderr


def fmt_bytes(n):
    return f"{n / 2**20:.0f} MiB" if n >= 0 else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ptc", default="build/ptc", help="the ptc binary")
    ap.add_argument("--family", default="gpt2", choices=["gpt2", "llama"],
                    help="the model: the GPT above, or a Llama of the same size")
    ap.add_argument("--ptc-harness", default="",
                    help="bench/train_profile built by bench/train_profile_build.sh (default: "
                         "train_profile next to --ptc, when it exists): the executor alone")
    ap.add_argument("--ortt-python", default="/tmp/ortt-venv2/bin/python",
                    help="python with onnxruntime-training ('' to skip ORT Training)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per worker")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per worker")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-spin", action="store_true",
                    help="threads sleep instead of spin-waiting (OMP_WAIT_POLICY=passive, ORT "
                         "allow_spinning 0): the fairer setting on an oversubscribed machine")
    ap.add_argument("--workdir", default="", help="where models/plans go (default: a temp dir)")
    ap.add_argument("--json", default="", help="also write the raw results here")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="", help=argparse.SUPPRESS)
    ap.add_argument("--artifacts", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "torch":
        return worker_torch(args)
    if args.worker == "ortt-prepare":
        return worker_ortt_prepare(args)
    if args.worker == "ortt":
        return worker_ortt(args)

    work = args.workdir or tempfile.mkdtemp(prefix="ptc-train-bench-")
    os.makedirs(work, exist_ok=True)
    ptc = os.path.abspath(args.ptc)
    me = os.path.abspath(__file__)
    llama = args.family == "llama"
    model = os.path.join(work, f"{args.family}.onnx")
    plan = os.path.join(work, f"{args.family}.plan")
    plan_unfused = os.path.join(work, f"{args.family}-unfused.plan")
    load_before = uptime()
    print(f"load average (1/5/15 min) before: {load_before}; {os.cpu_count()} CPUs", flush=True)

    # ptc: model + compile (not timed as part of the step).
    model_cmd = [ptc, "model", args.family, "--set", f"vocab={VOCAB}", "--set",
                 f"layers={LAYERS}", "--dim", str(DIM), "--heads", str(HEADS), "--seq", str(SEQ),
                 "--loss", "-o", model]
    if llama:
        model_cmd += ["--set", f"kv_heads={KV_HEADS}", "--set", f"ffn={FFN}"]
    check(model_cmd)
    compile_cmd = [ptc, "compile", model, "-o", plan, "--train", "--dim", f"batch={BATCH}",
                   "--dim", f"seq={SEQ}", "--optimizer", "adamw", "--lr", str(LR),
                   "--weight-decay", str(WD), "--beta1", str(BETA1), "--beta2", str(BETA2),
                   "--eps", str(EPS)]
    t0 = time.perf_counter()
    check(compile_cmd)
    compile_s = time.perf_counter() - t0
    print(f"ptc compile: {compile_s:.1f} s", flush=True)
    if llama:
        check(compile_cmd[:4] + [plan_unfused] + compile_cmd[5:] +
              ["--passes", "default,-match-rms-norm,-match-rotary"])

    # ORT Training: artifacts from the same forward graph (not timed).
    ortt_note = ""
    artifacts_dir = os.path.join(work, "ortt")
    if args.ortt_python:
        if not os.path.exists(args.ortt_python):
            ortt_note = f"{args.ortt_python} not found"
        else:
            os.makedirs(artifacts_dir, exist_ok=True)
            p = subprocess.run([args.ortt_python, me, "--worker", "ortt-prepare", "--model", model,
                                "--artifacts", artifacts_dir], capture_output=True, text=True)
            if p.returncode != 0:
                ortt_note = "artifact generation failed: " + (p.stderr or p.stdout)[-800:]
    else:
        ortt_note = "skipped (--ortt-python '')"
    if ortt_note:
        print(f"ORT Training: {ortt_note}", flush=True)

    env1 = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if args.no_spin:
        env1["OMP_WAIT_POLICY"] = "passive"
    total = args.warmup + args.steps

    def run_ptc(which=plan):
        log = os.path.join(work, "ptc_log.jsonl")
        if os.path.exists(log):
            os.remove(log)
        out, err, rss, wall = run_timed([ptc, "run", which, "--steps", str(total), "--log-json",
                                         log], env=env1)
        steps = [json.loads(l) for l in open(log) if l.strip()]
        steps = [s for s in steps if "tokens_per_s" in s]
        times = [BATCH * SEQ / s["tokens_per_s"] for s in steps[args.warmup:]]
        text = (out + err).split("\tCommand being timed")[0]
        return {"times": times, "losses": [s["loss"] for s in steps], "rss": rss,
                "planned": steps[-1].get("peak_bytes", -1), "wall": wall,
                "summary": "\n".join(text.strip().splitlines()[-3:])}

    harness = args.ptc_harness or os.path.join(os.path.dirname(ptc), "train_profile")
    if not os.path.exists(harness):
        harness = ""

    def run_ptc_exec():
        out, _, rss, wall = run_timed([harness, plan, "--steps", str(args.steps), "--warmup",
                                       str(args.warmup), "--vocab", str(VOCAB), "--profile",
                                       "0"], env=env1)
        r = parse_result(out)
        r.update(rss=rss, wall=wall, losses=[float("nan")],
                 planned=r["arena_bytes"] + r["state_bytes"])
        return r

    def run_torch():
        out, _, rss, wall = run_timed([sys.executable, me, "--worker", "torch", "--steps",
                                       str(args.steps), "--warmup", str(args.warmup),
                                       "--threads", str(args.threads), "--family",
                                       args.family], env=env1)
        r = parse_result(out)
        r.update(rss=rss, wall=wall)
        return r

    def run_ortt():
        out, _, rss, wall = run_timed([args.ortt_python, me, "--worker", "ortt", "--artifacts",
                                       artifacts_dir, "--steps", str(args.steps), "--warmup",
                                       str(args.warmup), "--threads", str(args.threads)]
                                      + (["--no-spin"] if args.no_spin else []), env=env1)
        r = parse_result(out)
        r.update(rss=rss, wall=wall)
        return r

    peers = [("ptc", run_ptc), ("torch", run_torch)]
    if llama:
        peers.insert(1, ("ptc-unfused", lambda: run_ptc(plan_unfused)))
    if harness and not llama:  # the harness feeds GPT token ids / labels only
        peers.insert(1, ("ptc-exec", run_ptc_exec))
    if not ortt_note:
        peers.append(("ort-t", run_ortt))
    results = {name: [] for name, _ in peers}
    for rnd in range(args.rounds):
        order = peers[rnd % len(peers):] + peers[:rnd % len(peers)]
        for name, fn in order:
            try:
                r = fn()
            except RuntimeError as e:
                print(f"round {rnd + 1} {name}: FAILED {e}", flush=True)
                if name == "ort-t":
                    ortt_note = f"run failed: {str(e)[-500:]}"
                continue
            r["median"] = statistics.median(r["times"])
            results[name].append(r)
            print(f"round {rnd + 1} {name:6s}: median step {r['median'] * 1e3:8.1f} ms, "
                  f"peak RSS {fmt_bytes(r['rss'])}, load {uptime()}", flush=True)
    load_after = uptime()

    def summary(name):
        rs = results.get(name) or []
        if not rs:
            return None
        meds = [r["median"] for r in rs]
        return {"step_s": statistics.median(meds), "min_s": min(meds), "max_s": max(meds),
                "rss": max(r["rss"] for r in rs), "planned": rs[0].get("planned", -1),
                "first_loss": rs[0]["losses"][0]}

    names = ("ptc", "ptc-unfused", "ptc-exec", "torch", "ort-t")
    s = {name: summary(name) for name in names}
    print()
    what = (f"Llama ({KV_HEADS} KV heads, SwiGLU {FFN}) vocab" if llama else "GPT vocab")
    print(f"{what} {VOCAB}, {LAYERS} layers, dim {DIM}, {HEADS} heads, batch {BATCH} x {SEQ}; "
          f"AdamW; {args.threads} threads; {args.rounds} rounds x {args.steps} timed steps "
          f"(+{args.warmup} warmup){', --no-spin' if args.no_spin else ''}")
    print(f"load average before {load_before}, after {load_after} (shared machine)")
    print()
    print("| peer | step (median of rounds) | range | tokens/s | peak RSS | step-1 loss |")
    print("|---|---|---|---|---|---|")
    labels = {"ptc": "ptc (`ptc run`)", "ptc-unfused": "ptc, no match-rms-norm / match-rotary",
              "ptc-exec": "ptc (executor only)",
              "torch": "PyTorch CPU", "ort-t": "ORT Training"}
    for name in names:
        v = s[name]
        if v is None and name in ("ptc-exec", "ptc-unfused"):
            continue
        if v is None:
            note = ortt_note if name == "ort-t" else "failed"
            print(f"| {labels[name]} | n/a ({note[:120]}) | | | | |")
            continue
        print(f"| {labels[name]} | {v['step_s'] * 1e3:.0f} ms | {v['min_s'] * 1e3:.0f}-"
              f"{v['max_s'] * 1e3:.0f} ms | {BATCH * SEQ / v['step_s']:.0f} | "
              f"{fmt_bytes(v['rss'])} | "
              f"{'n/a' if math.isnan(v['first_loss']) else format(v['first_loss'], '.3f')} |")
    if s["ptc"]:
        print(f"\nptc planned bytes (`ptc run`: arena + weights + optimizer state): "
              f"{fmt_bytes(s['ptc']['planned'])}")
    if s["ptc-exec"]:
        print(f"ptc executor: arena + weights/optimizer state {fmt_bytes(s['ptc-exec']['planned'])}")
    print()
    print("| ratio | time | target | peak RSS | target |")
    print("|---|---|---|---|---|")
    for mine in ("ptc", "ptc-unfused", "ptc-exec"):
        for name, ttarget in (("torch", 0.6), ("ort-t", 1.0)):
            if s[mine] and s[name]:
                tr = s[mine]["step_s"] / s[name]["step_s"]
                mr = s[mine]["rss"] / s[name]["rss"]
                print(f"| {labels[mine]} / {labels[name]} | {tr:.2f}x | <= {ttarget} "
                      f"{'met' if tr <= ttarget else 'MISSED'} | {mr:.2f}x | <= 1.0 "
                      f"{'met' if mr <= 1.0 else 'MISSED'} |")
            elif s[mine]:
                print(f"| {labels[mine]} / {labels[name]} | n/a | | n/a | |")
    if results["ptc"]:
        print("\n`ptc run` (last round):\n" + results["ptc"][-1]["summary"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": s, "results": results, "load_before": load_before,
                       "load_after": load_after, "ortt_note": ortt_note}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
