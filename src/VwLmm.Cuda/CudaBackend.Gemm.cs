using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>GEMM through cuBLAS.</summary>
public sealed unsafe partial class CudaBackend
{
    /// <summary>C [M,N] = alpha·op(A)·op(B) + beta·C per batch item, row-major (see <see cref="IBackend.Gemm"/>).</summary>
    public void Gemm(bool transA, bool transB, int M, int N, int K, float alpha,
                     Tensor A, int lda, long strideA, Tensor B, int ldb, long strideB,
                     float beta, Tensor C, int ldc, long strideC, int batch)
        => Gemm(transA, transB, M, N, K, alpha, A.Ptr, lda, strideA, B.Ptr, ldb, strideB, beta, C.Ptr, ldc, strideC, batch);

    /// <summary>The same row-major GEMM on device pointers, for ops that multiply scratch buffers.</summary>
    private void Gemm(bool transA, bool transB, int M, int N, int K, float alpha, nint A, int lda, long strideA,
                      nint B, int ldb, long strideB, float beta, nint C, int ldc, long strideC, int batch)
        // A row-major matrix is its transpose read column-major, so row-major C = op(A)·op(B) is column-major
        // Cᵀ = op(B)ᵀ·op(A)ᵀ on the same memory: swap A with B and M with N, keep the transpose flags and pitches.
        => Runtime.SgemmStridedBatched(transB, transA, N, M, K, alpha, B, ldb, strideB, A, lda, strideA,
                                       beta, C, ldc, strideC, batch);
}
