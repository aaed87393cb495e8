using VwLmm.Core;

namespace VwLmm.Cpu;

/// <summary>
/// Fused attention over blocks of queries: a block's scaled scores S = scale·Q Kᵀ go into per-thread scratch (never a
/// Tq×Tk matrix), are exponentiated against each row's max, and weight V in a second product, both run by
/// <see cref="PackedSgemm{TV}"/> on the K/V rows in place. Keys visible to a query always form a prefix [0, n)
/// (causal limit and key-padding length are both upper bounds), so masking is a bound: products run over the block's
/// widest prefix and each row's probabilities are zeroed past its own. A lone query (one-token decoding) takes dot
/// products against the K rows instead. The backward pass recomputes the probabilities from the saved lse and runs its
/// products the same way, accumulating dk/dv in packed scratch. Every output element is computed by the same sequence
/// of operations whatever the thread count.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    /// <summary>
    /// Queries per forward task: a causal block's products run over its widest prefix, so smaller blocks waste less of
    /// the masked triangle; without a mask each block packs every key, so larger ones pack less per product. Measured
    /// (2 threads, D 64): causal T 128 took 81 µs with 64, 62 with 32, 78 with 24 or 16, and T 1024 2,850 → 2,550 µs;
    /// unmasked T 577 with 16 heads 6,050 µs with 64, 7,300 with 32.
    /// </summary>
    private static int AttentionQueryBlock(bool causal) => causal ? 32 : 64;

    public void AttentionForward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor? keyLengths,
                                 int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale)
    {
        int block = AttentionQueryBlock(causal), blocks = (Tq + block - 1) / block;
        var job = new AttentionForwardJob
        {
            O = F(o), Lse = F(lse), Q = F(q), K = F(k), V = F(v), KeyLengths = I(keyLengths),
            Block = block, Blocks = blocks, Shape = new AttentionShape(B, Tq, Tk, S, H, Hkv, D, causal), Scale = scale,
        };
        ParallelFor(B * H * blocks, job, TasksPerChunk(B * H * blocks, (long)Math.Min(Tq, block) * Tk * D));
    }

    public void AttentionBackward(Tensor? dq, Tensor? dk, Tensor? dv, Tensor dO, Tensor q, Tensor k, Tensor v, Tensor o,
                                  Tensor lse, Tensor? keyLengths, int B, int Tq, int Tk, int S, int H, int Hkv, int D,
                                  bool causal, float scale, bool accumulate)
    {
        if (dq is null && dk is null && dv is null) return;
        var job = new AttentionBackwardJob
        {
            DQ = F(dq), DK = F(dk), DV = F(dv), DO = F(dO), Q = F(q), K = F(k), V = F(v), O = F(o), Lse = F(lse),
            KeyLengths = I(keyLengths), Shape = new AttentionShape(B, Tq, Tk, S, H, Hkv, D, causal), Scale = scale,
            Accumulate = accumulate,
        };
        ParallelFor(B * Hkv, job, MinTasksPerChunk((long)Tq * Tk * D * (H / Hkv)));
    }

    /// <summary>
    /// Row length of a block's score scratch for n keys: n rounded up to 16 floats, plus 16 so that a power-of-two key
    /// count does not give a power-of-two row stride, whose rows crowd into few L1 sets.
    /// </summary>
    private static int ScoreRowLength(int n) => ((n + 15) & ~15) + 16;

    private readonly record struct AttentionShape(int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool Causal)
    {
        /// <summary>Number of keys query t of sample b sees: they are keys [0, n).</summary>
        public int VisibleKeys(int* keyLengths, int b, int t)
        {
            int n = keyLengths is null ? Tk : Math.Min(Tk, keyLengths[b]);
            if (Causal) n = Math.Min(n, t + Tk - Tq + 1);
            return Math.Max(n, 0);
        }

        /// <summary>Offset of row (b, t, h) in a [B,Tq,H,D] tensor.</summary>
        public long QueryRow(int b, int t, int h) => (((long)b * Tq + t) * H + h) * D;

        /// <summary>Offset of key/value row (b, 0, hkv) in a [B,S,Hkv,D] tensor; rows j follow at j·KvStride.</summary>
        public long KvBase(int b, int hkv) => ((long)b * S * Hkv + hkv) * D;

        public long KvStride => (long)Hkv * D;
    }

    private struct AttentionForwardJob : ISimdJob
    {
        public float* O, Lse, Q, K, V;
        public int* KeyLengths;
        public int Block, Blocks;
        public AttentionShape Shape;
        public float Scale;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            var sh = Shape;
            int D = sh.D, group = sh.H / sh.Hkv, ld = ScoreRowLength(sh.Tk), rows = (int)((long)sh.H * D);
            long stride = sh.KvStride;
            float* gemm = JobScratch(PackedSgemm.ScratchFloats + (long)Block * (ld + 1));
            float* s = gemm + PackedSgemm.ScratchFloats, inverse = s + (long)Block * ld;
            for (int task = start; task < end; task++)
            {
                int block = task % Blocks, bh = task / Blocks, h = bh % sh.H, b = bh / sh.H;
                int tStart = block * Block, tEnd = Math.Min(sh.Tq, tStart + Block), bq = tEnd - tStart;
                int keys = sh.VisibleKeys(KeyLengths, b, tEnd - 1); // the block's last query sees the most keys
                float* kRows = K + sh.KvBase(b, h / group), vRows = V + sh.KvBase(b, h / group);
                float* q0 = Q + sh.QueryRow(b, tStart, h), o0 = O + sh.QueryRow(b, tStart, h);
                float* lse0 = Lse + ((long)b * sh.H + h) * sh.Tq + tStart;
                // S = scale·Q Kᵀ over the block's keys. A lone query (one-token decoding) reads each key row once: dot
                // products against the rows in place, where packing them for a product would cost more than the scores.
                if (bq == 1) SimdMath.DotRows<TV>(s, q0, kRows, stride, keys, D, Scale);
                else PackedSgemm<TV>.Run(new(false, true, bq, keys, D, Scale, q0, rows, kRows, (int)stride, 0, s, ld), 0, bq, 0, keys, gemm);
                // Each row's softmax numerators, zero past its own keys (a row with none is all zero, its lse −∞).
                for (int r = 0; r < bq; r++)
                {
                    float* row = s + (long)r * ld;
                    int n = sh.VisibleKeys(KeyLengths, b, tStart + r);
                    if (n == 0)
                    {
                        lse0[r] = float.NegativeInfinity;
                        inverse[r] = 0;
                    }
                    else
                    {
                        float max = SimdMath.Max<TV>(row, n);
                        float sum = SimdMath.ExpSum<TV>(row, row, n, max);
                        lse0[r] = max + MathF.Log(sum);
                        inverse[r] = 1f / sum;
                    }
                    new Span<float>(row + n, keys - n).Clear();
                }
                // O = P V, then each row divided by its sum. With no keys at all the product sums nothing: O = 0.
                if (bq == 1)
                {
                    new Span<float>(o0, D).Clear();
                    SimdMath.AddWeightedRows<TV>(o0, s, vRows, stride, keys, D);
                }
                else PackedSgemm<TV>.Run(new(false, false, bq, D, keys, 1f, s, ld, vRows, (int)stride, 0, o0, rows), 0, bq, 0, D, gemm);
                for (int r = 0; r < bq; r++) SimdMath.Scale<TV>(o0 + (long)r * rows, D, inverse[r]);
            }
        }
    }

    /// <summary>Queries per backward block: each block's five products run as GEMMs over its rows.</summary>
    private const int AttentionBackwardBlock = 64;

    /// <summary>
    /// One task per (sample, kv head): it owns that head's dk/dv rows and the dq rows of every query head in its GQA
    /// group, so all accumulation is race-free and in a fixed order. Per block of queries: P = exp(scale·Q Kᵀ − lse)
    /// and dP = dO Vᵀ as products, dS = scale·P∘(dP − rowsum(dO∘O)) row by row (both zero past each query's keys),
    /// then dq += dS K, dv += Pᵀ dO and dk += dSᵀ Q as products accumulating into their outputs (dq's product stores
    /// when not Accumulate, and dk, dv are copied from the task's accumulators).
    /// </summary>
    private struct AttentionBackwardJob : ISimdJob
    {
        public float* DQ, DK, DV, DO, Q, K, V, O, Lse;
        public int* KeyLengths;
        public AttentionShape Shape;
        public float Scale;
        public bool Accumulate;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            const int Bq = AttentionBackwardBlock;
            var sh = Shape;
            int D = sh.D, group = sh.H / sh.Hkv, ld = ScoreRowLength(sh.Tk), rows = (int)((long)sh.H * D);
            long packed = (long)sh.Tk * D;
            // Scratch: the products' own; the block's P and dS rows; this head's dk, dv accumulators (added to the
            // strided outputs at the end of the task).
            float* gemm = JobScratch(PackedSgemm.ScratchFloats + 2L * Bq * ld + 2 * packed);
            float* p = gemm + PackedSgemm.ScratchFloats, ds = p + (long)Bq * ld, dkp = ds + (long)Bq * ld, dvp = dkp + packed;
            for (int task = start; task < end; task++)
            {
                int hkv = task % sh.Hkv, b = task / sh.Hkv;
                int keys = sh.VisibleKeys(KeyLengths, b, sh.Tq - 1); // the last query sees the most keys
                long kvBase = sh.KvBase(b, hkv), stride = sh.KvStride;
                float* kRows = K + kvBase, vRows = V + kvBase;
                new Span<float>(dkp, keys * D).Clear();
                new Span<float>(dvp, keys * D).Clear();
                for (int h = hkv * group; h < (hkv + 1) * group; h++)
                for (int t0 = 0; t0 < sh.Tq; t0 += Bq)
                {
                    int bq = Math.Min(Bq, sh.Tq - t0);
                    int n0 = sh.VisibleKeys(KeyLengths, b, t0 + bq - 1);
                    long row0 = sh.QueryRow(b, t0, h);
                    if (n0 == 0)
                    {
                        if (DQ != null && !Accumulate)
                            for (int r = 0; r < bq; r++) new Span<float>(DQ + row0 + (long)r * rows, D).Clear();
                        continue;
                    }
                    float* q0 = Q + row0, do0 = DO + row0;
                    PackedSgemm<TV>.Run(new(false, true, bq, n0, D, Scale, q0, rows, kRows, (int)stride, 0, p, ld), 0, bq, 0, n0, gemm);
                    PackedSgemm<TV>.Run(new(false, true, bq, n0, D, 1f, do0, rows, vRows, (int)stride, 0, ds, ld), 0, bq, 0, n0, gemm);
                    for (int r = 0; r < bq; r++)
                    {
                        int t = t0 + r, n = sh.VisibleKeys(KeyLengths, b, t);
                        float* pr = p + (long)r * ld, dsr = ds + (long)r * ld;
                        if (n > 0)
                        {
                            float di = SimdMath.Dot<TV>(do0 + (long)r * rows, O + row0 + (long)r * rows, D);
                            SimdMath.ExpSum<TV>(pr, pr, n, Lse[((long)b * sh.H + h) * sh.Tq + t]);
                            var scale = TV.Create(Scale);
                            var d = TV.Create(di);
                            int j = 0;
                            for (; j + TV.Count <= n; j += TV.Count) (scale * TV.Load(pr + j) * (TV.Load(dsr + j) - d)).Store(dsr + j);
                            for (; j < n; j++) dsr[j] = Scale * pr[j] * (dsr[j] - di);
                        }
                        new Span<float>(pr + n, n0 - n).Clear();
                        new Span<float>(dsr + n, n0 - n).Clear();
                    }
                    if (DQ != null) PackedSgemm<TV>.Run(new(false, false, bq, D, n0, 1f, ds, ld, kRows, (int)stride, Accumulate ? 1f : 0f, DQ + row0, rows), 0, bq, 0, D, gemm);
                    if (DV != null) PackedSgemm<TV>.Run(new(true, false, n0, D, bq, 1f, p, ld, do0, rows, 1f, dvp, D), 0, n0, 0, D, gemm);
                    if (DK != null) PackedSgemm<TV>.Run(new(true, false, n0, D, bq, 1f, ds, ld, q0, rows, 1f, dkp, D), 0, n0, 0, D, gemm);
                }
                for (int j = 0; j < (Accumulate ? keys : sh.S); j++)
                {
                    float* dk = DK + kvBase + j * stride, dv = DV + kvBase + j * stride;
                    if (Accumulate)
                    {
                        if (DK != null) SimdMath.AddInto<TV>(dk, dkp + (long)j * D, D);
                        if (DV != null) SimdMath.AddInto<TV>(dv, dvp + (long)j * D, D);
                    }
                    else if (j < keys)
                    {
                        if (DK != null) new Span<float>(dkp + (long)j * D, D).CopyTo(new Span<float>(dk, D));
                        if (DV != null) new Span<float>(dvp + (long)j * D, D).CopyTo(new Span<float>(dv, D));
                    }
                    else
                    {
                        if (DK != null) new Span<float>(dk, D).Clear();
                        if (DV != null) new Span<float>(dv, D).Clear();
                    }
                }
            }
        }
    }
}
