using VwLmm.Core;

namespace VwLmm.Cpu;

/// <summary>
/// Patch embedding as one GEMM: im2col lays every patch out as a row of K = Cin·P·P values in w's (ci, ky, kx) order,
/// so y [B·Np, C] = cols [B·Np, K] · wᵀ and dw [C, K] += dyᵀ · cols. The column matrix lives in the backend's scratch.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    public void PatchEmbedForward(Tensor y, Tensor img, Tensor w, int B, int Cin, int Hi, int Wi, int P, int C)
    {
        float* cols = Im2Col(F(img), B, Cin, Hi, Wi, P, out int rows, out int k);
        Sgemm(false, true, rows, C, k, 1f, cols, k, F(w), k, 0f, F(y), C);
    }

    public void PatchEmbedBackward(Tensor dw, Tensor dy, Tensor img, int B, int Cin, int Hi, int Wi, int P, int C)
    {
        float* cols = Im2Col(F(img), B, Cin, Hi, Wi, P, out int rows, out int k);
        Sgemm(true, false, C, k, rows, 1f, F(dy), C, cols, k, 1f, F(dw), k);
    }

    /// <summary>
    /// The column matrix [rows = B·Np, k = Cin·P·P] of img, in scratch; a trailing image border narrower than P is
    /// dropped, as in a stride-P conv.
    /// </summary>
    private float* Im2Col(float* img, int B, int Cin, int Hi, int Wi, int P, out int rows, out int k)
    {
        int gh = Hi / P, gw = Wi / P;
        rows = checked(B * gh * gw);
        k = checked(Cin * P * P);
        float* cols = Scratch((long)rows * k);
        Pool.For(B * gh, new Im2ColJob { Cols = cols, Img = img, Cin = Cin, Hi = Hi, Wi = Wi, P = P, GridH = gh, GridW = gw },
                MinTasksPerChunk((long)gw * k));
        return cols;
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
