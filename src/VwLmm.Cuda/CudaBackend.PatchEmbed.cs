using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>
/// Launchers for kernels/patch_embed.cu: im2col into the scratch buffer, then one cuBLAS GEMM — y [B·Np, C] =
/// cols [B·Np, K] · wᵀ forward, dw [C, K] += dyᵀ · cols backward, with K = Cin·P·P.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    public void PatchEmbedForward(Tensor y, Tensor img, Tensor w, int B, int Cin, int Hi, int Wi, int P, int C)
    {
        var (rows, k) = PatchGemmShape(B, Cin, Hi, Wi, P);
        if (rows == 0) return;
        nint cols = Im2Col(img, B, Cin, Hi, Wi, P, (long)rows * k);
        Gemm(false, true, rows, C, k, 1f, cols, k, 0, w.Ptr, k, 0, 0f, y.Ptr, C, 0, 1);
    }

    public void PatchEmbedBackward(Tensor dw, Tensor dy, Tensor img, int B, int Cin, int Hi, int Wi, int P, int C)
    {
        var (rows, k) = PatchGemmShape(B, Cin, Hi, Wi, P);
        if (rows == 0) return;
        nint cols = Im2Col(img, B, Cin, Hi, Wi, P, (long)rows * k);
        Gemm(true, false, C, k, rows, 1f, dy.Ptr, C, 0, cols, k, 0, 1f, dw.Ptr, k, 0, 1);
    }

    /// <summary>GEMM rows (B·Np) and depth (Cin·P·P); a trailing image border narrower than P is dropped, as in a stride-P conv.</summary>
    private static (int Rows, int K) PatchGemmShape(int B, int Cin, int Hi, int Wi, int P) =>
        (checked(B * (Hi / P) * (Wi / P)), checked(Cin * P * P));

    /// <summary>The column matrix of <paramref name="img"/> in the scratch buffer.</summary>
    private nint Im2Col(Tensor img, int B, int Cin, int Hi, int Wi, int P, long n)
    {
        nint cols = Scratch(n), pi = img.Ptr;
        ReadOnlySpan<KernelArg> args = [&cols, &pi, &B, &Cin, &Hi, &Wi, &P];
        uint blocks = (uint)Math.Min(CeilDiv(n, PointwiseThreads), MaxPointwiseBlocks);
        Launch("patch_embed", "im2col_f32", (blocks, 1, 1), (PointwiseThreads, 1, 1), 0, args);
        return cols;
    }
}
