#!/usr/bin/env python3
"""Right answers about held-out pairs alone and beside one distractor, from `vwlmm eval` on a LoneObjects set.

    scripts/lone_objects.py PREDICTIONS.jsonl [PREDICTIONS.jsonl ...]

Each file is `vwlmm eval --out` on the data.json that scripts/LoneObjects writes (ids
GROUP|KIND|SUBJECT|DISTRACTOR|ASKED|N). Per file, and pooled when there are several: right / asked by group and
question kind, then for the held-out groups' wrong answers how many name a training partner of the question's word
(a shape the colour it names had in training, a colour the shape it names had) and how many name the distractor's
attribute. A wrong answer about an object alone in the image cannot come from another object: it is a misreading of
the right one. Group lone-misnamed asks about a lone held-out object by another colour seen with its shape. SHAPES and COLOURS mirror ObjectShape
and ObjectColour in src/VwLmm.Data/ShapesGrid/Scene.cs.
"""
import json
import sys
from collections import Counter, defaultdict

COLOURS = ["red", "green", "blue", "yellow", "white", "purple"]
SHAPES = ["circle", "square", "triangle", "cross"]


def load(path):
    """The file's rows, each marked with whether a wrong answer names a training partner of the question's word (its
    world's held-out pairs are the subjects of its lone-heldout group) or the distractor's attribute."""
    rows = []
    with open(path) as f:
        for line in f:
            p = json.loads(line)
            group, kind, subject, distractor, asked, _ = p["id"].split("|")
            colour, shape = subject.split()
            rows.append(dict(group=group, kind=kind, colour=colour, shape=shape, asked=asked,
                             distractor=None if distractor == "-" else distractor.split(),
                             prediction=p["prediction"], correct=p["correct"]))
    held_out = {(r["colour"], r["shape"]) for r in rows if r["group"] == "lone-heldout"}
    for r in rows:
        if r["kind"] == "shape":
            partners = {s for s in SHAPES if (r["asked"], s) not in held_out}
            attribute = 1
        else:
            partners = {c for c in COLOURS if (c, r["asked"]) not in held_out}
            attribute = 0
        r["partner"] = r["prediction"] in partners
        # A wrong answer drawn uniformly from the attribute's other values would be a partner this often.
        values = SHAPES if r["kind"] == "shape" else COLOURS
        right_answer = r["shape"] if r["kind"] == "shape" else r["colour"]
        r["partner_chance"] = len(partners - {right_answer}) / (len(values) - 1)
        r["names_distractor"] = r["distractor"] is not None and r["prediction"] == r["distractor"][attribute]
    return rows


def summarise(name, rows):
    right = defaultdict(lambda: [0, 0])
    wrong = Counter()
    for r in rows:
        key = (r["group"], r["kind"])
        right[key][0] += r["correct"]
        right[key][1] += 1
        if r["correct"] or r["group"].endswith("train"):
            continue
        wrong[key + ("wrong",)] += 1
        wrong[key + ("partner",)] += r["partner"]
        wrong[key + ("chance",)] += r["partner_chance"]
        wrong[key + ("distractor",)] += r["names_distractor"]
    print(f"{name}")
    print("| group | kind | right / asked | held-out wrong answers: a training partner (by chance) / the distractor's |")
    print("|---|---|---:|---:|")
    for group, kind in sorted(right):
        r, n = right[(group, kind)]
        extra = ""
        if not group.endswith("train"):
            w = wrong[(group, kind, "wrong")]
            extra = f"{wrong[(group, kind, 'partner')]}/{w} ({wrong[(group, kind, 'chance')]:.1f})" + (f" / {wrong[(group, kind, 'distractor')]}/{w}" if group.startswith("duo") else "")
        print(f"| {group} | {kind} | {r}/{n} ({100 * r / n:.0f}%) | {extra} |")


def main(paths):
    if not paths:
        sys.exit(__doc__)
    everything = []
    for path in paths:
        rows = load(path)
        everything += rows
        summarise(path, rows)
    if len(paths) > 1:
        summarise("pooled", everything)


if __name__ == "__main__":
    main(sys.argv[1:])
