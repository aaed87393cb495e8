namespace VwLmm.Tests.Ops.Reference;

/// <summary>Batched row-major GEMM in double, element by element from the IBackend.Gemm definition.</summary>
public static class GemmReference
{
    /// <summary>
    /// Returns the whole C array after C_b = alpha·op(A_b)·op(B_b) + beta·C_b for every batch item b; elements of c
    /// outside the [M,N] windows are returned unchanged. beta = 0 ignores C (BLAS: NaN there does not propagate).
    /// </summary>
    public static double[] Gemm(bool transA, bool transB, int M, int N, int K, double alpha,
                                float[] a, int lda, long strideA, float[] b, int ldb, long strideB,
                                double beta, float[] c, int ldc, long strideC, int batch)
    {
        var result = OpHarness.ToDouble(c);
        for (int bi = 0; bi < batch; bi++)
        {
            for (int i = 0; i < M; i++)
            {
                for (int j = 0; j < N; j++)
                {
                    double s = 0;
                    for (int k = 0; k < K; k++)
                    {
                        double av = transA ? a[bi * strideA + (long)k * lda + i] : a[bi * strideA + (long)i * lda + k];
                        double bv = transB ? b[bi * strideB + (long)j * ldb + k] : b[bi * strideB + (long)k * ldb + j];
                        s += av * bv;
                    }
                    long ci = bi * strideC + (long)i * ldc + j;
                    result[ci] = alpha * s + (beta == 0 ? 0 : beta * c[ci]);
                }
            }
        }
        return result;
    }
}
