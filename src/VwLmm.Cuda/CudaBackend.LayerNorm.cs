using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>Launchers for kernels/layernorm.cu (LayerNorm and RMSNorm over rows of [N,C]).</summary>
public sealed unsafe partial class CudaBackend
{
    private const string LayerNormModule = "layernorm";
    // Backward: each block takes R consecutive rows and writes one [C] row of γ/β partial sums, which SumRowsInto then
    // adds in block order. R grows with N only past 1024 blocks: one block per row keeps a large GPU busy at the row
    // counts of a batch-1 step (a fixed 32 left 20 blocks for 640 rows, and the backward 15× slower than the forward).
    private static int NormRowsPerBlock(int N) => Math.Clamp(N / 1024, 1, 32);

    /// <summary>Threads per row: about one float4 per thread, a multiple of 32 in [32, 256].</summary>
    private static uint NormThreads(int C) => (uint)Math.Clamp((C / 4 + 31) / 32 * 32, 32, 256);

    public void LayerNormForward(Tensor y, Tensor mean, Tensor rstd, Tensor x, Tensor gamma, Tensor beta, int N, int C, float eps)
    {
        if (N == 0) return;
        nint py = y.Ptr, pm = mean.Ptr, pr = rstd.Ptr, px = x.Ptr, pg = gamma.Ptr, pb = beta.Ptr;
        ReadOnlySpan<KernelArg> args = [&py, &pm, &pr, &px, &pg, &pb, &N, &C, &eps];
        Launch(LayerNormModule, "layernorm_forward_f32", ((uint)N, 1, 1), (NormThreads(C), 1, 1), 0, args);
    }

    public void LayerNormBackward(Tensor? dx, Tensor? dgamma, Tensor? dbeta, Tensor dy, Tensor x, Tensor gamma, Tensor mean, Tensor rstd, int N, int C)
    {
        if (N == 0 || (dx is null && dgamma is null && dbeta is null)) return;
        int R = NormRowsPerBlock(N), blocks = (int)CeilDiv(N, R);
        long part = (long)blocks * C, sums = ColumnSumPartials(part, C, RowsPerPartial);
        nint scratch = dgamma is null && dbeta is null ? 0 : Scratch(2 * part + sums);
        nint pdx = PtrOrNull(dx), pdg = dgamma is null ? 0 : scratch, pdb = dbeta is null ? 0 : scratch + (nint)(part * sizeof(float));
        nint pdy = dy.Ptr, px = x.Ptr, pg = gamma.Ptr, pm = mean.Ptr, pr = rstd.Ptr;
        ReadOnlySpan<KernelArg> args = [&pdx, &pdg, &pdb, &pdy, &px, &pg, &pm, &pr, &N, &C, &R];
        Launch(LayerNormModule, "layernorm_backward_f32", ((uint)blocks, 1, 1), (NormThreads(C), 1, 1), 0, args);
        nint partials = scratch + (nint)(2 * part * sizeof(float));
        if (dgamma is not null) SumRowsInto(dgamma.Ptr, pdg, part, C, RowsPerPartial, partials);
        if (dbeta is not null) SumRowsInto(dbeta.Ptr, pdb, part, C, RowsPerPartial, partials);
    }

    public void RmsNormForward(Tensor y, Tensor rstd, Tensor x, Tensor gamma, int N, int C, float eps)
    {
        if (N == 0) return;
        nint py = y.Ptr, pr = rstd.Ptr, px = x.Ptr, pg = gamma.Ptr;
        ReadOnlySpan<KernelArg> args = [&py, &pr, &px, &pg, &N, &C, &eps];
        Launch(LayerNormModule, "rmsnorm_forward_f32", ((uint)N, 1, 1), (NormThreads(C), 1, 1), 0, args);
    }

    public void RmsNormBackward(Tensor? dx, Tensor? dgamma, Tensor dy, Tensor x, Tensor gamma, Tensor rstd, int N, int C)
    {
        if (N == 0 || (dx is null && dgamma is null)) return;
        int R = NormRowsPerBlock(N), blocks = (int)CeilDiv(N, R);
        long part = (long)blocks * C, sums = ColumnSumPartials(part, C, RowsPerPartial);
        nint pdx = PtrOrNull(dx), pdg = dgamma is null ? 0 : Scratch(part + sums);
        nint pdy = dy.Ptr, px = x.Ptr, pg = gamma.Ptr, pr = rstd.Ptr;
        ReadOnlySpan<KernelArg> args = [&pdx, &pdg, &pdy, &px, &pg, &pr, &N, &C, &R];
        Launch(LayerNormModule, "rmsnorm_backward_f32", ((uint)blocks, 1, 1), (NormThreads(C), 1, 1), 0, args);
        if (dgamma is not null) SumRowsInto(dgamma.Ptr, pdg, part, C, RowsPerPartial, pdg + (nint)(part * sizeof(float)));
    }
}
