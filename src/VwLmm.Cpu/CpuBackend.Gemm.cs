using VwLmm.Core;
using VwLmm.Cpu.Native;

namespace VwLmm.Cpu;

// GEMM: one row-major cblas_sgemm per batch item; OpenBLAS threads each call itself.
public sealed unsafe partial class CpuBackend
{
    public void Gemm(bool transA, bool transB, int M, int N, int K, float alpha,
                     Tensor A, int lda, long strideA, Tensor B, int ldb, long strideB,
                     float beta, Tensor C, int ldc, long strideC, int batch)
    {
        if (M == 0 || N == 0) return;
        float* a = F(A), b = F(B), c = F(C);
        int ta = transA ? OpenBlas.Trans : OpenBlas.NoTrans;
        int tb = transB ? OpenBlas.Trans : OpenBlas.NoTrans;
        for (int i = 0; i < batch; i++)
            OpenBlas.Sgemm(OpenBlas.RowMajor, ta, tb, M, N, K, alpha,
                           a + i * strideA, lda, b + i * strideB, ldb, beta, c + i * strideC, ldc);
    }
}
