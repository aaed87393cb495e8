#!/usr/bin/env python3
"""Where held-out colour and shape answers fail, pooled over `vwlmm demo` runs.

    scripts/held_out_pairs.py RUN_DIR [RUN_DIR ...]

Reads each run's predictions.jsonl. The asked-about object's colour x shape pair follows from the question and its
reference ("what shape is the blue object ?" -> "cross" is (blue, cross)); a run's held-out pairs are those of its
questions marked InvolvesHeldOut. Questions about held-out pairs are then grouped by how many partners the named
attribute keeps in training: a shape question names a colour, and a colour seen with only two shapes in training gives
the decoder a two-way choice to learn for it; a colour question names a shape, seen with however many colours the
split left it. Of the wrong answers that are an attribute of the question's kind (a colour, a shape), it counts those
that are such a training partner (a shape the named colour had in training), against the count expected if a wrong
answer were any other attribute of that kind. COLOURS and SHAPES mirror ObjectColour and ObjectShape in
src/VwLmm.Data/ShapesGrid/Scene.cs (a test keeps them equal).
"""
import json
import os
import re
import sys
from collections import defaultdict

COLOURS = ["red", "green", "blue", "yellow", "white", "purple"]
SHAPES = ["circle", "square", "triangle", "cross"]
# QuestionKind's values as predictions.jsonl writes them.
COLOUR_KIND, SHAPE_KIND = 0, 1
SHAPE_QUESTION = re.compile(r"^what shape is the (\w+) object \?$")
COLOUR_QUESTION = re.compile(r"^what colour is the (\w+) \?$")


def asked_pair(p):
    """(colour, shape) of the object a colour or shape question asks about, or None for other questions."""
    if p["Kind"] == SHAPE_KIND and (m := SHAPE_QUESTION.match(p["Question"])):
        return m.group(1), p["Expected"]
    if p["Kind"] == COLOUR_KIND and (m := COLOUR_QUESTION.match(p["Question"])):
        return p["Expected"], m.group(1)
    return None


def load(run):
    path = os.path.join(run, "predictions.jsonl")
    try:
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except OSError as e:
        sys.exit(f"{path}: {e.strerror.lower()}")
    except ValueError as e:
        sys.exit(f"{path}: not JSON lines ({e})")
    asked = [(p, pair) for p in rows if (pair := asked_pair(p)) is not None]
    return asked, {pair for p, pair in asked if p["InvolvesHeldOut"]}


def tally(runs):
    """Per kind and number of training partners of the named attribute: [right, asked, wrong, wrong naming a partner, expected by chance]."""
    groups = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    for asked, held in runs:
        for p, (colour, shape) in asked:
            if not p["InvolvesHeldOut"]:
                continue
            if p["Kind"] == SHAPE_KIND:
                kind, values, partners = "shape", SHAPES, [s for s in SHAPES if (colour, s) not in held]
            else:
                kind, values, partners = "colour", COLOURS, [c for c in COLOURS if (c, shape) not in held]
            g = groups[(kind, len(partners))]
            g[1] += 1
            if p["Correct"]:
                g[0] += 1
            elif p["Predicted"] in values:
                g[2] += 1
                g[3] += p["Predicted"] in partners
                g[4] += sum(v in partners for v in values if v != p["Expected"]) / (len(values) - 1)
    return groups


def markdown(groups):
    lines = ["| question | the named attribute's partners in training | right / asked | wrong answers that are a partner | expected by chance |",
             "|---|---:|---:|---:|---:|"]
    for (kind, partners), (right, asked, wrong, partner, chance) in sorted(groups.items()):
        named = "colour" if kind == "shape" else "shape"
        lines.append(f"| {kind}, held-out pair | {partners} {'shapes' if kind == 'shape' else 'colours'} per {named} | "
                     f"{right}/{asked} ({100 * right / asked:.0f}%) | {partner}/{wrong} | {chance:.1f} |")
    return "\n".join(lines)


def main(argv):
    if not argv:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    runs = [load(run) for run in argv]
    for run, (_, held) in zip(argv, runs):
        print(f"{run}: held-out pairs {', '.join(f'{c} {s}' for c, s in sorted(held)) or 'none asked about'}")
    print(markdown(tally(runs)))


if __name__ == "__main__":
    main(sys.argv[1:])
