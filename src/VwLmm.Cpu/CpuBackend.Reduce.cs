using System.Runtime.Intrinsics;
using VwLmm.Core;

namespace VwLmm.Cpu;

// Deterministic reductions: work is cut into blocks whose size is fixed (never derived from the thread count), each
// block writes its own partial, and partials are combined in block order. The result is then bit-identical for any
// thread count.
public sealed unsafe partial class CpuBackend
{
    private const int SumSquaresBlock = 8192;

    private struct SumSquaresJob : IRangeJob
    {
        public float* X;
        public double* Partials;
        public long N;

        // Squares are summed in double, so the partial is exact to ~1e-16 however large the block; the loop is
        // memory-bound, which is why 256-bit vectors suffice even where 512-bit ones are available.
        public void Execute(int start, int end)
        {
            for (int b = start; b < end; b++)
            {
                long lo = (long)b * SumSquaresBlock, hi = Math.Min(lo + SumSquaresBlock, N);
                Vector256<double> acc0 = Vector256<double>.Zero, acc1 = Vector256<double>.Zero;
                long i = lo;
                for (; i + Vector256<float>.Count <= hi; i += Vector256<float>.Count)
                {
                    var (l, h) = Vector256.Widen(Vector256.Load(X + i));
                    acc0 = Vector256.FusedMultiplyAdd(l, l, acc0);
                    acc1 = Vector256.FusedMultiplyAdd(h, h, acc1);
                }
                double s = Vector256.Sum(acc0 + acc1);
                for (; i < hi; i++) s += (double)X[i] * X[i];
                Partials[b] = s;
            }
        }
    }

    public void SumSquares(Tensor result, int slot, Tensor x, long n)
    {
        int blocks = checked((int)((n + SumSquaresBlock - 1) / SumSquaresBlock));
        double* partials = (double*)Scratch(2L * Math.Max(1, blocks));
        var job = new SumSquaresJob { X = F(x), Partials = partials, N = n };
        Pool.For(blocks, job, MinTasksPerChunk(SumSquaresBlock));
        double total = 0;
        for (int b = 0; b < blocks; b++) total += partials[b];
        F(result)[slot] = (float)total;
    }
}
