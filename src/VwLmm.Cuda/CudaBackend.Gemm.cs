using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>
/// GEMM: cuBLAS for F32 operands; for a BF16 weight matrix B (see <see cref="IBackend.Gemm"/>) the launchers of
/// kernels/gemm.cu — gemv_bf16 up to <see cref="GemvMaxRows"/> rows of A (decoding, where reading the weights is the
/// whole cost and bf16 halves it), otherwise B widened to f32 in a bounded scratch buffer, chunk by chunk, for cuBLAS.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    private const string GemmModule = "gemm";
    // Must match GEMV_WARPS and GEMV_MAX_M in gemm.cu.
    private const int GemvWarps = 4, GemvMaxRows = 4;
    // gridDim.y's limit: gemv_bf16 loops over the batch items beyond it.
    private const uint MaxGridY = 65535;

    // Widened B for cuBLAS, apart from Scratch: PatchEmbed multiplies columns that live in Scratch.
    private DeviceBuffer? _widened;

    /// <summary>Most f32 elements of widened B one cuBLAS call multiplies (64 MiB), unless a single row of B is longer.
    /// Tests lower it to reach the chunked path with small shapes.</summary>
    internal long WidenChunkFloats { get; set; } = 16L << 20;

    /// <summary>
    /// C [M,N] = alpha·op(A)·op(B) + beta·C (+ bias, + addend) per batch item, row-major (see <see cref="IBackend.Gemm"/>).
    /// cuBLAS has no epilogue: the bias is bias_add_f32 on each item's C, the addend add_f32.
    /// </summary>
    public void Gemm(bool transA, bool transB, int M, int N, int K, float alpha,
                     Tensor A, int lda, long strideA, Tensor B, int ldb, long strideB,
                     float beta, Tensor C, int ldc, long strideC, int batch, Tensor? bias = null, long strideBias = 0, Tensor? addend = null)
    {
        GemmOperands.Check(transA, transB, A, B, C);
        GemmOperands.CheckEpilogue(bias, strideBias, addend, C, M, N, ldc, strideC, batch);
        if (M == 0 || N == 0 || batch == 0) return;
        if (B.DType == DType.F32)
            Gemm(transA, transB, M, N, K, alpha, A.Ptr, lda, strideA, B.Ptr, ldb, strideB, beta, C.Ptr, ldc, strideC, batch);
        else if (M <= GemvMaxRows)
            GemvBf16(M, N, K, alpha, A.Ptr, lda, strideA, B.Ptr, ldb, strideB, beta, C.Ptr, ldc, strideC, batch);
        else
            WidenedGemm(M, N, K, alpha, A.Ptr, lda, strideA, B.Ptr, ldb, strideB, beta, C.Ptr, ldc, strideC, batch);
        for (int i = 0; i < batch; i++)
        {
            nint c = C.Ptr + (nint)(i * strideC * sizeof(float));
            if (bias is not null) BiasAdd(c, bias.Ptr + (nint)(i * strideBias * sizeof(float)), M, N, 1);
            if (addend is not null) Add(c, c, addend.Ptr + (nint)(i * strideC * sizeof(float)), (long)M * N);
        }
    }

    /// <summary>The row-major GEMM on F32 device pointers, for ops that multiply scratch buffers.</summary>
    private void Gemm(bool transA, bool transB, int M, int N, int K, float alpha, nint A, int lda, long strideA,
                      nint B, int ldb, long strideB, float beta, nint C, int ldc, long strideC, int batch)
        // A row-major matrix is its transpose read column-major, so row-major C = op(A)·op(B) is column-major
        // Cᵀ = op(B)ᵀ·op(A)ᵀ on the same memory: swap A with B and M with N, keep the transpose flags and pitches.
        // cuBLAS rejects a pitch below 1 even where K = 0 leaves nothing to read (C = beta·C): A [M,0] has lda = 0.
        => Runtime.SgemmStridedBatched(transB, transA, N, M, K, alpha, B, Math.Max(ldb, 1), strideB,
                                       A, Math.Max(lda, 1), strideA, beta, C, ldc, strideC, batch);

    private void GemvBf16(int M, int N, int K, float alpha, nint A, int lda, long strideA, nint B, int ldb, long strideB,
                          float beta, nint C, int ldc, long strideC, int batch)
    {
        ReadOnlySpan<KernelArg> args = [&C, &A, &B, &M, &N, &K, &alpha, &beta, &lda, &ldb, &ldc, &strideA, &strideB, &strideC, &batch];
        Launch(GemmModule, "gemv_bf16", (CeilDiv(N, GemvWarps), Math.Min((uint)batch, MaxGridY), 1), (GemvWarps * 32, 1, 1), 0, args);
    }

    /// <summary>
    /// C = alpha·A·Bᵀ + beta·C through cuBLAS on B widened to f32 with B's own layout (pitch ldb, stride strideB; the
    /// padding between rows is widened too, and never read): every batch item in one call when B's whole extent fits
    /// in <see cref="WidenChunkFloats"/>, otherwise chunks of N rows of one batch item at a time.
    /// </summary>
    private void WidenedGemm(int M, int N, int K, float alpha, nint A, int lda, long strideA, nint B, int ldb, long strideB,
                             float beta, nint C, int ldc, long strideC, int batch)
    {
        long Extent(long rows) => (rows - 1) * ldb + K;
        long whole = (batch - 1) * strideB + Extent(N);
        if (whole <= WidenChunkFloats)
        {
            Gemm(false, true, M, N, K, alpha, A, lda, strideA, Widen(B, whole), ldb, strideB, beta, C, ldc, strideC, batch);
            return;
        }
        int rows = (int)Math.Clamp((WidenChunkFloats - K) / ldb + 1, 1, N);
        for (int b = 0; b < batch; b++)
            for (int n0 = 0; n0 < N; n0 += rows)
            {
                int r = Math.Min(rows, N - n0);
                nint w = Widen(B + (nint)((b * strideB + (long)n0 * ldb) * sizeof(ushort)), Extent(r));
                Gemm(false, true, M, r, K, alpha, A + (nint)(b * strideA * sizeof(float)), lda, 0, w, ldb, 0,
                     beta, C + (nint)((b * strideC + n0) * sizeof(float)), ldc, 0, 1);
            }
    }

    /// <summary>The first <paramref name="n"/> bf16 elements at <paramref name="src"/>, widened into <see cref="_widened"/>.
    /// Chunks may reuse it at once: the previous chunk's GEMM is ahead of this widening on the stream.</summary>
    private nint Widen(nint src, long n)
    {
        nint dst = Grow(ref _widened, n * sizeof(float));
        Bf16ToF32(dst, src, n);
        return dst;
    }

    /// <summary>y [n] = the bf16 bits x [n] as f32 (exact).</summary>
    internal void Bf16ToF32(nint y, nint x, long n)
    {
        ReadOnlySpan<KernelArg> args = [&y, &x, &n];
        Pointwise(GemmModule, "bf16_to_f32", n, args);
    }
}
