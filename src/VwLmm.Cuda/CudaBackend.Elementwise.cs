using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>Launchers for kernels/elementwise.cu.</summary>
public sealed unsafe partial class CudaBackend
{
    private const string Elementwise = "elementwise";
    private const int PointwiseThreads = 256;
    // Grid-stride loops: enough blocks to fill a large GPU; more only adds scheduling work.
    private const long MaxPointwiseBlocks = 4096;
    // Rows summed per partial in the first stage of a column reduction (sum_rows_f32).
    private const int RowsPerPartial = 64;

    private void Pointwise(string kernel, long n, ReadOnlySpan<KernelArg> args) => Pointwise(Elementwise, kernel, n, args);

    /// <summary>Launches a 1-D grid-stride kernel over <paramref name="n"/> elements (GRID_STRIDE_LOOP in common.cuh).</summary>
    private void Pointwise(string module, string kernel, long n, ReadOnlySpan<KernelArg> args)
    {
        if (n <= 0) return;
        uint blocks = (uint)Math.Min(CeilDiv(n, PointwiseThreads), MaxPointwiseBlocks);
        Launch(module, kernel, (blocks, 1, 1), (PointwiseThreads, 1, 1), 0, args);
    }

    /// <summary>out [W] += Σ over the rows of <paramref name="input"/> viewed as [⌈L/W⌉, W] (last row possibly short),
    /// in an order fixed by L and W: partial sums of <paramref name="rowsPerPartial"/> rows, then the partials in order.</summary>
    private void SumRowsInto(nint output, nint input, long L, int W, int rowsPerPartial) =>
        SumRowsInto(output, input, L, W, rowsPerPartial, Scratch(ColumnSumPartials(L, W, rowsPerPartial)));

    /// <summary>As above, with the caller's buffer of <see cref="ColumnSumPartials"/> floats for the partial sums.</summary>
    private void SumRowsInto(nint output, nint input, long L, int W, int rowsPerPartial, nint partials)
    {
        var (R, chunks) = ColumnSumChunks(L, W, rowsPerPartial);
        SumRows(partials, input, L, W, R, chunks, accumulate: false);
        SumRows(output, partials, (long)chunks * W, W, chunks, 1, accumulate: true);
    }

    private static long ColumnSumPartials(long L, int W, int rowsPerPartial) => (long)ColumnSumChunks(L, W, rowsPerPartial).Chunks * W;

    private static (int R, int Chunks) ColumnSumChunks(long L, int W, int rowsPerPartial)
    {
        long rows = (L + W - 1) / W;
        // Keep the partial count within gridDim.y (65535) by widening the chunks for very tall inputs.
        int R = (int)Math.Max(rowsPerPartial, (rows + 65534) / 65535);
        return (R, (int)CeilDiv(rows, R));
    }

    private void SumRows(nint output, nint input, long L, int W, int R, int chunks, bool accumulate)
    {
        int acc = accumulate ? 1 : 0;
        ReadOnlySpan<KernelArg> args = [&output, &input, &L, &W, &R, &acc];
        Launch(Elementwise, "sum_rows_f32", (CeilDiv(W, PointwiseThreads), (uint)chunks, 1), (PointwiseThreads, 1, 1), 0, args);
    }

    public void Fill(Tensor x, float value)
    {
        nint px = x.Ptr;
        long n = x.Numel;
        ReadOnlySpan<KernelArg> args = [&px, &value, &n];
        Pointwise("fill_f32", n, args);
    }

    public void Copy(Tensor dst, Tensor src, long n)
    {
        nint pd = dst.Ptr, ps = src.Ptr;
        ReadOnlySpan<KernelArg> args = [&pd, &ps, &n];
        Pointwise("copy_f32", n, args);
    }

    public void Add(Tensor y, Tensor a, Tensor b, long n) => Add(y.Ptr, a.Ptr, b.Ptr, n);

    private void Add(nint py, nint pa, nint pb, long n)
    {
        ReadOnlySpan<KernelArg> args = [&py, &pa, &pb, &n];
        Pointwise("add_f32", n, args);
    }

    public void Axpy(Tensor y, Tensor x, long n, float alpha)
    {
        nint py = y.Ptr, px = x.Ptr;
        ReadOnlySpan<KernelArg> args = [&py, &px, &alpha, &n];
        Pointwise("axpy_f32", n, args);
    }

    public void Scale(Tensor x, long n, float alpha)
    {
        nint px = x.Ptr;
        ReadOnlySpan<KernelArg> args = [&px, &alpha, &n];
        Pointwise("scale_f32", n, args);
    }

    public void BiasAdd(Tensor x, Tensor bias, int N, int C, int P) => BiasAdd(x.Ptr, bias.Ptr, N, C, P);

    private void BiasAdd(nint px, nint pb, int N, int C, int P)
    {
        ReadOnlySpan<KernelArg> args = [&px, &pb, &N, &C, &P];
        Pointwise("bias_add_f32", (long)N * C, args);
    }

    /// <summary>dbias [P,C] += column sums of dy [N,C] viewed as [⌈N/P⌉, P·C]: no atomics, bit-reproducible.</summary>
    public void BiasBackward(Tensor dbias, Tensor dy, int N, int C, int P)
    {
        if ((long)N * C == 0) return;
        SumRowsInto(dbias.Ptr, dy.Ptr, (long)N * C, checked(P * C), RowsPerPartial);
    }

    // Literal names: a name built per call would be a managed allocation per launch.
    private static string ActivationKernel(Activation act, bool forward) => act switch
    {
        Activation.Gelu => forward ? "gelu_forward_f32" : "gelu_backward_f32",
        Activation.QuickGelu => forward ? "quick_gelu_forward_f32" : "quick_gelu_backward_f32",
        Activation.Silu => forward ? "silu_forward_f32" : "silu_backward_f32",
        _ => throw new ArgumentOutOfRangeException(nameof(act), act, "unknown activation"),
    };

    public void ActivationForward(Tensor y, Tensor x, long n, Activation act)
    {
        nint py = y.Ptr, px = x.Ptr;
        ReadOnlySpan<KernelArg> args = [&py, &px, &n];
        Pointwise(ActivationKernel(act, forward: true), n, args);
    }

    public void ActivationBackward(Tensor dx, Tensor dy, Tensor x, long n, Activation act, bool accumulate)
    {
        nint pdx = dx.Ptr, pdy = dy.Ptr, px = x.Ptr;
        int acc = accumulate ? 1 : 0;
        ReadOnlySpan<KernelArg> args = [&pdx, &pdy, &px, &n, &acc];
        Pointwise(ActivationKernel(act, forward: false), n, args);
    }

    public void Dropout(Tensor y, Tensor x, long n, float rate, ulong seed, bool accumulate)
    {
        nint py = y.Ptr, px = x.Ptr;
        float scale = DropoutMask.Scale(rate);
        uint threshold = DropoutMask.Threshold(rate);
        long seedBits = unchecked((long)seed);
        int acc = accumulate ? 1 : 0;
        ReadOnlySpan<KernelArg> args = [&py, &px, &scale, &threshold, &seedBits, &n, &acc];
        Pointwise("dropout_f32", n, args);
    }

    public void SwiGluForward(Tensor y, Tensor gate, Tensor up, long n)
    {
        nint py = y.Ptr, pg = gate.Ptr, pu = up.Ptr;
        ReadOnlySpan<KernelArg> args = [&py, &pg, &pu, &n];
        Pointwise("swiglu_forward_f32", n, args);
    }

    public void SwiGluBackward(Tensor? dgate, Tensor? dup, Tensor dy, Tensor gate, Tensor up, long n, bool accumulate)
    {
        if (dgate is null && dup is null) return;
        nint pdg = PtrOrNull(dgate), pdu = PtrOrNull(dup), pdy = dy.Ptr, pg = gate.Ptr, pu = up.Ptr;
        int acc = accumulate ? 1 : 0;
        ReadOnlySpan<KernelArg> args = [&pdg, &pdu, &pdy, &pg, &pu, &n, &acc];
        Pointwise("swiglu_backward_f32", n, args);
    }
}
