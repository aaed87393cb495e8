#!/usr/bin/env python3
"""Runs the ShapesGrid ablation (METHOD §7.3: baseline λ=0, VW-LMM, detached target, pif) over several seeds with
`vwlmm demo` and prints a Markdown table of held-out results, mean ± sample std over seeds.

usage: scripts/ablations.py [--quick] [--seeds 1,2,3] [--variants baseline,vwlmm,detach,pif] [--answer-prior on|off]
                            [--stages lookup|llava] [--out runs/ablations] [--cli src/VwLmm.Cli/bin/Release/net10.0/vwlmm.dll]
--answer-prior off runs every variant without the answer prior (`vwlmm demo --answer-prior off`); its rows are named
VARIANT-noprior.
--stages llava runs the session 2–6 stages (`vwlmm demo --stages llava`); its rows are named VARIANT-llava.
Each run's results.json stays in OUT/VARIANT-seedS; runs already finished there are reused, so an interrupted
ablation continues where it stopped.
"""
import argparse, json, os, statistics, subprocess, sys

p = argparse.ArgumentParser()
p.add_argument("--quick", action="store_true")
p.add_argument("--answer-prior", choices=["on", "off"], default="on")
p.add_argument("--stages", choices=["lookup", "llava"], default="lookup")
p.add_argument("--seeds", default="1,2,3")
p.add_argument("--variants", default="baseline,vwlmm,detach,pif")
p.add_argument("--out", default="runs/ablations")
p.add_argument("--cli", default="src/VwLmm.Cli/bin/Release/net10.0/vwlmm.dll")
a = p.parse_args()
seeds = [int(s) for s in a.seeds.split(",")]
variants = a.variants.split(",")
suffix = ("-noprior" if a.answer_prior == "off" else "") + ("-llava" if a.stages == "llava" else "")
budget = "quick" if a.quick else "default"
rows = {}
for v in variants:
    for s in seeds:
        out = os.path.join(a.out, f"{budget}-{v}{suffix}-seed{s}")
        res = os.path.join(out, "results.json")
        if not os.path.exists(res):
            cmd = ["dotnet", a.cli, "demo", "--variant", v, "--stages", a.stages, "--seed", str(s), "--out", out,
                   "--cache", os.path.join(a.out, "cache"), "--quiet"]
            if a.quick:
                cmd.append("--quick")
            cmd += ["--answer-prior", a.answer_prior]
            print("running:", " ".join(cmd), file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True)
        with open(res) as f:
            rows.setdefault(v, []).append(json.load(f))

def cell(values):
    values = [100 * x for x in values]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"

kinds = ["colour", "shape", "count", "existence", "position"]
print(f"| variant ({budget} budget, seeds {a.seeds}) | QA overall | " + " | ".join(kinds) +
      " | held-out combos | visual-word acc. | logit lens E·x | next patch: LM names it | next patch: LM argmax = visual word"
      " | background word | wrong answers naming another object"
      " | unseen training images: colour | shape |")
print("|---" * (len(kinds) + 11) + "|")
for v in variants:
    r = rows[v]
    print(f"| {v}{suffix} | {cell([x['qa_accuracy']['overall'] for x in r])} | " +
          " | ".join(cell([x['qa_accuracy'].get(k, 0.0) for x in r]) for k in kinds) +
          f" | {cell([x['qa_accuracy_held_out_combos'] for x in r])} | {cell([x['visual_word_accuracy'] for x in r])}"
          f" | {cell([x['logit_lens_accuracy'] for x in r if 'logit_lens_accuracy' in x])}"
          f" | {cell([x['next_patch_accuracy'] for x in r if 'next_patch_accuracy' in x])}"
          f" | {cell([x['next_patch_agreement'] for x in r if 'next_patch_agreement' in x])}"
          f" | {cell([x['background_word_accuracy'] for x in r])}"
          f" | {cell([x['wrong_answers_naming_another_object'] for x in r if x.get('wrong_answers_naming_another_object') is not None])}"
          " | " + " | ".join(cell([x['qa_accuracy_train_distribution'][k] for x in r if k in x.get('qa_accuracy_train_distribution', {})])
                             for k in ("colour", "shape")) + " |")
