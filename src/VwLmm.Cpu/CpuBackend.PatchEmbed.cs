using System.Buffers;
using VwLmm.Core;
using VwLmm.Cpu.Native;

namespace VwLmm.Cpu;

/// <summary>
/// Patch embedding as one GEMM: im2col lays every patch out as a row of K = Cin·P·P values in w's (ci, ky, kx) order,
/// so y [B·Np, C] = cols [B·Np, K] · wᵀ and dw [C, K] += dyᵀ · cols. The column matrix lives in pooled scratch.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    public void PatchEmbedForward(Tensor y, Tensor img, Tensor w, int B, int Cin, int Hi, int Wi, int P, int C)
    {
        var (rows, k) = PatchGemmShape(B, Cin, Hi, Wi, P);
        float[] cols = ArrayPool<float>.Shared.Rent(checked(rows * k));
        try
        {
            fixed (float* c = cols)
            {
                Im2Col(c, F(img), B, Cin, Hi, Wi, P);
                OpenBlas.Sgemm(OpenBlas.RowMajor, OpenBlas.NoTrans, OpenBlas.Trans, rows, C, k, 1f, c, k, F(w), k, 0f, F(y), C);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(cols);
        }
    }

    public void PatchEmbedBackward(Tensor dw, Tensor dy, Tensor img, int B, int Cin, int Hi, int Wi, int P, int C)
    {
        var (rows, k) = PatchGemmShape(B, Cin, Hi, Wi, P);
        float[] cols = ArrayPool<float>.Shared.Rent(checked(rows * k));
        try
        {
            fixed (float* c = cols)
            {
                Im2Col(c, F(img), B, Cin, Hi, Wi, P);
                OpenBlas.Sgemm(OpenBlas.RowMajor, OpenBlas.Trans, OpenBlas.NoTrans, C, k, rows, 1f, F(dy), C, c, k, 1f, F(dw), k);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(cols);
        }
    }

    /// <summary>GEMM rows (B·Np) and depth (Cin·P·P); a trailing image border narrower than P is dropped, as in a stride-P conv.</summary>
    private static (int Rows, int K) PatchGemmShape(int B, int Cin, int Hi, int Wi, int P) =>
        (checked(B * (Hi / P) * (Wi / P)), checked(Cin * P * P));

    private void Im2Col(float* cols, float* img, int B, int Cin, int Hi, int Wi, int P)
    {
        int gh = Hi / P, gw = Wi / P;
        Pool.For(B * gh, new Im2ColJob { Cols = cols, Img = img, Cin = Cin, Hi = Hi, Wi = Wi, P = P, GridH = gh, GridW = gw });
    }

    /// <summary>One task per (sample, grid row): copies its gw patches, P contiguous pixels at a time.</summary>
    private struct Im2ColJob : IRangeJob
    {
        public float* Cols, Img;
        public int Cin, Hi, Wi, P, GridH, GridW;

        public readonly void Execute(int start, int end)
        {
            int k = Cin * P * P;
            nuint runBytes = (nuint)(P * sizeof(float));
            for (int task = start; task < end; task++)
            {
                int gy = task % GridH, b = task / GridH;
                for (int gx = 0; gx < GridW; gx++)
                {
                    float* dst = Cols + ((long)task * GridW + gx) * k;
                    for (int ci = 0; ci < Cin; ci++)
                    for (int ky = 0; ky < P; ky++, dst += P)
                    {
                        float* src = Img + (((long)b * Cin + ci) * Hi + gy * P + ky) * Wi + gx * P;
                        Buffer.MemoryCopy(src, dst, runBytes, runBytes);
                    }
                }
            }
        }
    }
}
