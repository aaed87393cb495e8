#!/usr/bin/python3
"""PyTorch peer of `vwlmm bench`: the same VW-LMM model, synthetic batch and step, printing the same metrics.

CLIP-style pre-LN ViT (quick_gelu, select layer -2 so the last block never runs, CLS dropped) -> mlp2x_gelu projector
-> LLaMA decoder (RMSNorm, rotate-half RoPE, SwiGLU, causal attention, untied LM head) with the VM head; loss =
cross-entropy on the text + forward KL(softmax(vm) || softmax(lm shifted)) averaged over image positions t >= 1;
AdamW (weight decay on matrices only) after clipping the gradient norm to 1.

Run with Debian's torch: `/usr/bin/python3 bench/reference/torch_peer.py --json`. The script re-executes itself with
OMP_WAIT_POLICY=PASSIVE (else torch's two OpenMP pools spin against each other on a 2-core machine) and raised glibc
malloc thresholds (see MALLOC_ENV) unless the caller set them, and gives the OpenBLAS that torch's GEMMs run on
(Debian's torch is built against the generic BLAS) what `vwlmm bench` gives its own: --threads threads, the same idle
spin, and on a CPU with AVX-512 the AVX-512 kernels, where the environment may pin an older core type (see
openblas_env); the JSON says which kernels ran ("blas"). `--device cuda` runs the same on the GPU, in fp32 with
TF32 off (as `vwlmm bench --device cuda --model-bench`), waiting for the GPU before each clock read.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

# glibc returns every large tensor buffer to the OS (mmap/munmap per allocation) and torch frees and re-allocates its
# activations each step: the page faults cost 1.5-3x in train step and decode here. Raising the thresholds (as jemalloc
# or tcmalloc would do) gives torch its best case; glibc reads them only at start-up, hence the re-exec.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296", "OMP_WAIT_POLICY": "PASSIVE"}


def openblas_env(argv):
    """OpenBLAS settings equal to ours: torch.set_num_threads reaches OpenMP, not OpenBLAS's own pool, so its thread
    count is set here; its idle threads spin as long as ours (src/VwLmm.Cpu/Native/OpenBlas.cs: 2^18 cycles, not
    2^28); and where the environment pins a core type (OPENBLAS_CORETYPE, set on some machines because OpenBLAS
    0.3.21 mis-detects newer CPUs) on a CPU with AVX-512, the pin becomes SkylakeX, the AVX-512 SGEMM, instead of an
    AVX2 core that would run the peer at half the FMA rate our GEMM gets. main() checks the product once against
    float64 before it times anything."""
    threads = argv[argv.index("--threads") + 1] if "--threads" in argv[:-1] else "2"
    forced = {"OPENBLAS_NUM_THREADS": threads}
    with open("/proc/cpuinfo") as f:
        avx512 = " avx512f " in f.read()
    if avx512 and os.environ.get("OPENBLAS_CORETYPE", "").lower() not in ("", "skylakex", "cooperlake", "sapphirerapids"):
        forced["OPENBLAS_CORETYPE"] = "SkylakeX"
    # Defaults a caller's own setting overrides, as for the malloc thresholds; the thread count and core type not.
    return {**MALLOC_ENV, "OPENBLAS_THREAD_TIMEOUT": "18", **os.environ, **forced, "VWLMM_PEER_ENV": "1"}


if "VWLMM_PEER_ENV" not in os.environ:
    os.execve(sys.executable, [sys.executable] + sys.argv, openblas_env(sys.argv))
import torch  # noqa: E402  (OMP_WAIT_POLICY must be set before the import)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# bench-5m (src/VwLmm.Model/VwLmmConfig.cs, Presets.Bench5M)
VISION = dict(image=64, patch=8, width=128, mlp=512, layers=4, heads=4, eps=1e-5)
LLM = dict(width=256, mlp=768, layers=4, heads=4, vocab=2048, eps=1e-5, theta=1e4)
SELECT_LAYER = -2
SEED = 1234
LR, WEIGHT_DECAY, MAX_GRAD_NORM = 1e-4, 0.01, 1.0
PEAK_GFLOPS_PER_THREAD = 112.0


class VisionBlock(nn.Module):
    def __init__(self, c, f, heads, eps):
        super().__init__()
        self.heads = heads
        self.layer_norm1 = nn.LayerNorm(c, eps=eps)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(c, c) for _ in range(4))
        self.layer_norm2 = nn.LayerNorm(c, eps=eps)
        self.fc1, self.fc2 = nn.Linear(c, f), nn.Linear(f, c)

    def forward(self, x):
        n, t, c = x.shape
        a = self.layer_norm1(x)
        q, k, v = (p(a).view(n, t, self.heads, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        o = attention(q, k, v, causal=False).transpose(1, 2).reshape(n, t, c)
        x = x + self.out_proj(o)
        m = self.fc1(self.layer_norm2(x))
        return x + self.fc2(m * torch.sigmoid(1.702 * m))  # quick_gelu


class VisionTower(nn.Module):
    def __init__(self, v):
        super().__init__()
        c, np_ = v["width"], (v["image"] // v["patch"]) ** 2
        self.class_embedding = nn.Parameter(torch.empty(c))
        self.patch_embedding = nn.Conv2d(3, c, v["patch"], stride=v["patch"], bias=False)
        self.position_embedding = nn.Embedding(np_ + 1, c)
        self.pre_layrnorm = nn.LayerNorm(c, eps=v["eps"])
        # hidden_states[select] with select = -2: blocks after it never run, so they are not built (as in the engine).
        used = v["layers"] + 1 + SELECT_LAYER
        self.layers = nn.ModuleList(VisionBlock(c, v["mlp"], v["heads"], v["eps"]) for _ in range(used))

    def forward(self, pixels):
        p = self.patch_embedding(pixels).flatten(2).transpose(1, 2)  # [N, NP, C]
        cls = self.class_embedding.expand(p.shape[0], 1, -1)
        x = self.pre_layrnorm(torch.cat([cls, p], 1) + self.position_embedding.weight)
        for blk in self.layers:
            x = blk(x)
        return x[:, 1:]  # "patch" feature: CLS dropped


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def attention(q, k, v, causal, offset=0):
    """q [N,H,Tq,D], k/v [N,H,Tk,D]; causal: query i sees keys <= offset + i."""
    s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal and q.shape[2] > 1:
        tq, tk = q.shape[2], k.shape[2]
        mask = torch.ones(tq, tk, dtype=torch.bool, device=q.device).triu(offset + 1)
        s = s.masked_fill(mask, float("-inf"))
    return torch.softmax(s, -1) @ v


class DecoderLayer(nn.Module):
    def __init__(self, d, f, heads, eps):
        super().__init__()
        self.heads = heads
        self.input_layernorm = RMSNorm(d, eps)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.post_attention_layernorm = RMSNorm(d, eps)
        self.gate_proj, self.up_proj = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x, cos, sin, cache=None, start=0):
        n, t, d = x.shape
        a = self.input_layernorm(x)
        q, k, v = (p(a).view(n, t, self.heads, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if cache is not None:
            cache[0][:, :, start:start + t] = k
            cache[1][:, :, start:start + t] = v
            k, v = cache[0][:, :, :start + t], cache[1][:, :, :start + t]
        o = attention(q, k, v, causal=True, offset=start).transpose(1, 2).reshape(n, t, d)
        x = x + self.o_proj(o)
        m = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(m)) * self.up_proj(m))


class VwLmm(nn.Module):
    def __init__(self, v, l):
        super().__init__()
        d = l["width"]
        self.l = l
        self.vision = VisionTower(v)
        self.projector = nn.Sequential(nn.Linear(v["width"], d), nn.GELU(), nn.Linear(d, d))
        self.vm_head = nn.Linear(d, l["vocab"], bias=False)
        self.embed_tokens = nn.Embedding(l["vocab"], d)
        self.layers = nn.ModuleList(DecoderLayer(d, l["mlp"], l["heads"], l["eps"]) for _ in range(l["layers"]))
        self.norm = RMSNorm(d, l["eps"])
        self.lm_head = nn.Linear(d, l["vocab"], bias=False)
        hd = d // l["heads"]
        self.register_buffer("inv_freq", 1.0 / (l["theta"] ** (torch.arange(0, hd, 2).float() / hd)), persistent=False)
        for name, p in self.named_parameters():  # HF-style init, as VwLmmModel.InitializeRandom
            if p.dim() >= 2 or name.endswith("class_embedding"):
                nn.init.normal_(p, std=0.02)
            elif "norm" in name and name.endswith("weight"):
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)

    def rope(self, start, t):
        f = torch.outer(torch.arange(start, start + t, dtype=torch.float32, device=self.inv_freq.device), self.inv_freq)
        e = torch.cat((f, f), -1)
        return e.cos(), e.sin()

    def decode(self, x, start=0, caches=None):
        cos, sin = self.rope(start, x.shape[1])
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if caches is None else caches[i], start)
        return self.norm(x)

    def forward(self, pixels, ids, labels):
        """pixels [B,3,S,S], ids/labels [B,T] text -> (loss, ce, kl). Sequence = image rows then text."""
        x = self.projector(self.vision(pixels))  # [B, NI, d]
        vm = self.vm_head(x)
        h = self.decode(torch.cat([x, self.embed_tokens(ids)], 1))
        logits = self.lm_head(h)  # [B, NI+T, V]
        ni = x.shape[1]
        # position t predicts the label of t+1: image row ni-1 predicts text 0, ..., the last position nothing.
        ce = F.cross_entropy(logits[:, ni - 1:-1].reshape(-1, logits.shape[-1]), labels.reshape(-1))
        # visual words: lm row t-1 is pulled towards softmax(vm) of image position t, t = 1..ni-1 (forward KL).
        lm_logp = F.log_softmax(logits[:, :ni - 1], -1).reshape(-1, logits.shape[-1])
        vm_logp = F.log_softmax(vm[:, 1:], -1).reshape(-1, vm.shape[-1])
        kl = F.kl_div(lm_logp, vm_logp, log_target=True, reduction="batchmean")
        return ce + kl, ce, kl

    @torch.inference_mode()
    def generate(self, pixels, ids, new_tokens):
        """Greedy decoding of one prompt with a KV cache; returns the new ids (prefill's token first)."""
        l, d = self.l, self.l["width"]
        x = torch.cat([self.projector(self.vision(pixels)), self.embed_tokens(ids)], 1)
        t = x.shape[1]
        shape = (1, l["heads"], t + new_tokens, d // l["heads"])
        caches = [(torch.empty(shape, device=x.device), torch.empty(shape, device=x.device)) for _ in self.layers]
        h = self.decode(x, 0, caches)
        tok = self.lm_head(h[:, -1]).argmax(-1)
        out = [int(tok)]
        for step in range(new_tokens - 1):
            h = self.decode(self.embed_tokens(tok)[:, None], t + step, caches)
            tok = self.lm_head(h[:, -1]).argmax(-1)
            out.append(int(tok))
        return out


def step_flops(v, l, batch, text_tokens):
    """Mirror of src/VwLmm.Cli/Commands/StepFlops.cs: (forward linear, patch embedding, attention) FLOPs."""
    np_ = (v["image"] // v["patch"]) ** 2
    tv, cv, fv = np_ + 1, v["width"], v["mlp"]
    d, f, vocab = l["width"], l["mlp"], l["vocab"]
    seq, lv, ll = np_ + text_tokens, v["layers"] + 1 + SELECT_LAYER, l["layers"]
    patch = 2 * batch * np_ * cv * 3 * v["patch"] ** 2
    linear = (lv * 2 * batch * tv * (4 * cv * cv + 2 * cv * fv) + 2 * batch * np_ * (cv * d + d * d)
              + 2 * batch * np_ * d * vocab + ll * 2 * batch * seq * (4 * d * d + 3 * d * f) + 2 * batch * seq * d * vocab)
    attn = lv * 4 * batch * tv * tv * cv + ll * 2 * batch * seq * (seq + 1) * d
    return linear, patch, attn


def blas_config():
    """The loaded BLAS as OpenBLAS describes itself (build, core kernels, threads), found in this process's mappings."""
    import ctypes
    with open("/proc/self/maps") as f:
        paths = sorted({line.split()[-1] for line in f if "blas" in line.split()[-1].lower() and ".so" in line})
    for path in paths:
        lib = ctypes.CDLL(path)
        if hasattr(lib, "openblas_get_config"):
            lib.openblas_get_config.restype = lib.openblas_get_corename.restype = ctypes.c_char_p
            return (f"{lib.openblas_get_config().decode()}; core {lib.openblas_get_corename().decode()}; "
                    f"{lib.openblas_get_num_threads()} threads ({os.path.basename(path)})")
    return ", ".join(paths) or "no BLAS library mapped"


def check_blas(dev):
    """A product against float64, so that a core type pinned by openblas_env cannot time wrong arithmetic."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 257, generator=g), torch.randn(257, 190, generator=g)
    got, want = (x.to(dev) @ y.to(dev)).cpu().double(), x.double() @ y.double()
    err = ((got - want).abs().max() / want.abs().max()).item()
    if not err < 1e-5:
        sys.exit(f"torch_peer.py: float32 matmul is off by {err:.2e} (relative) from float64 with {blas_config()}")


def status_mb(key="VmHWM:"):
    """A kB line of /proc/self/status (VmHWM: the peak resident set; VmRSS:) in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# What torch holds once imported, before any model: vwlmm bench reports its runtime's the same way.
STARTUP_RSS_MB = status_mb("VmRSS:")


def timed(n, fn, sync=lambda: None):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--image-tokens", type=int, default=(VISION["image"] // VISION["patch"]) ** 2)
    ap.add_argument("--text-tokens", type=int, default=64)
    ap.add_argument("--width", type=int, default=LLM["width"])
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--peak-gflops", type=float, help="fp32 peak for percent_of_peak (run_side_by_side.py passes the one vwlmm bench "
                    "measured; default: 112 per CPU thread, a Zen 4 core; none on cuda)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    side = math.isqrt(a.image_tokens)
    if side * side != a.image_tokens:
        sys.exit(f"torch_peer.py: --image-tokens {a.image_tokens} is not a square")
    v = dict(VISION, image=side * VISION["patch"])
    l = dict(LLM, width=a.width, mlp=3 * a.width) if a.width != LLM["width"] else dict(LLM)

    torch.set_num_threads(a.threads)
    torch.manual_seed(SEED)
    dev = torch.device(a.device)
    check_blas(dev)
    sync = (lambda: None) if a.device == "cpu" else torch.cuda.synchronize
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    model = VwLmm(v, l).to(dev)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
                            lr=LR, foreach=True)
    pixels = torch.randn(a.batch, 3, v["image"], v["image"]).to(dev)
    ids = torch.randint(0, l["vocab"], (a.batch, a.text_tokens)).to(dev)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss, _, _ = model(pixels, ids, ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        opt.step()

    def forward1():
        with torch.inference_mode():
            model(pixels[:1], ids[:1], ids[:1])

    timed(a.warmup, train_step, sync)
    train_ms = statistics.median(timed(a.repeats, train_step, sync))
    timed(a.warmup, forward1, sync)
    forward_ms = statistics.median(timed(a.repeats, forward1, sync))
    timed(a.warmup, lambda: model.generate(pixels[:1], ids[:1], 1 + a.decode_tokens), sync)
    prefill, decode = [], []
    for _ in range(a.repeats):
        prefill.append(timed(1, lambda: model.generate(pixels[:1], ids[:1], 1), sync)[0])
        decode.append(timed(1, lambda: model.generate(pixels[:1], ids[:1], 1 + a.decode_tokens), sync)[0] - prefill[-1])

    linear, patch, attn = step_flops(v, l, a.batch, a.text_tokens)
    train_flop = 3 * linear + 2 * patch + 3 * attn
    gflops = train_flop / (train_ms * 1e6)
    peak = a.peak_gflops or (PEAK_GFLOPS_PER_THREAD * a.threads if a.device == "cpu" else None)
    r = {
        "engine": f"torch {torch.__version__}",
        "blas": blas_config(),
        "device": "cpu" if a.device == "cpu" else torch.cuda.get_device_name(),
        "threads": a.threads, "batch": a.batch, "image_tokens": a.image_tokens, "text_tokens": a.text_tokens,
        "width": l["width"], "params": params, "train_gflop_per_step": train_flop / 1e9,
        "train_step_ms": train_ms, "forward_ms": forward_ms, "prefill_ms": statistics.median(prefill),
        "decode_tokens_per_s": a.decode_tokens / (statistics.median(decode) / 1000),
        "gflops": gflops, "percent_of_peak": 100 * gflops / peak if peak else None,
        "peak_rss_mb": status_mb(),
        "startup_rss_mb": STARTUP_RSS_MB,
        # no managed-heap counterpart: torch's tensors come from its C++ allocator, Python objects from pymalloc.
        "allocs_per_step": None,
    }
    if a.json:
        print(json.dumps(r))
    else:
        for k, val in r.items():
            print(f"{k:22} {val}")


if __name__ == "__main__":
    main()
