using System.Runtime.Intrinsics;
using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Tests.Ops.Reference;

namespace VwLmm.Tests.Ops;

/// <summary>
/// Gemm with a BF16 weight matrix (y = alpha·x·Wᵀ + beta·y, W [N,K] stored bf16): the F32 product with W widened
/// exactly, checked against the double-precision reference of that product.
/// </summary>
public abstract class Bf16GemmOpTests : BackendOpTests
{
    [Test]
    public void MatchesWidenedReference([Values(1, 4, 5, 37)] int M, [Values(72, 129)] int K, [Values(0f, 0.5f)] float beta)
    {
        var p = new Problem(M, 53, K, batch: 3, pad: 3, gap: 5, shareA: false);
        Check(p, beta);
    }

    /// <summary>
    /// A weight matrix the CPU widens in several blocks, its last columns from a shorter one (M ≥ 5), or reads in
    /// cache-sized slices of rows, each for every row of x before the next (M = 3).
    /// </summary>
    [Test]
    public void MatchesWidenedReferenceForALargeMatrix([Values(3, 5, 37)] int M) => Check(new Problem(M, 601, 8200, 1, 2, 0, false), 0f);

    private void Check(Problem p, float beta)
    {
        const float alpha = 0.75f;
        using var s = NewScope();
        var c = s.Upload("c", p.C, p.C.Length);
        p.Run(Backend, s, alpha, beta, s.UploadBf16("w", p.Bits, p.Bits.Length), c);
        var expected = GemmReference.Gemm(false, true, p.M, p.N, p.K, alpha, p.A, p.Lda, p.StrideA, p.Widened, p.Ldb, p.StrideB,
                                          beta, p.C, p.Ldc, p.StrideC, p.Batch);
        OpHarness.AssertClose($"bf16 gemm M={p.M} K={p.K} β={beta}", expected, c.ToArray(), 1e-11);
        s.CheckGuards();
    }

    /// <summary>
    /// A batched x·Wᵀ with lda/ldb/ldc above the minimum and gaps between batch items (or one input shared by all, as
    /// Ops.LinearStack passes it): random f32 inputs and C, random bf16 weights and their exact f32 widening.
    /// </summary>
    protected sealed class Problem
    {
        public Problem(int M, int N, int K, int batch, int pad, int gap, bool shareA)
        {
            (this.M, this.N, this.K, Batch) = (M, N, K, batch);
            (Lda, Ldb, Ldc) = (K + pad, K + pad, N + pad);
            StrideA = shareA ? 0 : (long)M * Lda + gap;
            StrideB = (long)N * Ldb + gap;
            StrideC = (long)M * Ldc + gap;
            A = OpHarness.Random(M * 100 + K, (batch - 1) * StrideA + M * Lda);
            C = OpHarness.Random(N * 100 + K, (batch - 1) * StrideC + M * Ldc);
            Bits = Bf16Random(K * 100 + N, (batch - 1) * StrideB + N * Ldb);
            Widened = Array.ConvertAll(Bits, Widen);
        }

        public int M { get; }
        public int N { get; }
        public int K { get; }
        public int Batch { get; }
        public int Lda { get; }
        public int Ldb { get; }
        public int Ldc { get; }
        public long StrideA { get; }
        public long StrideB { get; }
        public long StrideC { get; }
        public float[] A { get; }
        public float[] C { get; }
        public ushort[] Bits { get; }
        public float[] Widened { get; }

        public void Run(IBackend backend, OpHarness.Scope s, float alpha, float beta, Tensor w, Tensor c) =>
            backend.Gemm(false, true, M, N, K, alpha, s.Upload("a", A, A.Length), Lda, StrideA, w, Ldb, StrideB,
                         beta, c, Ldc, StrideC, Batch);
    }

    /// <summary>The top halves of uniform floats in (−2, 2): bf16 values with varied exponents and all mantissa bits.</summary>
    protected static ushort[] Bf16Random(int seed, long n) =>
        Array.ConvertAll(OpHarness.Random(seed, n, 2f), x => (ushort)(BitConverter.SingleToUInt32Bits(x) >> 16));

    /// <summary>The contract's widening, written independently of the backend's: the bits become the f32's high half.</summary>
    protected static float Widen(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
}

/// <summary>The CPU's bf16 products on its own GEMM where this CPU runs it (which widens B as it packs) and on OpenBLAS.</summary>
[TestFixture(CpuGemm.Auto)]
[TestFixture(CpuGemm.OpenBlas)]
public sealed class CpuBf16GemmOpTests(CpuGemm gemm) : Bf16GemmOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2, gemm);

    /// <summary>
    /// Every element has the bits of the F32 Gemm on the widened matrix: M ≤ 4 (β = 0) runs the matrix-vector product,
    /// the rest PackedSgemm, or on OpenBLAS one widened block and sgemm; N = 53 is no multiple of a vector width (a
    /// last panel packed element by element), K = 72 and 129 leave k past the last square block.
    /// </summary>
    [Test]
    public void IsBitIdenticalToF32GemmOnTheWidenedMatrix([Values(1, 2, 4, 5, 37, 130)] int M, [Values(72, 129, 256)] int K,
                                                          [Values(1, 3)] int batch, [Values(0f, 0.5f)] float beta) =>
        CheckBitIdentical(new Problem(M, 53, K, batch, pad: 3, gap: 5, shareA: false), beta);

    /// <summary>Ops.LinearStack's call: G weight matrices back to back against one input (strideA = 0).</summary>
    [Test]
    public void StackedLinearsAreBitIdenticalToF32([Values(1, 3, 9)] int M) =>
        CheckBitIdentical(new Problem(M, 600, 300, batch: 3, pad: 0, gap: 0, shareA: true), 0f);

    /// <summary>
    /// A matrix widened in three blocks (201, 201, 199 rows), so every block but the first writes C's columns from an
    /// unaligned offset. One sgemm per block need not give the bits of one sgemm on the whole widened matrix (OpenBLAS's
    /// order over K follows its tiles and thread ranges, which the blocks move), only the same sums to rounding:
    /// |Δ| ≤ 2⁻²⁰·|alpha|·‖a‖·‖w‖, which bounds 2⁻²⁰·Σ_k|alpha·a_k·w_k| (2⁻²⁵ of it seen; a misplaced or
    /// mis-widened row is off by the order of the sum itself).
    /// </summary>
    [Test]
    public void BlockedSgemmAgreesWithOneSgemmToRounding([Values(5, 16, 37, 130)] int M, [Values(0f, 0.5f)] float beta)
    {
        const int N = 601, K = 8200;
        const float alpha = 0.75f;
        Assert.That(CpuBackend.WidenedBlockRows(N, K), Is.EqualTo(201), "blocks of this shape");
        var p = new Problem(M, N, K, batch: 2, pad: 2, gap: 3, shareA: false);
        var (c16, c32) = RunBoth(p, alpha, beta);
        for (int b = 0; b < p.Batch; b++)
        for (int m = 0; m < M; m++)
        {
            double aNorm = Norm(p.A, b * p.StrideA + (long)m * p.Lda, K);
            for (int n = 0; n < N; n++)
            {
                long i = b * p.StrideC + (long)m * p.Ldc + n;
                double bound = Math.ScaleB(Math.Abs(alpha) * aNorm * Norm(p.Widened, b * p.StrideB + (long)n * p.Ldb, K), -20);
                if (!(Math.Abs((double)c16[i] - c32[i]) <= bound))
                    Assert.Fail($"M={M} β={beta} batch {b} row {m} column {n}: {c16[i]:G9} (bf16 w) vs {c32[i]:G9} (f32 w), bound {bound:E2}");
            }
        }
        AssertBitIdentical("C outside the products", Outside(p, c32), Outside(p, c16));
    }

    private static double Norm(float[] x, long start, int n)
    {
        double s = 0;
        for (int i = 0; i < n; i++) s += (double)x[start + i] * x[start + i];
        return Math.Sqrt(s);
    }

    /// <summary>C's elements outside every [M,N] window (row padding, gaps between batch items).</summary>
    private static float[] Outside(Problem p, float[] c)
    {
        var inside = new bool[c.Length];
        for (int b = 0; b < p.Batch; b++)
        for (int m = 0; m < p.M; m++)
            Array.Fill(inside, true, (int)(b * p.StrideC + (long)m * p.Ldc), p.N);
        return c.Where((_, i) => !inside[i]).ToArray();
    }

    private void CheckBitIdentical(Problem p, float beta)
    {
        var (c16, c32) = RunBoth(p, 0.75f, beta);
        AssertBitIdentical($"bf16 vs f32 gemm M={p.M} N={p.N} K={p.K} batch={p.Batch} β={beta}", c32, c16);
    }

    /// <summary>C after the Gemm with the bf16 weights and after the F32 Gemm with their widening.</summary>
    private (float[] Bf16, float[] F32) RunBoth(Problem p, float alpha, float beta)
    {
        using var s = NewScope();
        var c16 = s.Upload("c (bf16 w)", p.C, p.C.Length);
        var c32 = s.Upload("c (f32 w)", p.C, p.C.Length);
        p.Run(Backend, s, alpha, beta, s.UploadBf16("w", p.Bits, p.Bits.Length), c16);
        p.Run(Backend, s, alpha, beta, s.Upload("w widened", p.Widened, p.Widened.Length), c32);
        s.CheckGuards();
        return (c16.ToArray(), c32.ToArray());
    }

    [Test]
    public void RejectsOtherDTypeCombinations()
    {
        using var s = NewScope();
        var f = s.Upload("f", OpHarness.Random(1, 64), 64);
        var h = s.UploadBf16("h", Bf16Random(2, 64), 64);
        void Gemm(bool transA, bool transB, Tensor a, Tensor b, Tensor c) =>
            Backend.Gemm(transA, transB, 4, 4, 4, 1f, a, 4, 0, b, 4, 0, 0f, c, 4, 0, 1);
        Assert.Multiple(() =>
        {
            foreach (var (transA, transB) in new[] { (false, false), (true, false), (true, true) })
                Assert.That(() => Gemm(transA, transB, f, h, f),
                            Throws.ArgumentException.With.Message.Contains("B is BF16"), $"bf16 B with transA={transA} transB={transB}");
            Assert.That(() => Gemm(false, true, h, f, f), Throws.ArgumentException.With.Message.Contains("A is BF16"), "bf16 A");
            Assert.That(() => Gemm(false, true, f, f, h), Throws.ArgumentException.With.Message.Contains("C is BF16"), "bf16 C");
            var ints = s.UploadInts("i", new int[64], 64);
            Assert.That(() => Gemm(false, true, f, ints, f), Throws.ArgumentException.With.Message.Contains("B is I32"), "i32 B");
        });
    }

    /// <summary>
    /// Bit patterns and the floats they stand for, in vector lanes and in the scalar tail of both widths; NaNs keep
    /// their sign and payload, which only integer shifts (no float conversion) guarantee.
    /// </summary>
    [Test]
    public void WidensKnownBitPatterns([Values(256, 512)] int width)
    {
        (ushort Bits, float Value)[] known =
        [
            (0x3F80, 1f), (0xC000, -2f), (0x3F81, 1.0078125f), (0x4049, 3.140625f), (0x0000, 0f), (0x8000, -0f),
            (0x7F80, float.PositiveInfinity), (0xFF80, float.NegativeInfinity), (0x7F7F, MathF.ScaleB(255f, 120)),
            (0x0080, MathF.ScaleB(1f, -126)), (0x0001, MathF.ScaleB(1f, -133)), (0x807F, MathF.ScaleB(-127f, -133)),
            (0x7FC0, BitConverter.Int32BitsToSingle(0x7FC00000)), (0xFFC1, BitConverter.Int32BitsToSingle(unchecked((int)0xFFC10000))),
        ];
        // Two 512-bit vectors and a tail of three, every pattern in the tail under one of the rotations.
        var bits = new ushort[2 * 16 + 3];
        for (int rotation = 0; rotation < known.Length; rotation++)
        {
            for (int i = 0; i < bits.Length; i++) bits[i] = known[(i + rotation) % known.Length].Bits;
            var widened = WidenOnCpu(width, bits);
            for (int i = 0; i < bits.Length; i++)
            {
                float expected = known[(i + rotation) % known.Length].Value;
                Assert.That(BitConverter.SingleToInt32Bits(widened[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(expected)),
                            $"0x{bits[i]:X4} at {i}: {widened[i]:G9}, expected {expected:G9}");
            }
        }
    }

    [Test]
    public void WidensEveryBitPatternToItsHighHalf([Values(256, 512)] int width)
    {
        var bits = new ushort[65536 + 5];
        for (int i = 0; i < bits.Length; i++) bits[i] = (ushort)i;
        var widened = WidenOnCpu(width, bits);
        for (int i = 0; i < bits.Length; i++)
            if (BitConverter.SingleToUInt32Bits(widened[i]) != (uint)bits[i] << 16)
                Assert.Fail($"0x{bits[i]:X4} at {i} widened to 0x{BitConverter.SingleToUInt32Bits(widened[i]):X8}");
    }

    private static unsafe float[] WidenOnCpu(int width, ushort[] bits)
    {
        if (width == 512 && !Vector512.IsHardwareAccelerated) Assert.Ignore("AVX-512 is not accelerated here");
        var y = new float[bits.Length];
        fixed (ushort* p = bits)
        fixed (float* py = y)
            if (width == 512) SimdMath.Widen<V512>(py, (BF16*)p, bits.Length);
            else SimdMath.Widen<V256>(py, (BF16*)p, bits.Length);
        return y;
    }
}
