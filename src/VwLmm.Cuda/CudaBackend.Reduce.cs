using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>Launchers for kernels/reduce.cu (deterministic two-stage sum of squares, of one tensor or of every
/// gradient of a parameter list).</summary>
public sealed unsafe partial class CudaBackend
{
    private const string ReduceModule = "reduce";
    // Must match REDUCE_THREADS in reduce.cu.
    private const int ReduceThreads = 256;
    // Elements per first-stage block (a multiple of 4): fixed, so the summation order depends on n alone.
    private const int SumSquaresChunk = 8192;

    public void SumSquares(Tensor result, int slot, Tensor x, long n)
    {
        uint blocks = CeilDiv(Math.Max(n, 1), SumSquaresChunk);
        nint partials = Scratch(2L * blocks), px = x.Ptr, pr = result.Ptr + slot * sizeof(float);
        int chunk = SumSquaresChunk, count = (int)blocks;
        ReadOnlySpan<KernelArg> first = [&partials, &px, &n, &chunk];
        Launch(ReduceModule, "sum_squares_partials_f32", (blocks, 1, 1), (ReduceThreads, 1, 1), 0, first);
        ReadOnlySpan<KernelArg> second = [&pr, &partials, &count];
        Launch(ReduceModule, "sum_partials_f64", (1, 1, 1), (ReduceThreads, 1, 1), 0, second);
    }

    public void GradientSumsOfSquares(Tensor result, ParameterList list)
    {
        var t = TableFor(list);
        if (t.Count == 0) return;
        nint partials = Scratch(2L * Math.Max(1, t.Chunks)), entries = t.Entries, chunkStart = t.ChunkStart, pr = result.Ptr;
        int count = t.Count;
        if (t.Chunks > 0)
        {
            ReadOnlySpan<KernelArg> first = [&partials, &entries, &chunkStart, &count];
            Launch(ReduceModule, "sum_squares_list_partials_f32", (checked((uint)t.Chunks), 1, 1), (ReduceThreads, 1, 1), 0, first);
        }
        ReadOnlySpan<KernelArg> second = [&pr, &partials, &chunkStart, &count];
        Launch(ReduceModule, "sum_partials_list_f64", ((uint)count, 1, 1), (ReduceThreads, 1, 1), 0, second);
    }
}
