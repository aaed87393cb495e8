#!/usr/bin/python3
"""Runs `vwlmm bench --json` and bench/reference/torch_peer.py --json alternately, round after round, and prints each
metric's median over the rounds (allocations: the largest), the ratio ours/torch and whether the issue's target is
met; which side runs first alternates by round. Plain Python, no deps.
Each round also runs ours with --weights bf16 (linear weights stored in bf16, computed in f32; inference only) and
prints its forward and decode rows against the same fp32 PyTorch run, labelled as such.

usage: run_side_by_side.py --cli path/to/vwlmm.dll [--rounds 5] [--repeats 3] [--out results.jsonl]
                           [--device cpu|cuda] [--python /usr/bin/python3] [shape options]
Shape options (--threads --batch --image-tokens --text-tokens --width --decode-tokens) go to both programs.
--device cuda runs `vwlmm bench --device cuda --model-bench` against `torch_peer.py --device cuda` (both at the GPU's
fp32 peak from our peak table); the issue's targets are the CPU's, so the table then shows no target column.
--python names the interpreter that has torch (the gpu-bundle's machine: python3).
Exit status 1 when the two models disagree on parameter count or FLOPs per step (they would not be the same model).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "reference", "torch_peer.py")
SHAPE_OPTIONS = ["threads", "batch", "image-tokens", "text-tokens", "width", "decode-tokens"]

# (metric, unit, target as text, check(ours, torch, ours_json) -> bool or None when there is no target)
METRICS = [
    ("train_step_ms", "ms", "<= 0.5x torch", lambda o, t, _: o <= 0.5 * t),
    ("percent_of_peak", "%", ">= 60% of peak", lambda o, t, _: o >= 60),
    ("gflops", "GFLOP/s", "", None),
    ("forward_ms", "ms", "<= 0.33x torch", lambda o, t, _: o <= 0.33 * t),
    ("prefill_ms", "ms", "", None),
    ("decode_tokens_per_s", "tok/s", ">= 10x torch", lambda o, t, _: o >= 10 * t),
    ("peak_rss_mb", "MiB", "<= 1.5x model memory", lambda o, t, r: o <= 1.5 * r["model_memory_mb"]),
    ("startup_rss_mb", "MiB", "", None),
    ("allocs_per_step", "B", "0", lambda o, t, _: o == 0),
]
# Ours with bf16 weight storage against PyTorch in fp32: not the same arithmetic, so shown apart from the targets.
BF16_METRICS = [("forward_ms", "ms"), ("prefill_ms", "ms"), ("decode_tokens_per_s", "tok/s"), ("peak_rss_mb", "MiB")]


def run_json(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"run_side_by_side: {' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def alternate(cli, rounds, repeats, shape, out=None, verbose=False, with_bf16=True, device="cpu", python="/usr/bin/python3"):
    """Runs ours, the peer and (with_bf16) ours with bf16 weights with the same shape options, one after the other, for
    the given rounds; returns the three lists of JSON results, each appended to OUT (one line per run) when given."""
    on_device = ["--device", device] if device == "cpu" else ["--device", device, "--model-bench"]
    ours_cmd = (["dotnet", cli] if cli.endswith(".dll") else [cli]) + ["bench", "--json", "--repeats", str(repeats)] + on_device + shape
    peer_cmd = [python, PEER, "--json", "--repeats", str(repeats), "--device", device] + shape
    ours, torch, bf16 = [], [], []

    def run_peer():
        # The same peak for both: ours measured this machine's FMA rate (CpuPeak) in its latest run, or read the GPU's
        # from its peak table (none for a GPU the table lacks).
        peak = ours[-1].get("peak_gflops")
        torch.append(run_json(peer_cmd + (["--peak-gflops", str(peak)] if peak is not None else [])))

    for i in range(rounds):
        # Who goes first alternates, so that neither side always meets the machine as the other left it.
        if i % 2 == 0:
            ours.append(run_json(ours_cmd))
            run_peer()
        else:
            run_peer()
            ours.append(run_json(ours_cmd))
        if with_bf16:
            bf16.append(run_json(ours_cmd + ["--weights", "bf16"]))
        if verbose:
            print(f"round {i + 1}/{rounds}: ours {ours[-1]['train_step_ms']:.1f} ms/step, "
                  f"torch {torch[-1]['train_step_ms']:.1f} ms/step", file=sys.stderr)
        if out:
            with open(out, "a") as fh:
                fh.write("".join(json.dumps(r[-1]) + "\n" for r in (ours, torch, bf16) if r))
    return ours, torch, bf16


def median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    # Allocations are a claim about every step: a round that allocated must not hide behind the others' median.
    return (max if key == "allocs_per_step" else statistics.median)(vals) if vals else None


def fmt(x):
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", required=True, help="vwlmm.dll (run with dotnet) or a vwlmm executable")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", help="append every run's JSON to this file (one line each)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--python", default="/usr/bin/python3", help="the interpreter that runs torch_peer.py")
    for name in SHAPE_OPTIONS:
        ap.add_argument("--" + name, type=int)
    a = ap.parse_args()
    shape = []
    for name in SHAPE_OPTIONS:
        value = getattr(a, name.replace("-", "_"))
        if value is not None:
            shape += ["--" + name, str(value)]
    ours, torch, bf16 = alternate(a.cli, a.rounds, a.repeats, shape, a.out, verbose=True, device=a.device, python=a.python)

    o0, t0 = ours[0], torch[0]
    print(f"model: {o0['params']:,} parameters (torch {t0['params']:,}); {o0['train_gflop_per_step']:.3f} GFLOP per "
          f"train step (torch {t0['train_gflop_per_step']:.3f}); batch {o0['batch']}, {o0['image_tokens']} image + "
          f"{o0['text_tokens']} text tokens, width {o0['width']}, {o0['threads']} threads; {t0['engine']}; "
          f"{o0.get('device', 'cpu')}; fp32 peak {fmt(median(ours, 'peak_gflops'))} GFLOP/s; our GEMM {o0.get('cpu_gemm', '-')}; "
          f"medians of {a.rounds} alternating rounds x {a.repeats} repeats; load {os.getloadavg()[0]:.2f}")
    mismatch = o0["params"] != t0["params"] or abs(o0["train_gflop_per_step"] - t0["train_gflop_per_step"]) > 1e-6
    ours_mm = {"model_memory_mb": median(ours, "model_memory_mb")}
    print(f"{'metric':22} {'unit':8} {'ours':>9} {'torch':>9} {'ours/torch':>10}  {'target':22} met")
    for key, unit, target, check in METRICS:
        o, t = median(ours, key), median(torch, key)
        ratio = o / t if o is not None and t else None
        met = "" if check is None or o is None or a.device != "cpu" else ("yes" if check(o, t, ours_mm) else "NO")
        print(f"{key:22} {unit:8} {fmt(o):>9} {fmt(t):>9} {fmt(ratio):>10}  {target if a.device == 'cpu' else '':22} {met}")
    print(f"ours with bf16 linear weights (inference only) against the same fp32 torch runs:")
    for key, unit in BF16_METRICS:
        o, t = median(bf16, key), median(torch, key)
        print(f"{key:22} {unit:8} {fmt(o):>9} {fmt(t):>9} {fmt(o / t if o is not None and t else None):>10}")
    print(f"ours: model memory (params+grads+moments+activations) {fmt(ours_mm['model_memory_mb'])} MiB; "
          f"{fmt(median(ours, 'gen0_gcs_per_step'))} gen0 GCs per step")
    for name, runs in (("fp32", ours), ("bf16", bf16)):
        if runs:
            print(f"ours, decode with {name} weights: {fmt(median(runs, 'decode_bytes_per_token') / 1e6)} MB a token at "
                  f"{fmt(median(runs, 'decode_gb_per_s'))} GB/s, {fmt(median(runs, 'percent_of_bandwidth'))}% of the "
                  f"{fmt(median(runs, 'memory_gb_per_s'))} GB/s measured beside it")
    if mismatch:
        sys.exit("run_side_by_side: the two models differ in parameter count or FLOPs per step")


if __name__ == "__main__":
    main()
