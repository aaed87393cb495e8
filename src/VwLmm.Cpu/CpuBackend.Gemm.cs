using VwLmm.Core;
using VwLmm.Cpu.Native;

namespace VwLmm.Cpu;

// GEMM: one row-major cblas_sgemm per batch item; OpenBLAS threads each call itself, with this backend's thread count.
public sealed unsafe partial class CpuBackend
{
    public void Gemm(bool transA, bool transB, int M, int N, int K, float alpha,
                     Tensor A, int lda, long strideA, Tensor B, int ldb, long strideB,
                     float beta, Tensor C, int ldc, long strideC, int batch)
    {
        if (M == 0 || N == 0) return;
        float* a = F(A), b = F(B), c = F(C);
        for (int i = 0; i < batch; i++)
            Sgemm(transA, transB, M, N, K, alpha, a + i * strideA, lda, b + i * strideB, ldb, beta, c + i * strideC, ldc);
    }

    /// <summary>Row-major C [M,N] = alpha·op(A)·op(B) + beta·C on <see cref="Threads"/> OpenBLAS threads.</summary>
    private void Sgemm(bool transA, bool transB, int M, int N, int K, float alpha, float* a, int lda, float* b, int ldb,
                       float beta, float* c, int ldc)
    {
        OpenBlas.UseThreads(Threads);
        OpenBlas.Sgemm(OpenBlas.RowMajor, transA ? OpenBlas.Trans : OpenBlas.NoTrans, transB ? OpenBlas.Trans : OpenBlas.NoTrans,
                       M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    }
}
