#!/usr/bin/python3
"""The scaling record of docs/BENCHMARKS.md: bench-5m varied along one axis at a time (batch, image tokens, LLM width),
ours and the PyTorch peer alternating round after round as in run_side_by_side.py, one Markdown row per shape.

usage: scaling.py --cli path/to/vwlmm.dll [--rounds 3] [--repeats 2] [--rows batch,image-tokens,width] [--out runs.jsonl]
Each row reports medians over the rounds; "model" is ours params + grads + AdamW moments + kept activations.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_side_by_side import PEER, median, run_json  # noqa: E402

DEFAULTS = {"batch": 8, "image-tokens": 64, "width": 256}  # bench-5m: the rows share this shape, measured once
AXES = {
    "batch": ("batch", [1, 4, 8, 16]),
    "image-tokens": ("image-tokens", [64, 144, 256, 576]),
    "width": ("width", [256, 512]),
}


def measure(cli, rounds, repeats, option, value, out):
    shape = [f"--{option}", str(value)]
    ours_cmd = (["dotnet", cli] if cli.endswith(".dll") else [cli]) + ["bench", "--json", "--repeats", str(repeats)] + shape
    peer_cmd = ["/usr/bin/python3", PEER, "--json", "--repeats", str(repeats)] + shape
    ours, torch, loads = [], [], []
    for _ in range(rounds):
        ours.append(run_json(ours_cmd))
        torch.append(run_json(peer_cmd))
        loads.append(os.getloadavg()[0])
        if out:
            with open(out, "a") as fh:
                fh.write(json.dumps(ours[-1]) + "\n" + json.dumps(torch[-1]) + "\n")
    return ours, torch, loads


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rows", default="batch,image-tokens,width")
    ap.add_argument("--out")
    a = ap.parse_args()
    print("| row | params | GFLOP/step | ours ms | torch ms | ours/torch | ours % of peak | fwd ms ours / torch "
          "| decode tok/s ours / torch | RSS MiB ours / model / torch | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    default = None
    for axis in a.rows.split(","):
        if axis not in AXES:
            sys.exit(f"scaling: unknown row axis '{axis}' (known: {', '.join(AXES)})")
        option, values = AXES[axis]
        for value in values:
            if value == DEFAULTS[option]:
                default = default or measure(a.cli, a.rounds, a.repeats, option, value, a.out)
                ours, torch, loads = default
            else:
                ours, torch, loads = measure(a.cli, a.rounds, a.repeats, option, value, a.out)

            def m(rows, key):
                return median(rows, key)

            o, t = m(ours, "train_step_ms"), m(torch, "train_step_ms")
            print(f"| {axis} {value} | {ours[0]['params'] / 1e6:.2f} M | {ours[0]['train_gflop_per_step']:.1f} "
                  f"| {o:.0f} | {t:.0f} | {o / t:.2f} | {m(ours, 'percent_of_peak'):.1f}% "
                  f"| {m(ours, 'forward_ms'):.1f} / {m(torch, 'forward_ms'):.1f} "
                  f"| {m(ours, 'decode_tokens_per_s'):.0f} / {m(torch, 'decode_tokens_per_s'):.0f} "
                  f"| {m(ours, 'peak_rss_mb'):.0f} / {m(ours, 'model_memory_mb'):.0f} / {m(torch, 'peak_rss_mb'):.0f} "
                  f"| {min(loads):.1f}–{max(loads):.1f} |", flush=True)


if __name__ == "__main__":
    main()
