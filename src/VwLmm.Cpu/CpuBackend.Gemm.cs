using VwLmm.Core;
using VwLmm.Cpu.Native;

namespace VwLmm.Cpu;

// GEMM: one row-major cblas_sgemm per batch item; OpenBLAS threads each call itself, with this backend's thread count.
// A linear layer over a few rows (token-by-token decoding) is a matrix-vector product instead: sgemm would pack the
// whole weight matrix for one row of output and fork its threads for microseconds of work.
public sealed unsafe partial class CpuBackend
{
    /// <summary>Rows of x·Wᵀ up to which the product runs as dot products against W's rows instead of sgemm.</summary>
    private const int GemvMaxRows = 4;

    public void Gemm(bool transA, bool transB, int M, int N, int K, float alpha,
                     Tensor A, int lda, long strideA, Tensor B, int ldb, long strideB,
                     float beta, Tensor C, int ldc, long strideC, int batch)
    {
        if (M == 0 || N == 0) return;
        float* a = F(A), b = F(B), c = F(C);
        bool gemv = !transA && transB && beta == 0 && M <= GemvMaxRows;
        for (int i = 0; i < batch; i++)
        {
            if (gemv) Gemv(M, N, K, alpha, a + i * strideA, lda, b + i * strideB, ldb, c + i * strideC, ldc);
            else Sgemm(transA, transB, M, N, K, alpha, a + i * strideA, lda, b + i * strideB, ldb, beta, c + i * strideC, ldc);
        }
    }

    /// <summary>Row-major C [M,N] = alpha·op(A)·op(B) + beta·C on <see cref="Threads"/> OpenBLAS threads.</summary>
    private void Sgemm(bool transA, bool transB, int M, int N, int K, float alpha, float* a, int lda, float* b, int ldb,
                       float beta, float* c, int ldc)
    {
        OpenBlas.UseThreads(Threads);
        OpenBlas.Sgemm(OpenBlas.RowMajor, transA ? OpenBlas.Trans : OpenBlas.NoTrans, transB ? OpenBlas.Trans : OpenBlas.NoTrans,
                       M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    }

    /// <summary>
    /// C [M,N] = alpha·A [M,K]·B [N,K]ᵀ as M·N dot products, split over the N rows of B. Every element is one
    /// <see cref="SimdMath.Dot{TV}"/>, so a row's result does not depend on M, on the split or on the thread count.
    /// </summary>
    private void Gemv(int M, int N, int K, float alpha, float* a, int lda, float* b, int ldb, float* c, int ldc)
    {
        var job = new GemvJob { A = a, B = b, C = c, M = M, K = K, Lda = lda, Ldb = ldb, Ldc = ldc, Alpha = alpha };
        ParallelFor(N, job, TasksPerChunk(N, (long)M * K));
    }

    private struct GemvJob : ISimdJob
    {
        public float* A, B, C;
        public int M, K, Lda, Ldb, Ldc;
        public float Alpha;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            for (int m = 0; m < M; m++)
                SimdMath.DotRows<TV>(C + (long)m * Ldc + start, A + (long)m * Lda, B + (long)start * Ldb, Ldb, end - start, K, Alpha);
        }
    }
}
