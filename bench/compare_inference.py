#!/usr/bin/python3
"""GPT inference: ptc vs ONNX Runtime vs PyTorch (CPU), same model, same weights, same run.

  /usr/bin/python3 bench/compare_inference.py [--ptc-bench build/bench/ptc_gpt_inference_bench]
      [--variant gpt_bench] [--threads 2] [--repeats 20] [--warmup 3] [--json-out FILE]

Every runtime gets the same ONNX file (or, for PyTorch, the state_dict it was exported from),
batch 8 x seq 128 token ids and the same thread count, and is timed as the median of --repeats
single forward passes (in --rounds interleaved rounds, each after --warmup passes):
  ptc          the Google Benchmark binary ptc_gpt_inference_bench (--iterations=1
               --benchmark_repetitions=N, --benchmark_format=json), OMP/OpenBLAS threads = N
  onnxruntime  InferenceSession, CPU provider, intra-op threads = N, graph optimizations ALL
  pytorch      eager, torch.set_num_threads(N), torch.no_grad()
Prints a table with the ratios ptc/ORT and ptc/PyTorch (of times: < 1 means ptc is faster).
Timings are never asserted; quote ratios, not absolute times, from shared machines.

Needs Debian's torch + onnx (/usr/bin/python3) and onnxruntime from pip:
  /usr/bin/python3 -m pip install --user --break-system-packages --no-deps onnxruntime flatbuffers
"""

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# --no-spin must reach libgomp before torch loads it (it reads OMP_WAIT_POLICY once, at load).
if "--no-spin" in sys.argv:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import make_bench_models  # noqa: E402


def find_ptc_bench():
    candidates = glob.glob(os.path.join(ROOT, "build*", "bench", "ptc_gpt_inference_bench"))
    candidates = [c for c in candidates if os.access(c, os.X_OK)]
    return max(candidates, key=os.path.getmtime) if candidates else None


def time_calls(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def run_ptc(bench, model_path, args, repeats):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads))
    cmd = [bench, f"--model={model_path}", f"--passes={args.passes}", "--iterations=1",
           f"--benchmark_repetitions={repeats}",
           f"--benchmark_min_warmup_time={args.ptc_warmup_seconds}",
           "--benchmark_format=json"]
    if args.verbose:
        print("ptc:", " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ptc bench failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    report = json.loads(proc.stdout)
    runs = [b for b in report["benchmarks"] if b.get("run_type") == "iteration"]
    errors = [b["error_message"] for b in runs if b.get("error_occurred")]
    if errors:
        raise RuntimeError(f"ptc bench reported an error: {errors[0]}")
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    samples = [b["real_time"] * scale[b["time_unit"]] / b["iterations"] for b in runs]
    extra = {k: runs[0][k] for k in ("arena_MiB", "compile_s") if k in runs[0]}
    return samples, extra


def make_ort(model_path, idx, args):
    """Returns (run_once, logits, version)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if args.no_spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    feeds = {"idx": idx}
    out = sess.run(None, feeds)[0]
    return (lambda: sess.run(None, feeds)), out, ort.__version__


def make_torch(variant, pt_path, idx, args):
    """Returns (run_once, logits)."""
    torch.set_num_threads(args.threads)
    model, _ = make_bench_models.build_model(variant)
    model.load_state_dict(torch.load(pt_path))
    model.eval()
    x = torch.from_numpy(idx)
    with torch.no_grad():
        out = model(x).numpy()

    def run_once():
        with torch.no_grad():
            model(x)
    return run_once, out


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ptc-bench", default=None,
                        help="ptc_gpt_inference_bench binary (default: newest build*/bench/)")
    parser.add_argument("--variant", default="gpt_bench", choices=sorted(make_bench_models.VARIANTS))
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--passes", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before each round")
    parser.add_argument("--rounds", type=int, default=4,
                        help="interleave the runtimes in this many rounds of repeats/rounds runs")
    parser.add_argument("--no-spin", action="store_true",
                        help="idle threads sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE for "
                             "ptc and PyTorch, allow_spinning=0 for ORT): fairer on an "
                             "oversubscribed machine, where spinning threads steal each other's "
                             "cores")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--ptc-warmup-seconds", type=float, default=0.5)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    model_path = make_bench_models.export(args.variant, args.opset)
    _, json_path, pt_path = make_bench_models.paths(args.variant, args.opset)
    with open(json_path) as f:
        meta = json.load(f)
    batch, seq = meta["dims"]["batch"], meta["dims"]["seq"]
    tokens = batch * seq
    idx = np.random.default_rng(1234).integers(0, meta["vocab"], (batch, seq), dtype=np.int64)

    results = {}
    notes = []
    runners = {}  # name -> function(repeats) -> samples (seconds)
    bench = args.ptc_bench or find_ptc_bench()
    if bench is None:
        notes.append("ptc: no ptc_gpt_inference_bench found (build the bench target or pass "
                     "--ptc-bench)")
    else:
        def ptc_runner(repeats):
            samples, extra = run_ptc(bench, model_path, args, repeats)
            results.setdefault("ptc", {"samples": []}).update(extra)
            return samples
        runners["ptc"] = ptc_runner
        results["ptc"] = {"samples": []}
    ort_out = None
    try:
        ort_once, ort_out, ort_version = make_ort(model_path, idx, args)
        results["onnxruntime"] = dict(samples=[], version=ort_version)
        runners["onnxruntime"] = lambda n: time_calls(ort_once, n, args.warmup)
    except ImportError:
        notes.append("onnxruntime: not installed")
    torch_once, torch_out = make_torch(args.variant, pt_path, idx, args)
    results["pytorch"] = dict(samples=[], version=torch.__version__)
    runners["pytorch"] = lambda n: time_calls(torch_once, n, args.warmup)
    if ort_out is not None:
        err = float(np.max(np.abs(ort_out - torch_out)))
        notes.append(f"ORT vs PyTorch logits: max abs diff {err:.2e} (same weights check)")

    # Interleaved rounds, so that load bursts on a shared machine hit every runtime alike.
    load_before = os.getloadavg()[0]
    per_round = max(1, args.repeats // args.rounds)
    for _ in range(args.rounds):
        for name, runner in list(runners.items()):
            try:
                results.setdefault(name, {"samples": []})["samples"] += runner(per_round)
            except RuntimeError as e:
                notes.append(f"{name}: {e}")
                del runners[name]
                results.pop(name, None)
    if args.no_spin:
        notes.append("--no-spin: OMP_WAIT_POLICY=PASSIVE, ORT allow_spinning=0")
    notes.append(f"load average (1 min) before/after: {load_before:.1f} / "
                 f"{os.getloadavg()[0]:.1f}")

    print(f"\nGPT inference, {args.variant} ({meta['parameters'] / 1e6:.1f}M params, "
          f"{meta['config']}), batch {batch} x seq {seq}, {args.threads} threads, "
          f"median of {per_round * args.rounds} after warmup, {args.rounds} interleaved rounds")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
    ptc_median = statistics.median(results["ptc"]["samples"]) if "ptc" in results else None
    header = f"{'runtime':<12} {'median ms':>10} {'min ms':>9} {'tokens/s':>10} {'ptc/runtime':>12}"
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        med = statistics.median(r["samples"])
        r["median_s"] = med
        r["tokens_per_s"] = tokens / med
        ratio = f"{ptc_median / med:.2f}" if ptc_median else "n/a"
        r["ptc_over_runtime"] = ptc_median / med if ptc_median else None
        print(f"{name:<12} {med * 1e3:>10.2f} {min(r['samples']) * 1e3:>9.2f} "
              f"{tokens / med:>10.0f} {ratio:>12}")
    if ptc_median:
        for peer in ("onnxruntime", "pytorch"):
            if peer in results:
                print(f"ptc/{peer} time ratio: {results[peer]['ptc_over_runtime']:.2f} "
                      f"(< 1: ptc faster)")
        if "arena_MiB" in results["ptc"]:
            print(f"ptc arena: {results['ptc']['arena_MiB']:.1f} MiB, "
                  f"compile {results['ptc'].get('compile_s', 0):.2f} s")
    for note in notes:
        print("note:", note)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(dict(variant=args.variant, batch=batch, seq=seq, threads=args.threads,
                           repeats=args.repeats, results=results, notes=notes), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
