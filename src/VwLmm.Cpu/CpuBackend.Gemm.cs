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
        if (!transA && transB && beta == 0 && M <= GemvMaxRows)
        {
            Gemv(M, N, K, alpha, a, lda, strideA, b, ldb, strideB, c, ldc, strideC, batch);
            return;
        }
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

    /// <summary>
    /// C_i [M,N] = alpha·A_i [M,K]·B_i [N,K]ᵀ for every batch item i, as M·N dot products per item, split over the
    /// batch·N rows of the B_i in one fork (a stack of decode-sized products pays one worker wake-up, not one each).
    /// Every element is one <see cref="SimdMath.Dot{TV}"/>, so it does not depend on M, the batch, the split or the
    /// thread count.
    /// </summary>
    private void Gemv(int M, int N, int K, float alpha, float* a, int lda, long strideA, float* b, int ldb, long strideB,
                      float* c, int ldc, long strideC, int batch)
    {
        var job = new GemvJob
        {
            A = a, B = b, C = c, M = M, N = N, K = K, Lda = lda, Ldb = ldb, Ldc = ldc, Alpha = alpha,
            StrideA = strideA, StrideB = strideB, StrideC = strideC,
        };
        int rows = checked(batch * N);
        ParallelFor(rows, job, TasksPerChunk(rows, (long)M * K));
    }

    private struct GemvJob : ISimdJob
    {
        public float* A, B, C;
        public int M, N, K, Lda, Ldb, Ldc;
        public long StrideA, StrideB, StrideC;
        public float Alpha;

        /// <summary>Rows [start, end) of the batch's B rows laid end to end, one batch item's run at a time.</summary>
        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            while (start < end)
            {
                int i = start / N, n0 = start - i * N, n1 = Math.Min(N, n0 + end - start);
                float* a = A + i * StrideA, b = B + i * StrideB + (long)n0 * Ldb, c = C + i * StrideC + n0;
                for (int m = 0; m < M; m++)
                    SimdMath.DotRows<TV>(c + (long)m * Ldc, a + (long)m * Lda, b, Ldb, n1 - n0, K, Alpha);
                start += n1 - n0;
            }
        }
    }
}
