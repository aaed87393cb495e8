#!/usr/bin/python3
"""How far can a decoder trained only on ShapesGrid's train combinations generalise, given perfect patch features?

The held-out QA target of docs/RESULTS.md asks "what colour is the triangle ?" about a blue triangle when no train
image or text ever pairs blue with triangle. This strips the question to its core, in PyTorch (Debian python3-torch,
run with /usr/bin/python3): each of the 16 patches enters as the sum of learned colour, shape and background
embeddings, so the input is exactly compositional and the only thing left to learn is the lookup; a pre-LN
transformer of the demo decoder's size (d 256, 4 layers, 4 heads, MLP 688) answers one colour or shape question per
image. The same 5 combinations as seed 1 of the demo are held out of training; the test images hold at least one.

--debias adds a question-only prior to the logits during training (a product of experts, Clark et al. 2019,
"Don't Take the Easy Way Out"): log P(answer | question) − log P(answer | question kind), counted on training data.
It carries which colours each shape came in, so the model need not learn it; at test time the model answers alone.

--arch llama swaps the pre-LN blocks for the engine's decoder layer (RMSNorm, RoPE, SwiGLU, no biases); --init picks
PyTorch's module defaults (torch), HF LLaMA's N(0, 0.02) everywhere (hf, what the engine's InitializeRandom does), or
HF's for the linears only (hf-emb1) or for the embeddings only (hf-lin).

--extra-colours N adds N named colours that appear in training scenes only, with every shape: a shape then comes in
6 + N colours, which asks whether a wider training distribution makes the colour readout independent of the shape.
Test scenes use the 6 colours only, so the held-out questions are unchanged.

--balance-distractors trains only on questions whose distractors carry attributes the asked-about one comes with in
training (no blue object beside "what colour is the triangle ?" when triangles are never blue), so the distractors
cannot teach that a colour is never the answer's object. --ema D also evaluates an exponential moving average of the
weights (decay D per step). --question-first puts the question before the patches and only the answer marker after
them, so each patch position can see what is asked (LLaVA's layout puts the image first; docs/RESULTS.md, session 9).

--pair-embedding S adds S × a learned embedding of the patch's colour×shape pair to its input, a stand-in for the
conjunctive part of real tower features (a held-out pair's vector is never trained). --pipeline-optimizer trains
as the demo's instruction stage does: batch 16, 5% linear warm-up, cosine decay to 0.1 × lr, gradients clipped to
norm 1 (otherwise batch 32 at a constant lr, unclipped). docs/RESULTS.md, session 10.

Prints accuracy on test questions about train (T) and held-out (H) combinations every --every steps.
Usage: /usr/bin/python3 scripts/prior_toy.py [--debias] [--arch prenorm|llama] [--init torch|hf|hf-emb1|hf-lin]
       [--extra-colours N] [--balance-distractors] [--ema D] [--question-first] [--pair-embedding S]
       [--pipeline-optimizer] [--steps 1500] [--every 500] [--seed 0]
"""
import argparse
import copy
import math
import random
from collections import defaultdict

import torch

COLOURS, SHAPES, GROUNDS, CELLS = 6, 4, 4, 16
HELD_OUT = {(2, 2), (1, 2), (2, 3), (1, 3), (5, 3)}  # (colour, shape): blue/green triangle, blue/green/purple cross
# Tokens: 0 pad, 1 what, 2 colour, 3 shape, 4 is, 5 the, 6 object, 7 ?, 8 answer marker, then colours, then shapes.
COLOUR_TOKEN, D = 9, 256
# --extra-colours: named colours that only training scenes use, with every shape (set by configure()).
ALL_COLOURS, SHAPE_TOKEN, VOCAB = COLOURS, COLOUR_TOKEN + COLOURS, COLOUR_TOKEN + COLOURS + SHAPES
# --question-first: the question before the patches, the answer marker after them (set in main()).
QUESTION_FIRST = False
# --pair-embedding: the weight of the conjunctive colour×shape part of each patch's input (set in main()).
PAIR_SCALE = 0.0


def configure(extra_colours):
    global ALL_COLOURS, SHAPE_TOKEN, VOCAB
    ALL_COLOURS = COLOURS + extra_colours
    SHAPE_TOKEN = COLOUR_TOKEN + ALL_COLOURS
    VOCAB = SHAPE_TOKEN + SHAPES


def scene(test):
    """1–4 objects in distinct cells; train scenes avoid the held-out combinations, test scenes hold one."""
    while True:
        objects = []
        for cell in random.sample(range(CELLS), random.randint(1, 4)):
            while True:
                combo = (random.randrange(COLOURS if test else ALL_COLOURS), random.randrange(SHAPES))
                if test or combo not in HELD_OUT:
                    break
            objects.append((cell, *combo))
        if not test or any((c, s) in HELD_OUT for _, c, s in objects):
            return random.randrange(GROUNDS), objects


def questions(objects):
    """(tokens, answer, about a held-out combination, kind) for every object whose shape or colour is unique."""
    out = []
    for _, c, s in objects:
        if sum(o[2] == s for o in objects) == 1:
            out.append(((1, 2, 4, 5, SHAPE_TOKEN + s, 7, 8), COLOUR_TOKEN + c, (c, s) in HELD_OUT, "colour"))
        if sum(o[1] == c for o in objects) == 1:
            out.append(((1, 3, 4, 5, COLOUR_TOKEN + c, 6, 7, 8), SHAPE_TOKEN + s, (c, s) in HELD_OUT, "shape"))
    return out


class RmsNorm(torch.nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight, self.eps = torch.nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, theta=10000.0):
    """Rotate-half RoPE over [B, H, T, Dh], as in HF LLaMA."""
    t, half = x.shape[2], x.shape[3] // 2
    freq = theta ** (-torch.arange(half, dtype=torch.float32) / half)
    angle = torch.arange(t, dtype=torch.float32)[:, None] * freq[None]
    cos, sin = torch.cat([angle.cos()] * 2, -1), torch.cat([angle.sin()] * 2, -1)
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


class LlamaBlock(torch.nn.Module):
    """The engine's decoder layer: RMSNorm, RoPE attention, SwiGLU, no biases; in training, optional dropout of the
    attention probabilities and of the attention and MLP outputs before they join the residual stream."""

    def __init__(self, heads=4, mlp=688, attention_dropout=0.0, residual_dropout=0.0):
        super().__init__()
        self.heads = heads
        self.attention_dropout, self.residual_dropout = attention_dropout, residual_dropout
        self.norm1, self.norm2 = RmsNorm(D), RmsNorm(D)
        self.q, self.k, self.v, self.o = (torch.nn.Linear(D, D, bias=False) for _ in range(4))
        self.gate, self.up = torch.nn.Linear(D, mlp, bias=False), torch.nn.Linear(D, mlp, bias=False)
        self.down = torch.nn.Linear(mlp, D, bias=False)

    def forward(self, h, mask):
        b, n, _ = h.shape
        x = self.norm1(h)
        q, k, v = (f(x).view(b, n, self.heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
        w = torch.softmax(rope(q) @ rope(k).transpose(-1, -2) / q.shape[-1] ** 0.5 + mask, -1)
        w = torch.nn.functional.dropout(w, self.attention_dropout, self.training)
        drop = lambda y: torch.nn.functional.dropout(y, self.residual_dropout, self.training)
        h = h + drop(self.o((w @ v).transpose(1, 2).reshape(b, n, D)))
        x = self.norm2(h)
        return h + drop(self.down(torch.nn.functional.silu(self.gate(x)) * self.up(x)))


class Model(torch.nn.Module):
    def __init__(self, arch="prenorm", init="torch"):
        super().__init__()
        self.arch = arch
        self.colour = torch.nn.Embedding(ALL_COLOURS + 1, D)  # + "no object"
        self.shape = torch.nn.Embedding(SHAPES + 1, D)
        self.ground = torch.nn.Embedding(GROUNDS, D)
        self.tokens = torch.nn.Embedding(VOCAB, D)
        if arch == "llama":
            self.blocks = torch.nn.ModuleList(LlamaBlock() for _ in range(4))
            self.norm, self.head = RmsNorm(D), torch.nn.Linear(D, VOCAB, bias=False)
        else:
            self.positions = torch.nn.Embedding(32, D)
            layer = torch.nn.TransformerEncoderLayer(D, 4, 688, 0.0, batch_first=True, norm_first=True, activation="gelu")
            self.blocks = torch.nn.TransformerEncoder(layer, 4)
            self.norm, self.head = torch.nn.LayerNorm(D), torch.nn.Linear(D, VOCAB)
        # "torch" keeps PyTorch's module defaults (embeddings N(0, 1), linears U(±1/√fan_in)); "hf" is HF LLaMA's
        # N(0, 0.02) everywhere (the engine's InitializeRandom); "hf-emb1" and "hf-lin" change one of the two.
        for name, p in self.named_parameters():
            is_embedding = p.dim() == 2 and not name.startswith(("blocks", "head"))
            if p.dim() < 2 or init == "torch" or (init == "hf-emb1" and is_embedding) or (init == "hf-lin" and not is_embedding):
                continue
            torch.nn.init.normal_(p, std=0.02)
        # Created last and only when used, so the other parameters start as in runs without it.
        self.pair = torch.nn.Embedding((ALL_COLOURS + 1) * (SHAPES + 1), D) if PAIR_SCALE else None

    def forward(self, colours, shapes, grounds, question):
        patches = self.colour(colours) + self.shape(shapes) + self.ground(grounds)
        if PAIR_SCALE:
            patches = patches + PAIR_SCALE * self.pair(colours * (SHAPES + 1) + shapes)
        if QUESTION_FIRST:
            h = torch.cat([self.tokens(question[:, :-1]), patches, self.tokens(question[:, -1:])], 1)
        else:
            h = torch.cat([patches, self.tokens(question)], 1)
        n = h.shape[1]
        causal = torch.triu(torch.full((n, n), float("-inf")), 1)
        if self.arch == "llama":
            for block in self.blocks:
                h = block(h, causal)
        else:
            h = self.blocks(h + self.positions(torch.arange(n)), mask=causal)
        return self.head(self.norm(h))[:, -1]


def partners():
    """The colours each shape comes in and the shapes each colour comes in, over the training combinations."""
    combos = [(c, s) for c in range(ALL_COLOURS) for s in range(SHAPES) if (c, s) not in HELD_OUT]
    return {s: {c for c, t in combos if t == s} for s in range(SHAPES)}, {c: {s for d, s in combos if d == c} for c in range(ALL_COLOURS)}


def balanced(objects, q):
    """True when no distractor carries an attribute the asked-about one never comes with in training: a colour
    question about a triangle in a scene without blue objects when triangles are never blue."""
    colours_of, shapes_of = partners()
    if q[3] == "colour":
        shape = q[0][4] - SHAPE_TOKEN
        return all(c in colours_of[shape] for _, c, s in objects if s != shape)
    colour = q[0][4] - COLOUR_TOKEN
    return all(s in shapes_of[colour] for _, c, s in objects if c != colour)


def batch(n, test, balance=False):
    items = []
    while len(items) < n:
        ground, objects = scene(test)
        qs = [q for q in questions(objects) if not balance or balanced(objects, q)]
        if qs:
            items.append((ground, objects, random.choice(qs)))
    colours = torch.full((n, CELLS), ALL_COLOURS)
    shapes = torch.full((n, CELLS), SHAPES)
    grounds = torch.zeros(n, CELLS, dtype=torch.long)
    width = max(len(q[0]) for _, _, q in items)
    question = torch.zeros(n, width, dtype=torch.long)  # left-padded: the answer is read at the last position
    for i, (ground, objects, q) in enumerate(items):
        grounds[i] = ground
        for cell, c, s in objects:
            colours[i, cell], shapes[i, cell] = c, s
        question[i, width - len(q[0]):] = torch.tensor(q[0])
    answers = torch.tensor([q[1] for _, _, q in items])
    return (colours, shapes, grounds, question), answers, [q[2] for _, _, q in items], [q[3] for _, _, q in items]


def question_prior(samples=20000):
    """log P(answer | question) − log P(answer | kind), 0 outside the kind's answers (add-one smoothing)."""
    by_question, by_kind = defaultdict(lambda: torch.zeros(VOCAB)), defaultdict(lambda: torch.zeros(VOCAB))
    for _ in range(samples):
        for q, a, _, kind in questions(scene(False)[1]):
            by_question[q][a] += 1
            by_kind[kind][a] += 1
    prior = {}
    for q, counts in by_question.items():
        kind = by_kind["colour" if q[1] == 2 else "shape"]
        bias = torch.log((counts + 1) / (counts.sum() + VOCAB)) - torch.log((kind + 1) / (kind.sum() + VOCAB))
        bias[kind == 0] = 0
        prior[q] = bias
    return prior


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--debias", action="store_true")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", choices=["prenorm", "llama"], default="prenorm")
    ap.add_argument("--init", choices=["torch", "hf", "hf-emb1", "hf-lin"], default="torch")
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--extra-colours", type=int, default=0)
    ap.add_argument("--balance-distractors", action="store_true")
    ap.add_argument("--ema", type=float, default=0.0)
    ap.add_argument("--question-first", action="store_true")
    ap.add_argument("--pair-embedding", type=float, default=0.0)
    ap.add_argument("--pipeline-optimizer", action="store_true")
    args = ap.parse_args()
    configure(args.extra_colours)
    global QUESTION_FIRST, PAIR_SCALE
    QUESTION_FIRST = args.question_first
    PAIR_SCALE = args.pair_embedding
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    model = Model(args.arch, args.init)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    prior = question_prior() if args.debias else None
    ema = copy.deepcopy(model) if args.ema > 0 else None
    warmup = max(1, int(0.05 * args.steps))
    for step in range(args.steps + 1):
        if args.pipeline_optimizer:
            progress = (step - warmup) / max(1, args.steps - warmup)
            for group in opt.param_groups:
                group["lr"] = 1e-3 * ((step + 1) / warmup if step < warmup else 0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
        inputs, answers, _, _ = batch(16 if args.pipeline_optimizer else 32, False, args.balance_distractors)
        logits = model(*inputs)
        if prior is not None:
            logits = logits + torch.stack([prior[tuple(int(t) for t in row if t != 0)] for row in inputs[3]])
        loss = torch.nn.functional.cross_entropy(logits, answers)
        opt.zero_grad()
        loss.backward()
        if args.pipeline_optimizer:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.mul_(args.ema).add_(p, alpha=1 - args.ema)
        if step % args.every == 0:
            with torch.no_grad():
                inputs, answers, held, kinds = batch(1000, True)
                for name, m in (("raw", model), ("ema", ema)):
                    if m is None:
                        continue
                    right = m(*inputs).argmax(-1) == answers
                    acc = {}
                    for kind in ("colour", "shape"):
                        for h in (False, True):
                            idx = [i for i in range(len(kinds)) if kinds[i] == kind and held[i] == h]
                            acc[f"{kind}/{'H' if h else 'T'}"] = round(right[idx].float().mean().item(), 3)
                    print(f"step {step} {name} loss {loss.item():.3f} {acc}", flush=True)


if __name__ == "__main__":
    main()
