using VwLmm.Core;

namespace VwLmm.Cpu;

/// <summary>
/// Vocabulary-row ops, fp32, parallel over rows. Log-probabilities are always x − logsumexp(x) with the row max
/// factored out, never log(softmax), so ±80 logits stay finite. Each row takes a max sweep, an exp-sum sweep and one
/// fused output/gradient sweep (KL adds one for the divergence, which its gradient needs); exponentials are recomputed
/// rather than stored, which keeps the ops free of scratch. Rows are independent, so results do not depend on the
/// thread count.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    public void CrossEntropy(Tensor losses, Tensor? dlogits, Tensor logits, Tensor targets, int N, int V, float gradScale, bool accumulate)
    {
        int* t = I(targets);
        IndexChecks.Targets(nameof(CrossEntropy), new ReadOnlySpan<int>(t, N), V);
        // The work is split over the rows with a target: ignored rows come in runs (a sample's image positions), and
        // an even split of all rows gave one thread a batch-1 sample's image and the other its text. A gradient that is
        // stored gets its ignored rows (the list's tail) zeroed in a fork of their own, split evenly too.
        float* loss = F(losses);
        int* rows = (int*)Scratch(N);
        int count = 0, zeroed = N;
        for (int r = 0; r < N; r++)
            if (t[r] != IndexChecks.IgnoreIndex) rows[count++] = r;
            else
            {
                loss[r] = 0;
                rows[--zeroed] = r;
            }
        var job = new CrossEntropyJob
        {
            Losses = loss, DLogits = F(dlogits), Logits = F(logits), Targets = t, Rows = rows, V = V, GradScale = gradScale,
            Accumulate = accumulate,
        };
        ParallelFor(count, job, MinTasksPerChunk(V));
        if (dlogits is not null && !accumulate && count < N)
            Pool.For(N - count, new ZeroRowsJob { X = F(dlogits), Rows = rows + count, C = V }, MinTasksPerChunk(V));
    }

    public void VisualWordKl(Tensor losses, Tensor? dLm, Tensor? dVm, Tensor lmLogits, Tensor vmLogits, Tensor pairs,
                             int N, int V, bool reverse, float gradScale)
    {
        int* p = I(pairs);
        int lmRows = (int)(lmLogits.Numel / V), vmRows = (int)(vmLogits.Numel / V);
        IndexChecks.VisualWordPairs(nameof(VisualWordKl), new ReadOnlySpan<int>(p, 2 * N), lmRows, vmRows);
        var job = new VisualWordKlJob
        {
            Losses = F(losses), DLm = F(dLm), DVm = F(dVm), Lm = F(lmLogits), Vm = F(vmLogits), Pairs = p,
            V = V, Reverse = reverse, GradScale = gradScale,
        };
        // Pairs that share a gradient row must add into it one after another; the model never produces such pairs
        // (one image token per position), but a repeated row is still handled exactly, in one chunk.
        bool shared = (dLm is not null && !RowsDistinct(p, N, 0, lmRows)) || (dVm is not null && !RowsDistinct(p, N, 1, vmRows));
        ParallelFor(N, job, shared ? N : MinTasksPerChunk(V));
    }

    public void SoftmaxForward(Tensor y, Tensor x, int N, int V) =>
        ParallelFor(N, new SoftmaxJob { Y = F(y), X = F(x), V = V }, MinTasksPerChunk(V));

    public void SoftmaxBackward(Tensor dx, Tensor dy, Tensor y, int N, int V) =>
        ParallelFor(N, new SoftmaxBackwardJob { DX = F(dx), DY = F(dy), Y = F(y), V = V }, MinTasksPerChunk(V));

    /// <summary>Whether column <paramref name="column"/> of pairs [N,2] names each of its rows (all in [0, rows)) at most once.</summary>
    private bool RowsDistinct(int* pairs, int N, int column, int rows)
    {
        int words = (rows + 63) / 64;
        var seen = new Span<ulong>(Scratch(2L * words), words);
        seen.Clear();
        for (int i = 0; i < N; i++)
        {
            int r = pairs[2 * i + column];
            ulong bit = 1UL << (r & 63);
            if ((seen[r >> 6] & bit) != 0) return false;
            seen[r >> 6] |= bit;
        }
        return true;
    }

    /// <summary>Rows[start, end), each a row with a target.</summary>
    private struct CrossEntropyJob : ISimdJob
    {
        public float* Losses, DLogits, Logits;
        public int* Targets, Rows;
        public int V;
        public float GradScale;
        public bool Accumulate;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            for (int i = start; i < end; i++)
            {
                int row = Rows[i], target = Targets[row];
                float* x = Logits + (long)row * V;
                float lse = SimdMath.LogSumExp<TV>(x, V);
                Losses[row] = lse - x[target];
                if (DLogits == null) continue;
                float* d = DLogits + (long)row * V;
                SimdMath.AxpyExp<TV>(d, GradScale, x, V, lse, Accumulate);
                d[target] -= GradScale;
            }
        }
    }

    /// <summary>Rows Rows[start … end) of X [·, C] set to zero.</summary>
    private struct ZeroRowsJob : IRangeJob
    {
        public float* X;
        public int* Rows;
        public int C;

        public readonly void Execute(int start, int end)
        {
            for (int i = start; i < end; i++) new Span<float>(X + (long)Rows[i] * C, C).Clear();
        }
    }

    /// <summary>
    /// KL(α‖β) per pair with α the first argument: forward KL(p‖q) has α = p from the VM row and β = q from the LM row;
    /// reverse KL(q‖p) swaps them. Both directions then share one kernel.
    /// </summary>
    private struct VisualWordKlJob : ISimdJob
    {
        public float* Losses, DLm, DVm, Lm, Vm;
        public int* Pairs;
        public int V;
        public bool Reverse;
        public float GradScale;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            for (int i = start; i < end; i++)
            {
                long lmOffset = (long)Pairs[2 * i] * V, vmOffset = (long)Pairs[2 * i + 1] * V;
                float* lm = Lm + lmOffset, vm = Vm + vmOffset;
                float* dLm = DLm == null ? null : DLm + lmOffset;
                float* dVm = DVm == null ? null : DVm + vmOffset;
                float* a = Reverse ? lm : vm, b = Reverse ? vm : lm;
                float* da = Reverse ? dLm : dVm, db = Reverse ? dVm : dLm;
                float lseA = SimdMath.LogSumExp<TV>(a, V), lseB = SimdMath.LogSumExp<TV>(b, V);
                float kl = SimdMath.KlDivergence<TV>(a, b, V, lseA, lseB);
                Losses[i] = kl;
                if (da != null || db != null) SimdMath.KlGradients<TV>(da, db, a, b, V, lseA, lseB, kl, GradScale);
            }
        }
    }

    private struct SoftmaxJob : ISimdJob
    {
        public float* Y, X;
        public int V;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            for (int row = start; row < end; row++)
            {
                float* x = X + (long)row * V, y = Y + (long)row * V;
                float sum = SimdMath.ExpSum<TV>(y, x, V, SimdMath.Max<TV>(x, V));
                SimdMath.Scale<TV>(y, V, 1f / sum);
            }
        }
    }

    private struct SoftmaxBackwardJob : ISimdJob
    {
        public float* DX, DY, Y;
        public int V;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            for (int row = start; row < end; row++)
            {
                long o = (long)row * V;
                SimdMath.AddMulCentered<TV>(DX + o, Y + o, DY + o, SimdMath.Dot<TV>(DY + o, Y + o, V), V);
            }
        }
    }
}
