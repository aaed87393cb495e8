using System.Buffers;
using VwLmm.Core;

namespace VwLmm.Cpu;

/// <summary>
/// Fused attention. Every query row is handled on its own: its scaled scores go into a per-worker scratch row of Tk
/// floats (never a Tq×Tk matrix), are exponentiated against the row max, and weight the value rows directly into o.
/// Keys visible to a query always form a prefix [0, n) (causal limit and key-padding length are both upper bounds),
/// so masking is a loop bound, not a −∞ fill. The backward pass recomputes the probabilities from the saved lse.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    /// <summary>Queries per forward task: small enough to balance causal work across workers, large enough to amortise dispatch.</summary>
    private const int AttentionQueryBlock = 16;

    public void AttentionForward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor? keyLengths,
                                 int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale)
    {
        int blocks = (Tq + AttentionQueryBlock - 1) / AttentionQueryBlock;
        var job = new AttentionForwardJob
        {
            O = F(o), Lse = F(lse), Q = F(q), K = F(k), V = F(v), KeyLengths = I(keyLengths),
            Blocks = blocks, Shape = new AttentionShape(B, Tq, Tk, S, H, Hkv, D, causal), Scale = scale,
        };
        Pool.For(B * H * blocks, job);
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
        Pool.For(B * Hkv, job);
    }

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

    private struct AttentionForwardJob : IRangeJob
    {
        public float* O, Lse, Q, K, V;
        public int* KeyLengths;
        public int Blocks;
        public AttentionShape Shape;
        public float Scale;

        public readonly void Execute(int start, int end)
        {
            var sh = Shape;
            int D = sh.D, group = sh.H / sh.Hkv;
            long stride = sh.KvStride;
            float[] rented = ArrayPool<float>.Shared.Rent(Math.Max(sh.Tk, 1));
            try
            {
                fixed (float* s = rented)
                {
                    for (int task = start; task < end; task++)
                    {
                        int block = task % Blocks, bh = task / Blocks, h = bh % sh.H, b = bh / sh.H;
                        float* kb = K + sh.KvBase(b, h / group);
                        float* vb = V + sh.KvBase(b, h / group);
                        int tEnd = Math.Min(sh.Tq, (block + 1) * AttentionQueryBlock);
                        for (int t = block * AttentionQueryBlock; t < tEnd; t++)
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
                            for (int j = 0; j < n; j++) s[j] = Scale * SimdMath.Dot(qi, kb + j * stride, D);
                            float max = SimdMath.Max(s, n);
                            float sum = SimdMath.ExpSum(s, s, n, max);
                            for (int j = 0; j < n; j++) SimdMath.Axpy(oi, s[j], vb + j * stride, D);
                            SimdMath.Scale(oi, D, 1f / sum);
                            *lsei = max + MathF.Log(sum);
                        }
                    }
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(rented);
            }
        }
    }

    /// <summary>
    /// One task per (sample, kv head): it owns that head's dk/dv rows and the dq rows of every query head in its GQA
    /// group, so all accumulation is race-free and in a fixed order.
    /// </summary>
    private struct AttentionBackwardJob : IRangeJob
    {
        public float* DQ, DK, DV, DO, Q, K, V, O, Lse;
        public int* KeyLengths;
        public AttentionShape Shape;
        public float Scale;

        public readonly void Execute(int start, int end)
        {
            var sh = Shape;
            int D = sh.D, group = sh.H / sh.Hkv, tk = Math.Max(sh.Tk, 1);
            long stride = sh.KvStride;
            float[] rented = ArrayPool<float>.Shared.Rent(2 * tk);
            try
            {
                fixed (float* p = rented)
                {
                    float* dp = p + tk;
                    for (int task = start; task < end; task++)
                    {
                        int hkv = task % sh.Hkv, b = task / sh.Hkv;
                        long kvBase = sh.KvBase(b, hkv);
                        float* kb = K + kvBase, vb = V + kvBase;
                        for (int h = hkv * group; h < (hkv + 1) * group; h++)
                        {
                            for (int t = 0; t < sh.Tq; t++)
                            {
                                int n = sh.VisibleKeys(KeyLengths, b, t);
                                if (n == 0) continue;
                                long row = sh.QueryRow(b, t, h);
                                float* qi = Q + row, doi = DO + row;
                                float lse = Lse[((long)b * sh.H + h) * sh.Tq + t];
                                float di = SimdMath.Dot(doi, O + row, D);
                                for (int j = 0; j < n; j++)
                                {
                                    p[j] = Scale * SimdMath.Dot(qi, kb + j * stride, D);
                                    dp[j] = SimdMath.Dot(doi, vb + j * stride, D);
                                }
                                SimdMath.ExpSum(p, p, n, lse);
                                for (int j = 0; j < n; j++)
                                {
                                    long kv = kvBase + j * stride;
                                    float ds = Scale * p[j] * (dp[j] - di);
                                    if (DV != null) SimdMath.Axpy(DV + kv, p[j], doi, D);
                                    if (DK != null) SimdMath.Axpy(DK + kv, ds, qi, D);
                                    if (DQ != null) SimdMath.Axpy(DQ + row, ds, kb + j * stride, D);
                                }
                            }
                        }
                    }
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(rented);
            }
        }
    }
}
