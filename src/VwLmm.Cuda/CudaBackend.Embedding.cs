using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>Launchers for kernels/embedding.cu (row gather, its deterministic scatter-add backward, and row scatter).</summary>
public sealed unsafe partial class CudaBackend
{
    private const string EmbeddingModule = "embedding";

    public void GatherRows(Tensor y, Tensor srcA, Tensor? srcB, Tensor map, int R, int C)
    {
        if (R == 0) return;
        nint py = y.Ptr, pa = srcA.Ptr, pb = PtrOrNull(srcB), pm = map.Ptr;
        ReadOnlySpan<KernelArg> args = [&py, &pa, &pb, &pm, &R, &C];
        Launch(EmbeddingModule, "gather_rows_f32", ((uint)R, 1, 1), (NormThreads(C), 1, 1), 0, args);
    }

    /// <summary>
    /// Groups the rows of dy by destination on the host (the map is read back: one stream synchronisation), stable so
    /// each group keeps increasing r, and uploads the grouping to the scratch buffer; the kernel then runs one block per
    /// destination row. Rows mapped to −1 or to a null gradient are dropped.
    /// </summary>
    public void GatherRowsBackward(Tensor? dSrcA, Tensor? dSrcB, Tensor dy, Tensor map, int R, int C)
    {
        if (R == 0 || (dSrcA is null && dSrcB is null)) return;
        // One staging span: the map [R], then the scratch layout (ints) order [count], start [S+1], dstMap [S], S ≤ count ≤ R.
        var staging = HostInts(4 * R + 1);
        var m = staging[..R];
        Download<int>(map, m);
        // (map value, r) packed so one sort groups by destination and orders each group by r.
        var keys = HostKeys(R);
        int count = 0;
        for (int r = 0; r < R; r++)
            if (m[r] >= 0 ? dSrcA is not null : m[r] <= -2 && dSrcB is not null)
                keys[count++] = ((long)m[r] << 32) | (uint)r;
        if (count == 0) return;
        keys = keys[..count];
        keys.Sort();
        var index = staging.Slice(R, 3 * count + 1);
        int S = 0;
        for (int j = 0; j < count; j++)
        {
            index[j] = (int)keys[j];
            int value = (int)(keys[j] >> 32);
            if (j == 0 || value != (int)(keys[j - 1] >> 32))
            {
                index[count + S] = j;
                index[2 * count + 1 + S] = value;
                S++;
            }
        }
        index[count + S] = count;
        nint scratch = Scratch(index.Length);
        fixed (int* src = index) Runtime.CopyHostToDevice(scratch, (nint)src, (long)index.Length * sizeof(int));
        nint pda = PtrOrNull(dSrcA), pdb = PtrOrNull(dSrcB), pdy = dy.Ptr;
        nint order = scratch, start = scratch + count * sizeof(int), dstMap = scratch + (2 * count + 1) * sizeof(int);
        ReadOnlySpan<KernelArg> args = [&pda, &pdb, &pdy, &order, &start, &dstMap, &S, &C];
        Launch(EmbeddingModule, "gather_rows_backward_f32", ((uint)S, 1, 1), (NormThreads(C), 1, 1), 0, args);
    }

    public void ScatterRows(Tensor dst, Tensor src, Tensor rows, int R, int C)
    {
        if (R == 0) return;
        nint pd = dst.Ptr, ps = src.Ptr, pr = rows.Ptr;
        ReadOnlySpan<KernelArg> args = [&pd, &ps, &pr, &R, &C];
        Launch(EmbeddingModule, "scatter_rows_f32", ((uint)R, 1, 1), (NormThreads(C), 1, 1), 0, args);
    }
}
