#!/usr/bin/env python3
"""Runs the ShapesGrid ablation (METHOD §7.3: baseline λ=0, VW-LMM, detached target, pif) over several seeds with
`vwlmm demo`, prints a Markdown table of held-out results, mean ± sample std over seeds, and writes the same summary as
OUT/BUDGET-ablations.json and a report with its table as OUT/BUDGET-report/report.html.

usage: scripts/ablations.py [--quick] [--seeds 1,2,3] [--variants baseline,vwlmm,detach,pif] [--answer-prior on|off]
                            [--stages lookup|llava] [--out runs/ablations] [--cli src/VwLmm.Cli/bin/Release/net10.0/vwlmm.dll]
--answer-prior off runs every variant without the answer prior (`vwlmm demo --answer-prior off`); its rows are named
VARIANT-noprior.
--stages llava runs the session 2–6 stages (`vwlmm demo --stages llava`); its rows are named VARIANT-llava.
Each run's results.json stays in OUT/BUDGET-VARIANT-seedS; runs already finished there are reused, so an interrupted
ablation continues where it stopped. BUDGET is quick or default, with the rows' -noprior/-llava suffix.
The report (`vwlmm demo --ablations OUT/BUDGET-ablations.json`) is the demo of vwlmm (else the first variant) at the
first seed; its model is cached, so writing it only evaluates.
"""
import argparse, json, os, statistics, subprocess, sys

KINDS = ["colour", "shape", "count", "existence", "position"]

def pair_accuracy(results, kind, split):
    """Share right of the colour or shape questions about held-out (training) pairs; None where the run lacks the
    counts (a demo before session 24) or asked none."""
    counts = results.get("colour_shape_questions_by_pair", {}).get(kind, {}).get(split)
    return counts["right"] / counts["asked"] if counts and counts["asked"] else None


# (key in ablations.json, column heading, the value in one run's results.json or None where that run lacks it).
METRICS = [
    ("qa_overall", "QA overall", lambda r: r["qa_accuracy"]["overall"]),
    *[(f"qa_{k}", k, lambda r, k=k: r["qa_accuracy"].get(k, 0.0)) for k in KINDS],
    ("qa_held_out_combos", "held-out combos", lambda r: r["qa_accuracy_held_out_combos"]),
    *[(f"{k}_held_out_pairs", f"{k}, held-out pairs", lambda r, k=k: pair_accuracy(r, k, "held_out")) for k in ("colour", "shape")],
    *[(f"{k}_training_pairs", f"{k}, training pairs", lambda r, k=k: pair_accuracy(r, k, "training")) for k in ("colour", "shape")],
    ("visual_word_accuracy", "visual-word acc.", lambda r: r["visual_word_accuracy"]),
    ("logit_lens_accuracy", "logit lens E·x", lambda r: r.get("logit_lens_accuracy")),
    ("next_patch_accuracy", "next patch: LM names it", lambda r: r.get("next_patch_accuracy")),
    ("next_patch_agreement", "next patch: LM argmax = visual word", lambda r: r.get("next_patch_agreement")),
    ("background_word_accuracy", "background word", lambda r: r["background_word_accuracy"]),
    ("wrong_answers_naming_another_object", "wrong answers naming another object",
     lambda r: r.get("wrong_answers_naming_another_object")),
    *[(f"train_distribution_{k}", f"unseen training images: {k}",
       lambda r, k=k: r.get("qa_accuracy_train_distribution", {}).get(k)) for k in ("colour", "shape")],
]


def summarise(runs, description):
    """The ablations.json document: runs maps each row name to its [(seed, results.json dict)]; every metric's mean
    and sample std (None from one run) over the runs that have it, as fractions."""
    variants = []
    for name, results in runs.items():
        values = {}
        for key, _, get in METRICS:
            xs = [x for x in (get(r) for _, r in results) if x is not None]
            if xs:
                values[key] = {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None, "n": len(xs)}
        variants.append({"name": name, "seeds": [s for s, _ in results], "values": values})
    return {"description": description, "metrics": [{"key": k, "label": label} for k, label, _ in METRICS],
            "variants": variants}


def markdown(summary):
    """The summary as a Markdown table, as the report renders it: percentages, mean ± std, "(n = k)" where fewer of
    the variant's seeds had the metric."""
    def cell(v, seeds):
        if v is None:
            return "–"
        return (f"{100 * v['mean']:.1f}" + ("" if v["std"] is None else f" ± {100 * v['std']:.1f}")
                + ("" if v["n"] == seeds else f" (n = {v['n']})"))
    lines = [f"| variant ({summary['description']}) | " + " | ".join(m["label"] for m in summary["metrics"]) + " |",
             "|---" * (len(summary["metrics"]) + 1) + "|"]
    for v in summary["variants"]:
        lines.append(f"| {v['name']} | " + " | ".join(cell(v["values"].get(m["key"]), len(v["seeds"])) for m in summary["metrics"]) + " |")
    return "\n".join(lines)


def write_json(path, document):
    """Writes path whole or not at all: a reader never sees half a file."""
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(temp, path)


def main():
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

    def demo(variant, seed, out, *extra):
        cmd = ["dotnet", a.cli, "demo", "--variant", variant, "--stages", a.stages, "--seed", str(seed), "--out", out,
               "--cache", os.path.join(a.out, "cache"), "--quiet", "--answer-prior", a.answer_prior, *extra]
        if a.quick:
            cmd.append("--quick")
        print("running:", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)

    runs = {}
    for v in variants:
        for s in seeds:
            out = os.path.join(a.out, f"{budget}-{v}{suffix}-seed{s}")
            res = os.path.join(out, "results.json")
            if not os.path.exists(res):
                demo(v, s, out)
            with open(res) as f:
                runs.setdefault(f"{v}{suffix}", []).append((s, json.load(f)))

    summary = summarise(runs, f"{budget} budget, seeds {a.seeds}")
    print(markdown(summary), flush=True)
    ablations = os.path.join(a.out, f"{budget}{suffix}-ablations.json")
    write_json(ablations, summary)
    report = os.path.join(a.out, f"{budget}{suffix}-report")
    demo("vwlmm" if "vwlmm" in variants else variants[0], seeds[0], report, "--ablations", ablations)
    print(f"summary: {ablations}; report: {os.path.join(report, 'report.html')}", file=sys.stderr)


if __name__ == "__main__":
    main()
