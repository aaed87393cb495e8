using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>
/// The shapes of one training step that <see cref="KernelLab"/> times kernels at: B samples, each one image of
/// ImageSize² pixels cut into PatchSize² patches (vision sequence = patches + CLS) followed by TextTokens text tokens in the
/// LLM (LLM sequence = ImageTokens + TextTokens); Parameters sizes the optimiser kernels.
/// </summary>
public sealed record KernelLabShape(int Batch, int Channels, int ImageSize, int PatchSize, int VisionWidth, int VisionHeads, int VisionMlp,
                                    int ImageTokens, int TextTokens, int LlmWidth, int LlmHeads, int LlmKvHeads, int LlmFfn, int Vocab,
                                    long Parameters)
{
    public int VisionTokens => (ImageSize / PatchSize) * (ImageSize / PatchSize) + 1;
    public int LlmTokens => ImageTokens + TextTokens;
}

/// <summary>One timed op: the kernels/&lt;Module&gt;.cu file (or cuBLAS) it launches, the shape, the median time of one
/// call and its <see cref="KernelCost"/>.</summary>
public sealed record KernelTiming(string Op, string Module, string Shape, double Milliseconds, KernelCost Cost)
{
    public double GBs => Cost.Bytes / (Milliseconds * 1e6);
    public double Tflops => Cost.Flops / (Milliseconds * 1e9);

    /// <summary>The roofline on <paramref name="peak"/>: whether bandwidth or fp32 compute bounds this op, and the bound's
    /// time as a percentage of the measured time (100 = at the roofline).</summary>
    public (string Bound, double Percent) OfPeak(DevicePeak peak)
    {
        double memoryMs = Cost.Bytes / (peak.BandwidthGBs * 1e6), computeMs = Cost.Flops / (peak.Fp32Tflops * 1e9);
        return memoryMs >= computeMs ? ("memory", 100 * memoryMs / Milliseconds) : ("fp32", 100 * computeMs / Milliseconds);
    }
}

/// <summary>
/// Times every kernel family of kernels/*.cu and the cuBLAS GEMM through <see cref="CudaBackend"/>'s ops: per op, W
/// untimed calls, then R calls each bracketed by timing events on the stream, with a write of twice the L2 size queued
/// before each so no call finds its inputs in L2 from the one before. Reports the median. Times include whatever host
/// work a launcher does between its kernels (the vocab launchers read targets back, the scatter-add sorts its map on
/// the host). Inputs are uniform in [−1, 1); accumulated outputs grow over the repeats, which does not change the work.
/// </summary>
public sealed class KernelLab(CudaBackend backend, int repeats, int warmup)
{
    /// <summary>The optimiser kernels stream their inputs: 2^26 elements (1 GiB over param, grad, m, v) reach the
    /// bandwidth plateau without needing a 7B model's 112 GB.</summary>
    public const long MaxOptimizerElements = 1L << 26;
    /// <summary>Parameters the list rows split the optimiser's elements into (bench-5m has 97).</summary>
    public const int ListEntries = 100;

    private const ulong Seed = 4321;

    private sealed record Case(string Op, string Module, string Shape, KernelCost Cost, Action Run);

    public IReadOnlyList<KernelTiming> Run(KernelLabShape shape)
    {
        if (repeats < 1) throw new ArgumentOutOfRangeException(nameof(repeats), repeats, "at least one timed repeat");
        var runtime = backend.Runtime;
        using var flush = backend.Allocate(2 * runtime.L2CacheBytes);
        nint start = runtime.CreateEvent(), end = runtime.CreateEvent();
        try
        {
            var timings = new List<KernelTiming>();
            foreach (var build in Families)
            {
                using var buffers = new Buffers(backend, new Rng(Seed));
                foreach (var c in build(shape, buffers))
                {
                    for (int i = 0; i < warmup; i++) c.Run();
                    var ms = new double[repeats];
                    for (int r = 0; r < repeats; r++)
                    {
                        runtime.Memset32(flush.Ptr, (uint)r, flush.Bytes / sizeof(float));
                        runtime.RecordEvent(start);
                        c.Run();
                        runtime.RecordEvent(end);
                        ms[r] = runtime.ElapsedMilliseconds(start, end);
                    }
                    timings.Add(new KernelTiming(c.Op, c.Module, c.Shape, Median(ms), c.Cost));
                }
            }
            return timings;
        }
        finally
        {
            runtime.DestroyEvent(start);
            runtime.DestroyEvent(end);
        }
    }

    private Func<KernelLabShape, Buffers, IEnumerable<Case>>[] Families => [Gemms, Attention, Norms, PatchEmbed, Vocab, Rope, Embedding, Elementwise, Optimizer];

    private IEnumerable<Case> Gemms(KernelLabShape s, Buffers b)
    {
        int m = s.Batch * s.LlmTokens;
        // The LLM's MLP up projection and the LM head: x [M,K] · Wᵀ with W [N,K], as Linear calls it.
        foreach (var (what, n) in new[] { ("MLP up", s.LlmFfn), ("LM head", s.Vocab) })
        {
            var x = b.Random(m, s.LlmWidth);
            var w = b.Random(n, s.LlmWidth);
            var y = b.Zeros(m, n);
            yield return new Case($"gemm {what}", "cuBLAS", $"M={m} N={n} K={s.LlmWidth}", KernelCost.Gemm(m, n, s.LlmWidth),
                () => backend.Gemm(false, true, m, n, s.LlmWidth, 1f, x, s.LlmWidth, 0, w, s.LlmWidth, 0, 0f, y, n, 0, 1));
        }
        // A decoded token's gate/up stack (Ops.LinearStack at M = 1): one batched matrix-vector product over both weight
        // matrices, which bounds it by reading them.
        int f = s.LlmFfn, d = s.LlmWidth;
        var xd = b.Random(1, d);
        var wd = b.Random(2 * f, d);
        var yd = b.Zeros(2, f);
        yield return new Case("gemm decode gate/up", "cuBLAS", $"M=1 N={f} K={d} ×2", KernelCost.Gemm(1, f, d, 2),
            () => backend.Gemm(false, true, 1, f, d, 1f, xd, d, 0, wd, d, (long)f * d, 0f, yd, f, f, 2));
        // The same stack stored in bf16 for inference: gemv_bf16 reads half the bytes.
        var wb = b.Bf16(2 * f, d);
        yield return new Case("gemv bf16 decode gate/up", "gemm", $"M=1 N={f} K={d} ×2", KernelCost.GemmBf16(1, f, d, 2),
            () => backend.Gemm(false, true, 1, f, d, 1f, xd, d, 0, wb, d, (long)f * d, 0f, yd, f, f, 2));
    }

    private IEnumerable<Case> Attention(KernelLabShape s, Buffers b)
    {
        foreach (var (tower, T, H, Hkv, D, causal) in new[]
                 {
                     ("vision", s.VisionTokens, s.VisionHeads, s.VisionHeads, s.VisionWidth / s.VisionHeads, false),
                     ("LLM", s.LlmTokens, s.LlmHeads, s.LlmKvHeads, s.LlmWidth / s.LlmHeads, true),
                 })
        {
            int B = s.Batch;
            var q = b.Random(B, T, H, D);
            var k = b.Random(B, T, Hkv, D);
            var v = b.Random(B, T, Hkv, D);
            var o = b.Zeros(B, T, H, D);
            var lse = b.Zeros(B, H, T);
            var dO = b.Random(B, T, H, D);
            var dq = b.Zeros(B, T, H, D);
            var dk = b.Zeros(B, T, Hkv, D);
            var dv = b.Zeros(B, T, Hkv, D);
            float scale = 1f / MathF.Sqrt(D);
            string shape = $"B={B} T={T} H={H}/{Hkv} D={D}{(causal ? " causal" : "")}";
            yield return new Case($"attention fwd ({tower})", "attention", shape, KernelCost.AttentionForward(B, T, T, H, Hkv, D, causal),
                () => backend.AttentionForward(o, lse, q, k, v, null, B, T, T, T, H, Hkv, D, causal, scale));
            yield return new Case($"attention bwd ({tower})", "attention", shape,
                KernelCost.AttentionBackward(B, T, T, H, Hkv, D, causal),
                () => backend.AttentionBackward(dq, dk, dv, dO, q, k, v, o, lse, null, B, T, T, T, H, Hkv, D, causal, scale, accumulate: true));
            if (!causal) continue;
            // A decoded token of each sample over T cached keys: the split-key decode kernels.
            var q1 = b.Random(B, 1, H, D);
            var o1 = b.Zeros(B, 1, H, D);
            var lse1 = b.Zeros(B, H, 1);
            yield return new Case($"attention decode ({tower})", "attention", $"B={B} Tq=1 Tk={T} H={H}/{Hkv} D={D}",
                KernelCost.AttentionForward(B, 1, T, H, Hkv, D, causal: false),
                () => backend.AttentionForward(o1, lse1, q1, k, v, null, B, 1, T, T, H, Hkv, D, false, scale));
        }
    }

    private IEnumerable<Case> Norms(KernelLabShape s, Buffers b)
    {
        int nv = s.Batch * s.VisionTokens, cv = s.VisionWidth;
        var x = b.Random(nv, cv);
        var gamma = b.Random(cv);
        var beta = b.Random(cv);
        var y = b.Zeros(nv, cv);
        var mean = b.Zeros(nv);
        var rstd = b.Zeros(nv);
        var dy = b.Random(nv, cv);
        var dx = b.Zeros(nv, cv);
        var dgamma = b.Zeros(cv);
        var dbeta = b.Zeros(cv);
        string lnShape = $"N={nv} C={cv}";
        yield return new Case("layernorm fwd", "layernorm", lnShape, KernelCost.LayerNormForward(nv, cv),
            () => backend.LayerNormForward(y, mean, rstd, x, gamma, beta, nv, cv, 1e-5f));
        yield return new Case("layernorm bwd", "layernorm", lnShape, KernelCost.LayerNormBackward(nv, cv),
            () => backend.LayerNormBackward(dx, dgamma, dbeta, dy, x, gamma, mean, rstd, nv, cv));

        int nl = s.Batch * s.LlmTokens, cl = s.LlmWidth;
        var xl = b.Random(nl, cl);
        var gl = b.Random(cl);
        var yl = b.Zeros(nl, cl);
        var rl = b.Zeros(nl);
        var dyl = b.Random(nl, cl);
        var dxl = b.Zeros(nl, cl);
        var dgl = b.Zeros(cl);
        string rmsShape = $"N={nl} C={cl}";
        yield return new Case("rmsnorm fwd", "layernorm", rmsShape, KernelCost.RmsNormForward(nl, cl),
            () => backend.RmsNormForward(yl, rl, xl, gl, nl, cl, 1e-5f));
        yield return new Case("rmsnorm bwd", "layernorm", rmsShape, KernelCost.RmsNormBackward(nl, cl),
            () => backend.RmsNormBackward(dxl, dgl, dyl, xl, gl, rl, nl, cl));
    }

    private IEnumerable<Case> PatchEmbed(KernelLabShape s, Buffers b)
    {
        int B = s.Batch, Cin = s.Channels, side = s.ImageSize, P = s.PatchSize, C = s.VisionWidth, np = (side / P) * (side / P);
        var img = b.Random(B, Cin, side, side);
        var w = b.Random(C, Cin, P, P);
        var y = b.Zeros(B, np, C);
        var dy = b.Random(B, np, C);
        var dw = b.Zeros(C, Cin, P, P);
        string shape = $"B={B} {Cin}×{side}² P={P} C={C}";
        yield return new Case("patch_embed fwd", "patch_embed", shape, KernelCost.PatchEmbedForward(B, Cin, side, side, P, C),
            () => backend.PatchEmbedForward(y, img, w, B, Cin, side, side, P, C));
        yield return new Case("patch_embed bwd", "patch_embed", shape, KernelCost.PatchEmbedBackward(B, Cin, side, side, P, C),
            () => backend.PatchEmbedBackward(dw, dy, img, B, Cin, side, side, P, C));
    }

    private IEnumerable<Case> Vocab(KernelLabShape s, Buffers b)
    {
        int V = s.Vocab, rows = s.Batch * s.TextTokens;
        var logits = b.Random(rows, V);
        var dlogits = b.Zeros(rows, V);
        var losses = b.Zeros(rows);
        var targets = b.Ints(Enumerable.Range(0, rows).Select(i => (int)((long)i * 7919 % V)).ToArray());
        yield return new Case("cross-entropy + grad", "vocab", $"N={rows} V={V}", KernelCost.CrossEntropyWithGradient(rows, V),
            () => backend.CrossEntropy(losses, dlogits, logits, targets, rows, V, 1f / rows, accumulate: true));

        // One pair per image token: the LM row at that token's position, the VM row of that token; no row repeats.
        int pairs = s.Batch * s.ImageTokens, lmRows = s.Batch * s.LlmTokens;
        var lm = b.Random(lmRows, V);
        var vm = b.Random(pairs, V);
        var dLm = b.Zeros(lmRows, V);
        var dVm = b.Zeros(pairs, V);
        var klLosses = b.Zeros(pairs);
        var pairMap = new int[2 * pairs];
        for (int i = 0; i < pairs; i++)
        {
            pairMap[2 * i] = i / s.ImageTokens * s.LlmTokens + i % s.ImageTokens;
            pairMap[2 * i + 1] = i;
        }
        var pairTensor = b.Ints(pairMap);
        yield return new Case("visual-word KL + grads", "vocab", $"pairs={pairs} V={V}", KernelCost.VisualWordKlWithGradients(pairs, V),
            () => backend.VisualWordKl(klLosses, dLm, dVm, lm, vm, pairTensor, pairs, V, reverse: false, 1f / pairs));
    }

    private IEnumerable<Case> Rope(KernelLabShape s, Buffers b)
    {
        int B = s.Batch, T = s.LlmTokens, H = s.LlmHeads, D = s.LlmWidth / s.LlmHeads;
        var x = b.Random(B, T, H, D);
        var y = b.Zeros(B, T, H, D);
        var dx = b.Zeros(B, T, H, D);
        var positions = b.Ints(Enumerable.Range(0, B * T).Select(i => i % T).ToArray());
        string shape = $"B={B} T={T} H={H} D={D}";
        yield return new Case("rope fwd", "rope", shape, KernelCost.RopeForward(B, T, H, D),
            () => backend.RopeForward(y, x, positions, B, T, H, D, 10000f));
        yield return new Case("rope bwd", "rope", shape, KernelCost.RopeBackward(B, T, H, D),
            () => backend.RopeBackward(dx, x, positions, B, T, H, D, 10000f, accumulate: true));
    }

    private IEnumerable<Case> Embedding(KernelLabShape s, Buffers b)
    {
        // The LLaVA splice: each sample's image rows come from the image features, its text rows from the token table.
        int R = s.Batch * s.LlmTokens, C = s.LlmWidth, images = s.Batch * s.ImageTokens;
        var map = new int[R];
        for (int r = 0; r < R; r++)
        {
            int b0 = r / s.LlmTokens, t = r % s.LlmTokens;
            map[r] = t < s.ImageTokens ? -2 - (b0 * s.ImageTokens + t) : (int)((long)r * 7919 % s.Vocab);
        }
        long destinations = map.Distinct().Count();
        var table = b.Random(s.Vocab, C);
        var features = b.Random(images, C);
        var y = b.Zeros(R, C);
        var dTable = b.Zeros(s.Vocab, C);
        var dFeatures = b.Zeros(images, C);
        var mapTensor = b.Ints(map);
        string shape = $"R={R} C={C} ({images} image rows)";
        yield return new Case("embedding gather", "embedding", shape, KernelCost.GatherRows(R, C),
            () => backend.GatherRows(y, table, features, mapTensor, R, C));
        yield return new Case("embedding scatter-add", "embedding", shape, KernelCost.GatherRowsBackward(R, C, destinations),
            () => backend.GatherRowsBackward(dTable, dFeatures, y, mapTensor, R, C));

        // A decode step's keys of one layer into a cache holding every sample's whole sequence, at each sample's last position.
        int B = s.Batch, T = s.LlmTokens, kv = s.LlmKvHeads * (s.LlmWidth / s.LlmHeads);
        var cache = b.Zeros(B * T, kv);
        var keys = b.Random(B, kv);
        var slots = b.Ints(Enumerable.Range(0, B).Select(i => i * T + T - 1).ToArray());
        yield return new Case("kv append (scatter)", "embedding", $"R={B} C={kv} (cache of {B}×{T} rows)", KernelCost.ScatterRows(B, kv),
            () => backend.ScatterRows(cache, keys, slots, B, kv));
    }

    private IEnumerable<Case> Elementwise(KernelLabShape s, Buffers b)
    {
        long nv = (long)s.Batch * s.VisionTokens * s.VisionMlp;
        var x = b.Random(nv);
        var y = b.Zeros(nv);
        var dx = b.Zeros(nv);
        yield return new Case("quick_gelu fwd", "elementwise", $"n={nv}", KernelCost.ActivationForward(nv),
            () => backend.ActivationForward(y, x, nv, Activation.QuickGelu));
        yield return new Case("quick_gelu bwd", "elementwise", $"n={nv}", KernelCost.ActivationBackward(nv),
            () => backend.ActivationBackward(dx, y, x, nv, Activation.QuickGelu, accumulate: true));

        long nl = (long)s.Batch * s.LlmTokens * s.LlmFfn;
        var gate = b.Random(nl);
        var up = b.Random(nl);
        var yl = b.Zeros(nl);
        var dGate = b.Zeros(nl);
        var dUp = b.Zeros(nl);
        yield return new Case("swiglu fwd", "elementwise", $"n={nl}", KernelCost.SwiGluForward(nl),
            () => backend.SwiGluForward(yl, gate, up, nl));
        yield return new Case("swiglu bwd", "elementwise", $"n={nl}", KernelCost.SwiGluBackward(nl),
            () => backend.SwiGluBackward(dGate, dUp, yl, gate, up, nl, accumulate: true));

        long nd = (long)s.Batch * s.LlmTokens * s.LlmWidth;
        var xd = b.Random(nd);
        var yd = b.Zeros(nd);
        yield return new Case("dropout", "elementwise", $"n={nd}", KernelCost.Dropout(nd),
            () => backend.Dropout(yd, xd, nd, 0.1f, 7, accumulate: false));
    }

    private IEnumerable<Case> Optimizer(KernelLabShape s, Buffers b)
    {
        long n = Math.Min(s.Parameters, MaxOptimizerElements);
        var param = b.Random(n);
        var grad = b.Random(n);
        var m = b.Zeros(n);
        var v = b.Zeros(n);
        var result = b.Zeros(1);
        int step = 0;
        yield return new Case("adamw", "adamw", $"n={n}", KernelCost.AdamW(n),
            () => backend.AdamW(param, grad, m, v, n, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, ++step, 1f));
        yield return new Case("sum of squares", "reduce", $"n={n}", KernelCost.SumSquares(n),
            () => backend.SumSquares(result, 0, grad, n));

        // The same n split into ListEntries parameters of a ParameterList, as AdamW runs them: the cost is the
        // per-tensor kernels' and the table adds ~50 bytes per entry, so a gap to the rows above is list overhead.
        long each = n / ListEntries;
        Tensor[] Split(Tensor t) => [.. Enumerable.Range(0, ListEntries).Select(i => t.View(i * each, new Shape(checked((int)each))))];
        var list = new ParameterList(Split(param), Split(grad), Split(m), Split(v), Enumerable.Repeat(0.01f, ListEntries).ToArray());
        var sums = b.Zeros(ListEntries);
        long listed = each * ListEntries;
        string shape = $"{ListEntries}×{each}";
        try
        {
            yield return new Case("adamw (list)", "adamw", shape, KernelCost.AdamW(listed),
                () => backend.AdamW(list, 1e-4f, 0.9f, 0.999f, 1e-8f, ++step, 1f));
            yield return new Case("zero gradients (list)", "adamw", shape, KernelCost.Fill(listed),
                () => backend.ZeroGradients(list));
            yield return new Case("sums of squares (list)", "reduce", shape, KernelCost.SumSquares(listed),
                () => backend.GradientSumsOfSquares(sums, list));
        }
        finally
        {
            list.Dispose();
        }
    }

    private static double Median(double[] xs)
    {
        var s = (double[])xs.Clone();
        Array.Sort(s);
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    /// <summary>Device tensors of one kernel family, freed together when the family is done.</summary>
    private sealed class Buffers(CudaBackend backend, Rng rng) : IDisposable
    {
        private readonly List<DeviceBuffer> _owned = [];

        public Tensor Zeros(params int[] dims) => Zeros(new Shape(dims));
        public Tensor Zeros(long n) => Zeros(new Shape(checked((int)n)));

        private Tensor Zeros(Shape shape)
        {
            var t = Allocate(shape, DType.F32);
            backend.Fill(t, 0f);
            return t;
        }

        public Tensor Random(params int[] dims) => Random(new Shape(dims));
        public Tensor Random(long n) => Random(new Shape(checked((int)n)));

        private Tensor Random(Shape shape)
        {
            var t = Allocate(shape, DType.F32);
            var host = new float[shape.Numel];
            for (long i = 0; i < host.LongLength; i++) host[i] = Uniform();
            backend.Upload<float>(t, host);
            return t;
        }

        /// <summary>Uniform values in [−1, 1) truncated to bf16.</summary>
        public Tensor Bf16(params int[] dims)
        {
            var shape = new Shape(dims);
            var t = Allocate(shape, DType.BF16);
            var host = new ushort[shape.Numel];
            for (long i = 0; i < host.LongLength; i++) host[i] = (ushort)(BitConverter.SingleToUInt32Bits(Uniform()) >> 16);
            backend.Upload<ushort>(t, host);
            return t;
        }

        private float Uniform() => (float)(2 * rng.NextDouble() - 1);

        public Tensor Ints(int[] values)
        {
            var t = Allocate(new Shape(values.Length), DType.I32);
            backend.Upload<int>(t, values);
            return t;
        }

        private Tensor Allocate(Shape shape, DType dtype)
        {
            var buffer = backend.Allocate(shape.Numel * dtype.Size());
            _owned.Add(buffer);
            return Tensor.FromBuffer(backend, buffer, shape, dtype);
        }

        public void Dispose()
        {
            foreach (var buffer in _owned) buffer.Dispose();
        }
    }
}
