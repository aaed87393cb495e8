using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cuda;
using VwLmm.Tests.Ops;
using VwLmm.Tests.Ops.Reference;

namespace VwLmm.Tests.Cuda;

/// <summary>
/// CudaBackend's Gemm with a BF16 weight matrix B (kernels/gemm.cu): gemv_bf16 for M ≤ 4, B widened for cuBLAS above,
/// against the double product of the widened B, within the worst-case rounding bound of a K-term dot product. Padding
/// of A and B is NaN, so reading it fails; C's padding must come back bit for bit. Subclassed once per CUDA runtime.
/// </summary>
public abstract class Bf16GemmTests : BackendOpTests
{
    /// <summary>How the operands sit in memory. Packed: LinearStack's layout (batch items share A). Padded: pitches
    /// rounded past the minimum to keep every row 16-byte aligned (gemv's vector loads, then its scalar tail for K mod
    /// 8). Offset: A and B views one element into their buffers with odd pitches (gemv's scalar path).</summary>
    public enum Layout { Packed, Padded, Offset }

    private const ushort NaNBits = 0x7FC0;
    private const int N = 37;

    private CudaBackend Cuda => (CudaBackend)Backend;

    [Test]
    public void MatchesWidenedProduct([Values(1, 2, 3, 4, 5, 33)] int M, [Values(72, 129, 256)] int K,
                                      [Values(1, 3)] int batch, [Values] Layout layout) =>
        Check(M, K, batch, layout);

    /// <summary>Whole weight stacks above the chunk size are widened N rows at a time, per batch item: here 1 row (the
    /// chunk is below one row), 2 rows, and 13 rows with a short last chunk.</summary>
    [Test]
    public void WideningInChunksMatches([Values(1, 300, 2000)] long chunkFloats)
    {
        long before = Cuda.WidenChunkFloats;
        try
        {
            Cuda.WidenChunkFloats = chunkFloats;
            Check(6, 129, 3, Layout.Padded);
        }
        finally
        {
            Cuda.WidenChunkFloats = before;
        }
    }

    /// <summary>Two runs give the same bits, and each row of a 4-row product has the bits of that row alone: a decoded
    /// batch gives every sample the logits it gets by itself.</summary>
    [Test]
    public void GemvIsDeterministicAndRowsIndependentOfM([Values(1000, 1003)] int K)
    {
        const int M = 4, rows = 300;
        using var s = NewScope();
        using var w = Bf16Matrix.Upload(Backend, RandomBf16(40, (long)rows * K), 0);
        var a = s.Upload("a", OpHarness.Random(41, M * K), M * K);
        var c = s.New("c", M * rows);
        Backend.Gemm(false, true, M, rows, K, 1f, a, K, 0, w.Tensor, K, 0, 0f, c, rows, 0, 1);
        var first = c.ToArray();
        Backend.Gemm(false, true, M, rows, K, 1f, a, K, 0, w.Tensor, K, 0, 0f, c, rows, 0, 1);
        AssertBitIdentical("gemv rerun", first, c.ToArray());
        var one = s.New("one", rows);
        for (int i = 0; i < M; i++)
        {
            Backend.Gemm(false, true, 1, rows, K, 1f, a.View((long)i * K, new Shape(K)), K, 0, w.Tensor, K, 0, 0f, one, rows, 0, 1);
            AssertBitIdentical($"row {i} alone", first.AsSpan(i * rows, rows).ToArray(), one.ToArray());
        }
        s.CheckGuards();
    }

    /// <summary>bf16_to_f32 gives the f32 whose upper half is the bf16, for every class of value, over several blocks.</summary>
    [Test]
    public void WideningIsExactOnKnownBitPatterns()
    {
        // 1, −2, +inf, −inf, −0, +0, the smallest subnormal, a negative subnormal, a NaN with a payload, the largest finite.
        ushort[] patterns = [0x3F80, 0xC000, 0x7F80, 0xFF80, 0x8000, 0x0000, 0x0001, 0x807F, 0x7FC1, 0x7F7F];
        Assert.That(BitConverter.UInt32BitsToSingle(0x3F80u << 16), Is.EqualTo(1f));
        Assert.That(BitConverter.UInt32BitsToSingle(0xC000u << 16), Is.EqualTo(-2f));
        const int n = 2053;
        var bits = Enumerable.Range(0, n).Select(i => patterns[i % patterns.Length]).ToArray();
        using var s = NewScope();
        using var x = Bf16Matrix.Upload(Backend, bits, 1);
        var y = s.New("y", n);
        Cuda.Bf16ToF32(y.Ptr, x.Tensor.Ptr, n);
        var got = y.ToArray();
        for (int i = 0; i < n; i++)
            Assert.That(BitConverter.SingleToUInt32Bits(got[i]), Is.EqualTo((uint)bits[i] << 16), $"element {i}, bf16 0x{bits[i]:X4}");
        s.CheckGuards();
    }

    [TestCase(true, true, DType.F32, DType.BF16, DType.F32, "B", "BF16")]
    [TestCase(false, false, DType.F32, DType.BF16, DType.F32, "B", "BF16")]
    [TestCase(false, true, DType.F32, DType.F16, DType.F32, "B", "F16")]
    [TestCase(false, true, DType.BF16, DType.F32, DType.F32, "A", "BF16")]
    [TestCase(false, true, DType.F32, DType.BF16, DType.BF16, "C", "BF16")]
    public void UnsupportedTypeCombinationsThrow(bool transA, bool transB, DType a, DType b, DType c, string operand, string dtype)
    {
        const int M = 2, K = 8;
        using var buffer = Backend.Allocate(4L * N * K);
        Tensor T(DType t, int rows, int cols) => Tensor.FromBuffer(Backend, buffer, new Shape(rows, cols), t);
        var e = Assert.Throws<ArgumentException>(() => Backend.Gemm(transA, transB, M, N, K, 1f, T(a, M, K), K, 0, T(b, N, K), K, 0,
                                                                    0f, T(c, M, N), N, 0, 1))!;
        Assert.That(e.ParamName, Is.EqualTo(operand));
        Assert.That(e.Message, Does.Contain($"{operand} is {dtype}"));
    }

    private void Check(int M, int K, int batch, Layout layout)
    {
        var (lda, ldb, ldc, gapA, gapB, gapC, offset, beta) = layout switch
        {
            Layout.Packed => (K, K, N, 0, 0, 0, 0, 0f),
            Layout.Padded => (RoundUp(K, 4) + 4, RoundUp(K, 8) + 8, N + 3, 4, 8, 5, 0, -0.5f),
            _ => (K + 1, K + 1, N + 1, 1, 1, 1, 1, 0.25f),
        };
        const float alpha = 0.75f;
        long strideA = layout == Layout.Packed && batch > 1 ? 0 : (long)M * lda + gapA;
        long strideB = (long)N * ldb + gapB, strideC = (long)M * ldc + gapC;
        int sizeA = (int)((batch - 1) * strideA + (long)M * lda);
        int sizeB = (int)((batch - 1) * strideB + (long)N * ldb);
        int sizeC = (int)((batch - 1) * strideC + (long)M * ldc);

        var a = Padded(OpHarness.Random(50, sizeA), lda, K, strideA, M);
        var bBits = RandomBf16(51, sizeB);
        for (int i = 0; i < sizeB; i++)
            if (!InWindow(i, ldb, K, strideB, N)) bBits[i] = NaNBits;
        var b = Array.ConvertAll(bBits, Widen);
        // β = 0 must not read C: its windows start as NaN.
        var c = OpHarness.Random(52, sizeC);
        if (beta == 0)
            for (int i = 0; i < sizeC; i++)
                if (InWindow(i, ldc, N, strideC, M)) c[i] = float.NaN;

        using var s = NewScope();
        var ta = s.Upload("a", [.. new float[offset], .. a], sizeA + offset).View(offset, new Shape(sizeA));
        using var tb = Bf16Matrix.Upload(Backend, bBits, offset);
        var tc = s.Upload("c", c, sizeC);
        Backend.Gemm(false, true, M, N, K, alpha, ta, lda, strideA, tb.Tensor, ldb, strideB, beta, tc, ldc, strideC, batch);
        var got = tc.ToArray();

        var expected = GemmReference.Gemm(false, true, M, N, K, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch);
        // |α|·Σ|a·b| + |β·c|: K products summed in any order, then scaled by α and added to β·c, are within (K + 4)·2⁻²⁴ of it.
        var magnitude = GemmReference.Gemm(false, true, M, N, K, Math.Abs(alpha), Abs(a), lda, strideA, Abs(b), ldb, strideB,
                                           Math.Abs(beta), Abs(c), ldc, strideC, batch);
        double bound = (K + 4) * Math.ScaleB(1.0, -24);
        string what = $"M={M} K={K} batch={batch} {layout}";
        for (int i = 0; i < sizeC; i++)
        {
            if (!InWindow(i, ldc, N, strideC, M))
            {
                Assert.That(BitConverter.SingleToInt32Bits(got[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(c[i])), $"{what}: padding {i} written");
                continue;
            }
            double err = Math.Abs(got[i] - expected[i]);
            if (!(err <= bound * magnitude[i]))
                Assert.Fail($"{what}: element {i} is {got[i]:G9}, expected {expected[i]:G9} (error {err:E2}, bound {bound * magnitude[i]:E2})");
        }
        s.CheckGuards();
    }

    /// <summary>Whether flat index <paramref name="i"/> of a strided stack of [rows, cols] matrices with pitch ld is an
    /// element of a matrix rather than padding.</summary>
    private static bool InWindow(long i, int ld, int cols, long stride, int rows)
    {
        long within = stride == 0 ? i : i % stride;
        return within < (long)rows * ld && within % ld < cols;
    }

    private static float[] Padded(float[] x, int ld, int cols, long stride, int rows)
    {
        for (int i = 0; i < x.Length; i++)
            if (!InWindow(i, ld, cols, stride, rows)) x[i] = float.NaN;
        return x;
    }

    private static ushort[] RandomBf16(int seed, long n) =>
        Array.ConvertAll(OpHarness.Random(seed, n), x => (ushort)(BitConverter.SingleToUInt32Bits(x) >> 16));

    private static float Widen(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
    private static float[] Abs(float[] x) => Array.ConvertAll(x, MathF.Abs);
    private static int RoundUp(int x, int m) => (x + m - 1) / m * m;

    /// <summary>bf16 bits in a buffer of their own, <c>offset</c> elements in (an odd offset misaligns 16-byte loads).</summary>
    private sealed class Bf16Matrix(DeviceBuffer buffer, Tensor tensor) : IDisposable
    {
        public Tensor Tensor { get; } = tensor;

        public static Bf16Matrix Upload(IBackend backend, ushort[] bits, int offset)
        {
            var buffer = backend.Allocate((bits.Length + offset) * 2L);
            var whole = Tensor.FromBuffer(backend, buffer, new Shape(bits.Length + offset), DType.BF16);
            backend.Upload<ushort>(whole, [.. new ushort[offset], .. bits]);
            return new Bf16Matrix(buffer, whole.View(offset, new Shape(bits.Length)));
        }

        public void Dispose() => buffer.Dispose();
    }
}
