#!/usr/bin/python3
"""The scaling record of docs/BENCHMARKS.md: bench-5m varied along one axis at a time (batch, image tokens, LLM width),
ours and the PyTorch peer alternating round after round as in run_side_by_side.py, one Markdown row per shape.

usage: scaling.py --cli path/to/vwlmm.dll [--rounds 3] [--repeats 2] [--rows batch,image-tokens,width] [--out runs.jsonl]
Each row reports medians over the rounds; "model" is ours params + grads + AdamW moments + kept activations.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_side_by_side import alternate, median  # noqa: E402

# Each axis's values; bench-5m's own shape (batch 8, 64 image tokens, width 256) is one row of every axis, measured once.
AXES = {"batch": [1, 4, 8, 16], "image-tokens": [64, 144, 256, 576], "width": [256, 512]}
DEFAULTS = {"batch": 8, "image-tokens": 64, "width": 256}


def measure(a, axis, value):
    """Alternating rounds at one shape: (ours, torch, load averages seen after each round)."""
    ours, torch, loads = [], [], []
    for _ in range(a.rounds):
        o, t, _ = alternate(a.cli, 1, a.repeats, [f"--{axis}", str(value)], a.out, with_bf16=False)
        ours += o
        torch += t
        loads.append(os.getloadavg()[0])
    return ours, torch, loads


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rows", default=",".join(AXES))
    ap.add_argument("--out")
    a = ap.parse_args()
    unknown = [axis for axis in a.rows.split(",") if axis not in AXES]
    if unknown:
        sys.exit(f"scaling: unknown row axis '{unknown[0]}' (known: {', '.join(AXES)})")
    print("| row | params | GFLOP/step | ours ms | torch ms | ours/torch | ours % of peak | fwd ms ours / torch "
          "| decode tok/s ours / torch | RSS MiB ours / model / torch | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    default = None
    for axis in a.rows.split(","):
        for value in AXES[axis]:
            if value == DEFAULTS[axis]:
                default = default or measure(a, axis, value)
                ours, torch, loads = default
            else:
                ours, torch, loads = measure(a, axis, value)
            o, t = median(ours, "train_step_ms"), median(torch, "train_step_ms")
            print(f"| {axis} {value} | {ours[0]['params'] / 1e6:.2f} M | {ours[0]['train_gflop_per_step']:.1f} "
                  f"| {o:.0f} | {t:.0f} | {o / t:.2f} | {median(ours, 'percent_of_peak'):.1f}% "
                  f"| {median(ours, 'forward_ms'):.1f} / {median(torch, 'forward_ms'):.1f} "
                  f"| {median(ours, 'decode_tokens_per_s'):.0f} / {median(torch, 'decode_tokens_per_s'):.0f} "
                  f"| {median(ours, 'peak_rss_mb'):.0f} / {median(ours, 'model_memory_mb'):.0f} "
                  f"/ {median(torch, 'peak_rss_mb'):.0f} | {min(loads):.1f}–{max(loads):.1f} |", flush=True)


if __name__ == "__main__":
    main()
