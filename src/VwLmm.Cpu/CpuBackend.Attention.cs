using VwLmm.Core;

namespace VwLmm.Cpu;

/// <summary>
/// Fused attention. Every query row is handled on its own: its scaled scores go into a per-thread scratch row of Tk
/// floats (never a Tq×Tk matrix), are exponentiated against the row max, and weight the value rows directly into o.
/// Keys visible to a query always form a prefix [0, n) (causal limit and key-padding length are both upper bounds),
/// so masking is a loop bound, not a −∞ fill. Each task first packs the K/V rows of its head into contiguous scratch,
/// K transposed in the forward pass, so that scores are lane-per-key dot products without horizontal sums (a block
/// of one query, as in one-token decoding, takes dot products against the K rows in place instead; the
/// backward pass, which packs once per head for all its queries, reads K and V row-major: with its two score rows per
/// query, transposed copies measured slower there).
/// The backward pass recomputes the probabilities from the saved lse and accumulates dk/dv in packed scratch too.
/// Every output element is computed by the same sequence of operations whatever the thread count.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    /// <summary>Queries per forward task: few enough to balance causal work across workers, enough to amortise packing K/V.</summary>
    private const int AttentionQueryBlock = 64;

    public void AttentionForward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor? keyLengths,
                                 int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale)
    {
        int blocks = (Tq + AttentionQueryBlock - 1) / AttentionQueryBlock;
        var job = new AttentionForwardJob
        {
            O = F(o), Lse = F(lse), Q = F(q), K = F(k), V = F(v), KeyLengths = I(keyLengths),
            Blocks = blocks, Shape = new AttentionShape(B, Tq, Tk, S, H, Hkv, D, causal), Scale = scale,
        };
        ParallelFor(B * H * blocks, job, TasksPerChunk(B * H * blocks, (long)Math.Min(Tq, AttentionQueryBlock) * Tk * D));
    }

    public void AttentionBackward(Tensor? dq, Tensor? dk, Tensor? dv, Tensor dO, Tensor q, Tensor k, Tensor v, Tensor o,
                                  Tensor lse, Tensor? keyLengths, int B, int Tq, int Tk, int S, int H, int Hkv, int D,
                                  bool causal, float scale)
    {
        if (dq is null && dk is null && dv is null) return;
        var job = new AttentionBackwardJob
        {
            DQ = F(dq), DK = F(dk), DV = F(dv), DO = F(dO), Q = F(q), K = F(k), V = F(v), O = F(o), Lse = F(lse),
            KeyLengths = I(keyLengths), Shape = new AttentionShape(B, Tq, Tk, S, H, Hkv, D, causal), Scale = scale,
        };
        ParallelFor(B * Hkv, job, MinTasksPerChunk((long)Tq * Tk * D * (H / Hkv)));
    }

    /// <summary>
    /// Copies n rows of D floats, stride apart, into contiguous dst. K/V rows of one head sit Hkv·D floats apart (4 KiB
    /// for 16 heads of 64), so walking them in place costs a page per row and aliases in L1; packed they stream.
    /// </summary>
    private static void PackRows(float* dst, float* src, long stride, int n, int D)
    {
        long bytes = (long)D * sizeof(float);
        for (int j = 0; j < n; j++) Buffer.MemoryCopy(src + j * stride, dst + (long)j * D, bytes, bytes);
    }

    /// <summary>
    /// dst[d·ld + j] = src[j·stride + d] for j in [0, n), and 0 for j in [n, ld): n rows of D floats, stride apart,
    /// transposed into D rows of ld floats.
    /// </summary>
    private static void PackTransposed(float* dst, float* src, long stride, int n, int ld, int D)
    {
        for (int j = 0; j < n; j++)
        {
            float* row = src + j * stride;
            for (int d = 0; d < D; d++) dst[(long)d * ld + j] = row[d];
        }
        for (int d = 0; d < D; d++) new Span<float>(dst + (long)d * ld + n, ld - n).Clear();
    }

    /// <summary>
    /// Row length of transposed K scratch for n keys: n rounded up to whole vectors of the widest width, plus 16 floats
    /// so that a power-of-two key count does not give a power-of-two row stride, whose rows crowd into few L1 sets.
    /// </summary>
    private static int TransposedRowLength(int n) => ((n + 15) & ~15) + 16;

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
        public int Blocks;
        public AttentionShape Shape;
        public float Scale;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            var sh = Shape;
            int D = sh.D, group = sh.H / sh.Hkv;
            long stride = sh.KvStride;
            int ld = TransposedRowLength(sh.Tk);
            float* s = JobScratch(ld * (D + 1L) + (long)sh.Tk * D);
            float* kt = s + ld, vp = kt + (long)ld * D;
            for (int task = start; task < end; task++)
            {
                int block = task % Blocks, bh = task / Blocks, h = bh % sh.H, b = bh / sh.H;
                int tStart = block * AttentionQueryBlock, tEnd = Math.Min(sh.Tq, tStart + AttentionQueryBlock);
                int keys = sh.VisibleKeys(KeyLengths, b, tEnd - 1); // the block's last query sees the most keys
                int keysLd = TransposedRowLength(keys);
                float* kRows = K + sh.KvBase(b, h / group);
                // A lone query (one-token decoding) reads each key row once: its scores are dot products against
                // the rows in place, and transposing K first would cost more than the scores themselves.
                bool lone = tEnd - tStart == 1;
                if (!lone) PackTransposed(kt, kRows, stride, keys, keysLd, D);
                // Packing V pays for itself only when several queries reuse it.
                float* vRows = V + sh.KvBase(b, h / group);
                long rowStride = stride;
                if (tEnd - tStart >= 4)
                {
                    PackRows(vp, vRows, stride, keys, D);
                    vRows = vp;
                    rowStride = D;
                }
                for (int t = tStart; t < tEnd; t++)
                {
                    float* qi = Q + sh.QueryRow(b, t, h);
                    float* oi = O + sh.QueryRow(b, t, h);
                    float* lsei = Lse + ((long)b * sh.H + h) * sh.Tq + t;
                    new Span<float>(oi, D).Clear();
                    int n = sh.VisibleKeys(KeyLengths, b, t);
                    if (n == 0)
                    {
                        *lsei = float.NegativeInfinity;
                        continue;
                    }
                    if (lone) SimdMath.DotRows<TV>(s, qi, kRows, stride, n, D, Scale);
                    else
                    {
                        // s[j] = Σ_d q[d]·kᵀ[d, j]: a weighted sum of the rows of kᵀ, whole vectors of keys at a time.
                        int columns = (n + TV.Count - 1) / TV.Count * TV.Count;
                        new Span<float>(s, columns).Clear();
                        SimdMath.AddWeightedRows<TV>(s, qi, kt, keysLd, D, columns);
                        SimdMath.Scale<TV>(s, n, Scale);
                    }
                    float max = SimdMath.Max<TV>(s, n);
                    float sum = SimdMath.ExpSum<TV>(s, s, n, max);
                    SimdMath.AddWeightedRows<TV>(oi, s, vRows, rowStride, n, D);
                    SimdMath.Scale<TV>(oi, D, 1f / sum);
                    *lsei = max + MathF.Log(sum);
                }
            }
        }
    }

    /// <summary>Queries whose dk/dv contributions are summed in registers before touching the accumulators.</summary>
    private const int AttentionBackwardBlock = 16;

    /// <summary>
    /// One task per (sample, kv head): it owns that head's dk/dv rows and the dq rows of every query head in its GQA
    /// group, so all accumulation is race-free and in a fixed order. Queries go in blocks: each query's p and scale·dS
    /// rows are scattered into key-major tiles, so dv_j += Σ_t p_tj·dO_t and dk_j += Σ_t dS_tj·q_t each become one
    /// register-held weighted sum per key and block instead of a load/store pass per query.
    /// </summary>
    private struct AttentionBackwardJob : ISimdJob
    {
        public float* DQ, DK, DV, DO, Q, K, V, O, Lse;
        public int* KeyLengths;
        public AttentionShape Shape;
        public float Scale;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            const int Bq = AttentionBackwardBlock;
            var sh = Shape;
            int D = sh.D, group = sh.H / sh.Hkv, tk = sh.Tk;
            long packed = (long)tk * D;
            float* p = JobScratch(tk * (4L * D + 2 + 2 * Bq) + 2 * Bq * D);
            // Scratch: one query's p and dP rows (dP overwritten in place by scale·dS); this head's packed k, v
            // and its dk, dv accumulators (added to the strided outputs at the end of the task); the block's
            // key-major p and dS tiles [Tk, Bq]; the block's packed q and dO rows [Bq, D].
            float* ds = p + tk, kp = ds + tk, vp = kp + packed, dkp = vp + packed, dvp = dkp + packed;
            float* pt = dvp + packed, dst = pt + (long)tk * Bq, qp = dst + (long)tk * Bq, dop = qp + Bq * D;
            for (int task = start; task < end; task++)
            {
                int hkv = task % sh.Hkv, b = task / sh.Hkv;
                int keys = sh.VisibleKeys(KeyLengths, b, sh.Tq - 1); // the last query sees the most keys
                long kvBase = sh.KvBase(b, hkv), stride = sh.KvStride;
                PackRows(kp, K + kvBase, stride, keys, D);
                PackRows(vp, V + kvBase, stride, keys, D);
                new Span<float>(dkp, keys * D).Clear();
                new Span<float>(dvp, keys * D).Clear();
                for (int h = hkv * group; h < (hkv + 1) * group; h++)
                for (int t0 = 0; t0 < sh.Tq; t0 += Bq)
                {
                    int bq = Math.Min(Bq, sh.Tq - t0);
                    int blockKeys = sh.VisibleKeys(KeyLengths, b, t0 + bq - 1);
                    if (blockKeys == 0) continue;
                    PackRows(qp, Q + sh.QueryRow(b, t0, h), (long)sh.H * D, bq, D);
                    PackRows(dop, DO + sh.QueryRow(b, t0, h), (long)sh.H * D, bq, D);
                    for (int r = 0; r < bq; r++)
                    {
                        int t = t0 + r, n = sh.VisibleKeys(KeyLengths, b, t);
                        long row = sh.QueryRow(b, t, h);
                        float* qi = qp + r * D, doi = dop + r * D;
                        if (n > 0)
                        {
                            float lse = Lse[((long)b * sh.H + h) * sh.Tq + t];
                            float di = SimdMath.Dot<TV>(doi, O + row, D);
                            SimdMath.DotRows<TV>(p, qi, kp, D, n, D, Scale);
                            SimdMath.DotRows<TV>(ds, doi, vp, D, n, D, 1f);
                            SimdMath.ExpSum<TV>(p, p, n, lse);
                            for (int j = 0; j < n; j++) ds[j] = Scale * p[j] * (ds[j] - di);
                            if (DQ != null) SimdMath.AddWeightedRows<TV>(DQ + row, ds, kp, D, n, D);
                        }
                        for (int j = 0; j < blockKeys; j++)
                        {
                            pt[j * Bq + r] = j < n ? p[j] : 0;
                            dst[j * Bq + r] = j < n ? ds[j] : 0;
                        }
                    }
                    for (int j = 0; j < blockKeys; j++)
                    {
                        if (DV != null) SimdMath.AddWeightedRows<TV>(dvp + (long)j * D, pt + j * Bq, dop, D, bq, D);
                        if (DK != null) SimdMath.AddWeightedRows<TV>(dkp + (long)j * D, dst + j * Bq, qp, D, bq, D);
                    }
                }
                for (int j = 0; j < keys; j++)
                {
                    if (DK != null) SimdMath.AddInto<TV>(DK + kvBase + j * stride, dkp + (long)j * D, D);
                    if (DV != null) SimdMath.AddInto<TV>(DV + kvBase + j * stride, dvp + (long)j * D, D);
                }
            }
        }
    }
}
