using VwLmm.Core;

namespace VwLmm.Cpu;

// Row gather (token embedding, LLaVA splice), its scatter-add backward, and the row scatter of a KV cache append.
public sealed unsafe partial class CpuBackend
{
    // Scatter-add workers own disjoint column ranges of this many floats and walk all rows in increasing order, so
    // every output element sums its rows in the same order whatever the thread count — no atomics, no partials.
    private const int ScatterColumnBlock = 64;

    private struct GatherJob : IRangeJob
    {
        public float* Y, SrcA, SrcB;
        public int* Map;
        public int C;

        public void Execute(int start, int end)
        {
            long bytes = (long)C * sizeof(float);
            for (int r = start; r < end; r++)
            {
                float* y = Y + (long)r * C;
                int m = Map[r];
                if (m == -1) new Span<float>(y, C).Clear();
                else Buffer.MemoryCopy(m >= 0 ? SrcA + (long)m * C : SrcB + (long)(-2 - m) * C, y, bytes, bytes);
            }
        }
    }

    public void GatherRows(Tensor y, Tensor srcA, Tensor? srcB, Tensor map, int R, int C)
    {
        var job = new GatherJob { Y = F(y), SrcA = F(srcA), SrcB = F(srcB), Map = I(map), C = C };
        Pool.For(R, job, MinTasksPerChunk(C));
    }

    public void GatherRowsBackward(Tensor? dSrcA, Tensor? dSrcB, Tensor dy, Tensor map, int R, int C)
    {
        if (dSrcA is null && dSrcB is null) return;
        ScatterAddRows(F(dSrcA), F(dSrcB), I(map), 1, F(dy), R, C);
    }

    // Serial: a decode step scatters a few rows, less work than handing them to the pool.
    public void ScatterRows(Tensor dst, Tensor src, Tensor rows, int R, int C)
    {
        float* d = F(dst), s = F(src);
        int* slots = I(rows);
        for (int r = 0; r < R; r++)
            new Span<float>(s + (long)r * C, C).CopyTo(new Span<float>(d + (long)slots[r] * C, C));
    }

    /// <summary>
    /// For r in increasing order: dst row(r) += src[r] over [R,C]. With a map, row(r) is dstA[map[r]] (map ≥ 0),
    /// dstB[−2−map[r]] (map ≤ −2) or nothing (−1 or a null destination); without one, it is dstA[r mod P].
    /// </summary>
    private void ScatterAddRows(float* dstA, float* dstB, int* map, int P, float* src, int R, int C)
    {
        var job = new ScatterAddJob { DstA = dstA, DstB = dstB, Map = map, P = P, Src = src, R = R, C = C };
        int blocks = (C + ScatterColumnBlock - 1) / ScatterColumnBlock;
        long perBlock = (long)R * ScatterColumnBlock;
        ParallelFor(blocks, job, MinTasksPerChunk(perBlock));
    }

    private struct ScatterAddJob : ISimdJob
    {
        public float* DstA, DstB, Src;
        public int* Map;
        public int P, R, C;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            int c0 = start * ScatterColumnBlock, width = Math.Min(end * ScatterColumnBlock, C) - c0;
            for (int r = 0; r < R; r++)
            {
                float* dst;
                if (Map is null) dst = DstA + (long)(r % P) * C;
                else
                {
                    int m = Map[r];
                    dst = m >= 0 ? (DstA is null ? null : DstA + (long)m * C)
                        : m <= -2 ? (DstB is null ? null : DstB + (long)(-2 - m) * C)
                        : null;
                }
                if (dst is not null) SimdMath.AddInto<TV>(dst + c0, Src + (long)r * C + c0, width);
            }
        }
    }
}
