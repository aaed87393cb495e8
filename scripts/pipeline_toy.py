#!/usr/bin/python3
"""The prior_toy decoder trained on the demo's own instruction data: which part of the pipeline keeps it from generalising?

scripts/prior_toy.py generalises to the held-out colour×shape pairs; the demo does not. This trains the same PyTorch
decoder (the engine's layer: RMSNorm, RoPE, SwiGLU; d 256, 4 layers, PyTorch's default initialisation) with the
demo's instruction-stage optimiser (AdamW lr 1e-3, batch 16, 5% warm-up, cosine to 0.1, gradients clipped to 1) and
its frame-relative answer prior (AnswerPrior.cs, add-one smoothing towards the frame) on the token sequences the demo
trains on, exported by scripts/ShapesGridDump:

  dotnet run --project scripts/ShapesGridDump -c Release -- tokens 1 CACHE/shapesgrid-v2.4-seed1 /tmp/t1.jsonl 40000 200
  dotnet run --project scripts/ShapesGridDump -c Release -- features 1 CACHE/shapesgrid-v2.4-seed1/default-vwlmm/checkpoint /tmp/f1.f32 40000 200
  dotnet run --project scripts/ShapesGridDump -c Release -- codes 1 CACHE/shapesgrid-v2.4-seed1 /tmp/c1.u8 40000 200

(CACHE is `vwlmm demo --cache`; the checkpoint holds the frozen tower the demo trained). What the patch rows hold:
  --patches labels    the sum of learned colour, shape and background embeddings of the patch's ground truth: exactly
                      compositional, as in prior_toy.py; with --codes C.u8, the demo's vision probes' argmax
                      decisions instead (right on all but ~1e-4 of the training patches, wrong on a few held-out objects);
  --patches tower     the frozen tower's features through a trainable mlp2x_gelu projector, as in the demo;
  --patches probes    softmax codes of linear colour / shape / background probes trained here on the training images'
                      features (then frozen) through a trainable linear map.
--additivity (with --features and --patches tower) fits the object patches' features as a sum of colour, shape and
background parts on the training images and prints how well that holds on test objects of training and held-out pairs.
Layout: --question-first puts the first question before the image, --one-question keeps only the first question of
each training conversation, --drop-template removes BOS, "USER:" and the spaces and newline around the image.

Test: one prompt per colour or shape question of the test images, scored by the argmax at the answer's first token
(what greedy decoding emits first), split by kind and by whether the asked-about object is a held-out pair (H) or
not (T). docs/RESULTS.md, sessions 11 and 12.
Usage: OMP_NUM_THREADS=1 /usr/bin/python3 scripts/pipeline_toy.py TOKENS.jsonl [--features F.f32]
       [--patches labels|tower|probes] [--question-first] [--one-question] [--drop-template] [--steps 2000]
       [--every 1000] [--seed 0] [--codes C.u8] [--additivity] [--lr 1e-3] [--weight-decay 0] [--layers 4]
       [--heads 4] [--attention-dropout 0] [--residual-dropout 0]
(--lr is the peak of the schedule; the defaults are the demo's, docs/RESULTS.md session 19 varies lr, weight decay
and layers, session 30 the two dropouts, session 36 the heads)
"""
import argparse
import json
import math
import random
from collections import defaultdict

import numpy as np
import torch

from prior_toy import D, LlamaBlock, RmsNorm

IMAGE, IGNORE, COLOURS, SHAPES, GROUNDS = -200, -100, 6, 4, 4


def load(path):
    with open(path) as f:
        head = json.loads(f.readline())
        rows = [json.loads(line) for line in f]
    return head, [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "test"]


def turns(ids, labels):
    """[(prompt ids, answer ids)] of one conversation: answers are the labelled runs."""
    out, prompt, i = [], [], 0
    while i < len(ids):
        if labels[i] == IGNORE:
            prompt.append(ids[i])
            i += 1
            continue
        answer = []
        while i < len(ids) and labels[i] != IGNORE:
            answer.append(ids[i])
            i += 1
        out.append((prompt, answer))
        prompt = []
    return out


def layout(conversation, args, template):
    """The conversation with the options applied, as flat (ids, labels)."""
    if args.one_question:
        conversation = conversation[:1]
    if args.question_first:
        # "<s> USER: ▁ <image> ▁ \n QUESTION ▁ASSISTANT:" -> "<s> USER: QUESTION ▁ \n <image> ▁ASSISTANT:"
        prompt, answer = conversation[0]
        at = prompt.index(IMAGE)
        question = prompt[at + 3:-1]
        conversation = [(prompt[:at - 1] + question + prompt[at + 1:at + 3] + [IMAGE, prompt[-1]], answer)] + conversation[1:]
    if args.drop_template:
        conversation = [([t for t in p if t not in template], a) for p, a in conversation]
    ids, labels = [], []
    for prompt, answer in conversation:
        ids += prompt + answer
        labels += [IGNORE] * len(prompt) + answer
    return ids, labels


def expand(row, args, template, image_base, codes):
    """Token ids (-1 on image rows), per-row (colour, shape, background, feature row) and labels; with codes, the
    patches' colour, shape and background are the vision probes' decisions instead of the ground truth."""
    ids, labels = layout(turns(row["ids"], row["labels"]), args, template)
    tokens, patches, out_labels = [], [], []
    for t, label in zip(ids, labels):
        if t == IMAGE:
            base = (image_base + row["image"]) * len(row["patches"])
            for j, (c, s, g) in enumerate(row["patches"]):
                if codes is not None:
                    c, s, g = (int(x) for x in codes[base + j])
                tokens.append(-1)
                patches.append((c, s, g, base + j))
                out_labels.append(IGNORE)
        else:
            tokens.append(t)
            patches.append((0, 0, 0, 0))
            out_labels.append(label)
    return tokens, patches, out_labels


def contexts(tokens, labels, word_class):
    """Per row predicting a supervised label: (context, frame) as AnswerPrior.Hash builds them (image rows left out,
    restarting after each answer); None elsewhere."""
    keys, context, frame = [], [], []
    for t in range(len(tokens)):
        if tokens[t] >= 0:
            context.append(tokens[t])
            frame.append(-1 - word_class[tokens[t]] if tokens[t] in word_class else tokens[t])
        supervised = t + 1 < len(labels) and labels[t + 1] != IGNORE
        keys.append((tuple(context), tuple(frame)) if supervised else None)
        if supervised and (t + 2 >= len(labels) or labels[t + 2] == IGNORE):
            context, frame = [], []
    return keys


def answer_prior(train, word_class, vocab):
    """log P(a | context) − log P(a | frame), add-one smoothing towards the frame, 0 for answers the frame never had."""
    by_context, by_frame = {}, defaultdict(lambda: defaultdict(int))
    for tokens, _, labels in train:
        for t, key in enumerate(contexts(tokens, labels, word_class)):
            if key is None or key[0] == key[1]:
                continue
            by_context.setdefault(key[0], (key[1], defaultdict(int)))[1][labels[t + 1]] += 1
            by_frame[key[1]][labels[t + 1]] += 1
    prior = {}
    for context, (frame, counts) in by_context.items():
        frame_counts, n = by_frame[frame], sum(counts.values())
        total = sum(frame_counts.values())
        bias = torch.zeros(vocab)
        for a, c in frame_counts.items():
            p_frame = c / total
            bias[a] = math.log((counts.get(a, 0) + p_frame) / (n + 1) / p_frame)
        prior[context] = bias
    return prior


def probe_codes(features, train, steps=1500):
    """Softmax codes [rows, 7 + 5 + 4] of linear probes trained on the training images' patch rows (AdamW, weight decay
    0.01, batches of 2,048 rows), as the vision pretraining's probes but on the frozen features."""
    rows = [(p[3], p[0], p[1], p[2]) for tokens, patches, _ in train for t, p in zip(tokens, patches) if t < 0]
    index = torch.tensor([r[0] for r in rows])
    targets = [torch.tensor([r[k] for r in rows]) for k in (1, 2, 3)]
    probes = torch.nn.ModuleList(torch.nn.Linear(features.shape[1], k) for k in (COLOURS + 1, SHAPES + 1, GROUNDS))
    opt = torch.optim.AdamW(probes.parameters(), lr=3e-3, weight_decay=0.01)
    for _ in range(steps):
        b = torch.randint(0, len(index), (2048,))
        x = features[index[b]]
        loss = sum(torch.nn.functional.cross_entropy(p(x), y[b]) for p, y in zip(probes, targets))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return probes, torch.cat([torch.softmax(p(features), -1) for p in probes], -1)


def additivity(features, train, test, held):
    """How far the object patches' features are a sum of colour, shape and background parts: a least-squares fit of
    features ≈ W·[one-hot colour, shape, background, 1] on the training images' object patches, then R² and the mean
    residual norm relative to the mean feature norm on those, on test objects of training pairs and of held-out pairs."""
    def rows(conversations):
        return sorted({p for tokens, patches, _ in conversations for t, p in zip(tokens, patches) if t < 0 and p[0] < COLOURS})

    def design(rs):
        x = torch.zeros(len(rs), COLOURS + SHAPES + GROUNDS + 1, dtype=torch.float64)
        for i, (c, s, g, _) in enumerate(rs):
            x[i, c] = x[i, COLOURS + s] = x[i, COLOURS + SHAPES + g] = x[i, -1] = 1
        return x, features[torch.tensor([r[3] for r in rs])].double()

    fit = rows(train)
    x, y = design(fit)
    w = torch.linalg.lstsq(x, y, driver="gelsd").solution
    tested = rows(test)
    for name, rs in (("training images", fit), ("test objects, training pairs", [r for r in tested if (r[0], r[1]) not in held]),
                     ("test objects, held-out pairs", [r for r in tested if (r[0], r[1]) in held])):
        x, y = design(rs)
        residual = y - x @ w
        r2 = 1 - residual.pow(2).sum() / (y - y.mean(0)).pow(2).sum()
        print(f"additive fit, {name}: R² {r2:.3f}, residual / feature norm {residual.norm(dim=1).mean() / y.norm(dim=1).mean():.3f} ({len(rs)} patches)")


class Model(torch.nn.Module):
    def __init__(self, vocab, patches, feature_size, layers, attention_dropout=0.0, residual_dropout=0.0, heads=4):
        super().__init__()
        self.patches = patches
        self.colour, self.shape = torch.nn.Embedding(COLOURS + 1, D), torch.nn.Embedding(SHAPES + 1, D)
        self.ground = torch.nn.Embedding(GROUNDS, D)
        self.tokens = torch.nn.Embedding(vocab, D)
        self.projector = {
            "labels": None,
            "tower": torch.nn.Sequential(torch.nn.Linear(feature_size, D), torch.nn.GELU(), torch.nn.Linear(D, D)),
            "probes": torch.nn.Linear(COLOURS + SHAPES + GROUNDS + 2, D),
        }[patches]
        self.blocks = torch.nn.ModuleList(LlamaBlock(heads=heads, attention_dropout=attention_dropout, residual_dropout=residual_dropout)
                                          for _ in range(layers))
        self.norm, self.head = RmsNorm(D), torch.nn.Linear(D, vocab, bias=False)

    def forward(self, tokens, patches, features):
        c, s, g, row = patches.unbind(-1)
        image = self.colour(c) + self.shape(s) + self.ground(g) if self.projector is None else self.projector(features[row])
        h = torch.where((tokens < 0)[..., None], image, self.tokens(tokens.clamp(min=0)))
        causal = torch.triu(torch.full((h.shape[1], h.shape[1]), float("-inf")), 1)
        for block in self.blocks:
            h = block(h, causal)
        return self.head(self.norm(h))


def collate(items, prior, word_class, vocab):
    n = max(len(t) for t, _, _ in items)
    tokens = torch.zeros(len(items), n, dtype=torch.long)
    patches = torch.zeros(len(items), n, 4, dtype=torch.long)
    targets = torch.full((len(items), n), IGNORE, dtype=torch.long)
    bias = torch.zeros(len(items), n, vocab)
    for i, (t, p, labels) in enumerate(items):
        tokens[i, :len(t)], patches[i, :len(t)] = torch.tensor(t), torch.tensor(p)
        targets[i, :len(t) - 1] = torch.tensor(labels[1:])
        for j, key in enumerate(contexts(t, labels, word_class)):
            if key is not None and key[0] in prior:
                bias[i, j] = prior[key[0]]
    return tokens, patches, targets, bias


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tokens")
    ap.add_argument("--features", default="")
    ap.add_argument("--patches", choices=["labels", "tower", "probes"], default="labels")
    ap.add_argument("--question-first", action="store_true")
    ap.add_argument("--one-question", action="store_true")
    ap.add_argument("--drop-template", action="store_true")
    ap.add_argument("--codes", default="", help="ShapesGridDump codes output: --patches labels reads the probes' decisions")
    ap.add_argument("--additivity", action="store_true", help="print how additive the tower's features are, then exit")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--attention-dropout", type=float, default=0.0)
    ap.add_argument("--residual-dropout", type=float, default=0.0)
    args = ap.parse_args()
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    head, train_rows, test_rows = load(args.tokens)
    pieces = head["pieces"]
    vocab = len(pieces)
    word = {p: i for i, p in enumerate(pieces)}
    word_class = {word["▁" + w]: 0 for w in ("red", "green", "blue", "yellow", "white", "purple")}
    word_class.update({word["▁" + w]: 1 for w in ("circle", "square", "triangle", "cross", "circles", "squares", "triangles", "crosses")})
    template = {word["<s>"], word["▁USER:"], word["▁"], word["<0x0A>"]}
    images = max(r["image"] for r in train_rows) + 1
    codes = np.fromfile(args.codes, dtype=np.uint8).reshape(-1, 3) if args.codes else None
    train = [expand(r, args, template, 0, codes) for r in train_rows]
    test = [(expand(r, args, template, images, codes), r["kind"], r["held_out"]) for r in test_rows]
    prior = answer_prior(train, word_class, vocab)

    features = None
    if args.patches != "labels":
        features = torch.from_numpy(np.fromfile(args.features, dtype=np.float32)).reshape(-1, 128)
        if args.additivity:
            additivity(features, train, [x for x, _, _ in test], {tuple(h) for h in head["held_out"]})
            return
        if args.patches == "probes":
            probes, features = probe_codes(features, train)
            held = {tuple(h) for h in head["held_out"]}
            rows = sorted({p for tokens, patches, _ in (x for x, _, _ in test) for t, p in zip(tokens, patches)
                           if t < 0 and (p[0], p[1]) in held})
            x = features[torch.tensor([r[3] for r in rows])]
            print("probes on held-out-pair patches: colour %.3f shape %.3f (%d patches)" % (
                (x[:, :COLOURS + 1].argmax(-1) == torch.tensor([r[0] for r in rows])).float().mean(),
                (x[:, COLOURS + 1:COLOURS + SHAPES + 2].argmax(-1) == torch.tensor([r[1] for r in rows])).float().mean(), len(rows)))
    print(f"{len(train)} training conversations, {len(test)} test questions, {len(prior)} prior contexts", flush=True)

    model = Model(vocab, args.patches, 128, args.layers, args.attention_dropout, args.residual_dropout, args.heads)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    warmup = max(1, int(0.05 * args.steps))
    for step in range(args.steps + 1):
        progress = (step - warmup) / max(1, args.steps - warmup)
        for group in opt.param_groups:
            group["lr"] = args.lr * ((step + 1) / warmup if step < warmup else 0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
        tokens, patches, targets, bias = collate(random.sample(train, 16), prior, word_class, vocab)
        logits = model(tokens, patches, features) + bias
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1), ignore_index=IGNORE)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.every == 0:
            right = defaultdict(lambda: [0, 0])
            model.eval()
            with torch.no_grad():
                for i in range(0, len(test), 64):
                    chunk = test[i:i + 64]
                    tokens, patches, _, _ = collate([x for x, _, _ in chunk], {}, word_class, vocab)
                    logits = model(tokens, patches, features)
                    for j, ((_, _, labels), kind, held) in enumerate(chunk):
                        at = next(k for k in range(len(labels) - 1) if labels[k + 1] != IGNORE)
                        score = right[f"{kind}/{'H' if held else 'T'}"]
                        score[0] += int(logits[j, at].argmax()) == labels[at + 1]
                        score[1] += 1
            model.train()
            print(f"step {step} loss {loss.item():.3f} " + " ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(right.items())), flush=True)


if __name__ == "__main__":
    main()
