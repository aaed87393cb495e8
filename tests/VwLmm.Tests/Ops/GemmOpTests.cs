using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Tests.Ops.Reference;

namespace VwLmm.Tests.Ops;

/// <summary>Batched row-major GEMM: transposes, leading dimensions above the minimum, batch strides, alpha/beta.</summary>
public abstract class GemmOpTests : BackendOpTests
{
    private static readonly (float Alpha, float Beta)[] Scalars = [(1f, 0f), (0.5f, -1.25f), (0f, 2f), (1f, 1f)];

    [Test]
    public void MatchesReference([Values] bool transA, [Values] bool transB, [Values(0, 1, 2, 3)] int scalars)
    {
        var (alpha, beta) = Scalars[scalars];
        Check(transA, transB, 37, 53, 29, alpha, beta, batch: 1, pad: 0, gap: 0);
    }

    [Test]
    public void BatchedWithPaddedRowsAndStrides([Values] bool transA, [Values] bool transB)
    {
        Check(transA, transB, 37, 53, 29, 0.75f, 0.5f, batch: 3, pad: 5, gap: 11);
    }

    [TestCase(1, 53, 29)]
    [TestCase(37, 1, 29)]
    [TestCase(37, 53, 1)]
    [TestCase(37, 53, 0)]
    [TestCase(130, 70, 300)]
    public void EdgeShapes(int M, int N, int K) => Check(true, false, M, N, K, 1f, 0.25f, batch: 2, pad: 3, gap: 0);

    // A linear layer over 1–5 rows (x·Wᵀ, β = 0): decoding's products, large enough to be split across threads.
    [TestCase(1, 600, 300)]
    [TestCase(2, 37, 29)]
    [TestCase(4, 600, 300)]
    [TestCase(5, 600, 300)]
    public void FewRowLinearShapes(int M, int N, int K) => Check(false, true, M, N, K, 0.75f, 0f, batch: 2, pad: 3, gap: 5);

    // Ops.LinearStack: G weight matrices back to back against one shared input (strideA = 0), few rows and many.
    [TestCase(1, 600, 300)]
    [TestCase(3, 37, 29)]
    [TestCase(9, 53, 29)]
    public void StackedLinearsShareOneInput(int M, int N, int K)
    {
        const int G = 3;
        var x = OpHarness.Random(11, M * K);
        var w = OpHarness.Random(12, G * N * K);
        using var s = NewScope();
        var c = s.Upload("c", Enumerable.Repeat(float.NaN, G * M * N).ToArray(), G * M * N);
        Backend.Gemm(false, true, M, N, K, 1f, s.Upload("x", x, M * K), K, 0, s.Upload("w", w, G * N * K), K, (long)N * K,
                     0f, c, N, (long)M * N, G);
        var expected = GemmReference.Gemm(false, true, M, N, K, 1, x, K, 0, w, K, (long)N * K, 0, new float[G * M * N], N, (long)M * N, G);
        OpHarness.AssertClose($"stacked linears M={M}", expected, c.ToArray(), 1e-11);
        s.CheckGuards();
    }

    /// <summary>
    /// A bias (shared, strideBias 0, or one per item) and an addend (a residual stream, C's layout) added after the
    /// product, on few-row products (the CPU's matrix-vector path), edge rows and columns, K past one 256-deep block
    /// and K = 0, with and without beta. Against the double reference, and bit for bit against the same Gemm followed
    /// by BiasAdd and Add, which the contract promises.
    /// </summary>
    [TestCase(false, true, 37, 53, 29, 0f, 53, true, false)]
    [TestCase(false, true, 3, 70, 300, 0f, 0, true, true)]
    [TestCase(false, true, 1, 70, 300, 0f, 0, false, true)]
    [TestCase(true, false, 130, 45, 300, 0.5f, 45, true, true)]
    [TestCase(false, false, 13, 33, 0, 0.5f, 33, true, true)]
    [TestCase(false, true, 3, 70, 0, 0f, 70, true, true)]
    [TestCase(false, true, 65, 128, 128, 0f, 128, true, false)]
    [TestCase(false, true, 128, 256, 768, 0f, 0, false, true)]
    public void BiasAndAddendAreAddedAfterTheProduct(bool transA, bool transB, int M, int N, int K, float beta, int strideBias,
                                                     bool withBias, bool withAddend)
    {
        const int batch = 3;
        int rowsA = transA ? K : M, lda = transA ? M : K, rowsB = transB ? N : K, ldb = transB ? K : N;
        long strideA = (long)rowsA * lda + 7, strideB = (long)rowsB * ldb + 5, strideC = (long)M * N + 3;
        var a = OpHarness.Random(21, (int)((batch - 1) * strideA + rowsA * lda));
        var b = OpHarness.Random(22, (int)((batch - 1) * strideB + rowsB * ldb));
        var c = OpHarness.Random(23, (int)((batch - 1) * strideC + M * N));
        var bias = OpHarness.Random(24, (batch - 1) * strideBias + N);
        var addend = OpHarness.Random(25, c.Length);
        using var s = NewScope();
        var (ta, tb) = (s.Upload("a", a, a.Length), s.Upload("b", b, b.Length));
        var tbias = withBias ? s.Upload("bias", bias, bias.Length) : null;
        var taddend = withAddend ? s.Upload("addend", addend, addend.Length) : null;
        var fused = s.Upload("c (one gemm)", c, c.Length);
        var apart = s.Upload("c (gemm, BiasAdd, Add)", c, c.Length);
        Backend.Gemm(transA, transB, M, N, K, 0.75f, ta, lda, strideA, tb, ldb, strideB, beta, fused, N, strideC, batch, tbias, strideBias, taddend);
        Backend.Gemm(transA, transB, M, N, K, 0.75f, ta, lda, strideA, tb, ldb, strideB, beta, apart, N, strideC, batch);
        for (int i = 0; i < batch; i++)
        {
            var item = apart.View(i * strideC, new Shape(M, N));
            if (tbias is not null) Backend.BiasAdd(item, tbias.View(i * strideBias, new Shape(N)), M, N, 1);
            if (taddend is not null) Backend.Add(item, taddend.View(i * strideC, new Shape(M, N)), item, (long)M * N);
        }
        var expected = GemmReference.Gemm(transA, transB, M, N, K, 0.75f, a, lda, strideA, b, ldb, strideB, beta, c, N, strideC, batch);
        for (int i = 0; i < batch; i++)
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++)
                {
                    long at = i * strideC + (long)m * N + n;
                    expected[at] += (withBias ? bias[i * strideBias + n] : 0) + (withAddend ? addend[at] : 0);
                }
        OpHarness.AssertClose($"gemm + bias + addend M={M} N={N} K={K} β={beta}", expected, fused.ToArray(), 1e-11);
        AssertBitIdentical("one gemm vs gemm, BiasAdd, Add", apart.ToArray(), fused.ToArray());
        s.CheckGuards();
    }

    [Test]
    public void RejectsABiasOrAddendItCannotAdd()
    {
        using var s = NewScope();
        var x = s.Upload("x", OpHarness.Random(1, 64), 64);
        var c = s.New("c", 64);
        void Gemm(Tensor? bias, int ldc, long strideBias, int batch, Tensor? addend = null) =>
            Backend.Gemm(false, true, 4, 4, 4, 1f, x, 4, 0, x, 4, 0, 0f, c, ldc, 16, batch, bias, strideBias, addend);
        Assert.Multiple(() =>
        {
            Assert.That(() => Gemm(s.Upload("bias", new float[4], 4), 5, 0, 1), Throws.ArgumentException.With.Message.Contains("ldc 5"), "pitched C");
            Assert.That(() => Gemm(s.Upload("bias", new float[7], 7), 4, 4, 2), Throws.ArgumentException.With.Message.Contains("bias [7]"), "short bias");
            Assert.That(() => Gemm(s.UploadInts("bias", new int[4], 4), 4, 0, 1), Throws.ArgumentException.With.Message.Contains("bias is I32"), "i32 bias");
            Assert.That(() => Gemm(null, 4, 0, 2, s.New("addend", 31)), Throws.ArgumentException.With.Message.Contains("addend [31]"), "short addend");
            Assert.That(() => Gemm(null, 4, 0, 1, c), Throws.ArgumentException.With.Message.Contains("addend is C"), "C as its own addend");
            Assert.That(() => Gemm(null, 4, 0, 1, s.UploadInts("addend", new int[16], 16)), Throws.ArgumentException.With.Message.Contains("addend is I32"), "i32 addend");
        });
    }

    [Test]
    public void BetaZeroDoesNotReadC()
    {
        const int M = 37, N = 53, K = 29;
        using var s = NewScope();
        var a = OpHarness.Random(1, M * K);
        var b = OpHarness.Random(2, K * N);
        var c = s.Upload("c", Enumerable.Repeat(float.NaN, M * N).ToArray(), M * N);
        Backend.Gemm(false, false, M, N, K, 1f, s.Upload("a", a, M * K), K, 0, s.Upload("b", b, K * N), N, 0, 0f, c, N, 0, 1);
        var expected = GemmReference.Gemm(false, false, M, N, K, 1, a, K, 0, b, N, 0, 0, new float[M * N], N, 0, 1);
        OpHarness.AssertClose("beta=0 over NaN", expected, c.ToArray(), 1e-11);
        s.CheckGuards();
    }

    [Test]
    public void IsBitIdenticalAcrossRuns()
    {
        const int M = 64, N = 96, K = 80;
        using var s = NewScope();
        var a = s.Upload("a", OpHarness.Random(3, M * K), M * K);
        var b = s.Upload("b", OpHarness.Random(4, K * N), K * N);
        var c = s.New("c", M * N);
        Backend.Gemm(false, true, M, N, K, 1f, a, K, 0, b, K, 0, 0f, c, N, 0, 1);
        var first = c.ToArray();
        Backend.Gemm(false, true, M, N, K, 1f, a, K, 0, b, K, 0, 0f, c, N, 0, 1);
        AssertBitIdentical("gemm rerun", first, c.ToArray());
    }

    /// <summary>Stored matrices get <paramref name="pad"/> extra columns (ld above the minimum) and batch items
    /// <paramref name="gap"/> extra elements between them; C's padding must come back untouched.</summary>
    protected void Check(bool transA, bool transB, int M, int N, int K, float alpha, float beta, int batch, int pad, int gap)
    {
        int rowsA = transA ? K : M, lda = (transA ? M : K) + pad;
        int rowsB = transB ? N : K, ldb = (transB ? K : N) + pad;
        int ldc = N + pad;
        long strideA = (long)rowsA * lda + gap, strideB = (long)rowsB * ldb + gap, strideC = (long)M * ldc + gap;
        int sizeA = (int)((batch - 1) * strideA + rowsA * lda);
        int sizeB = (int)((batch - 1) * strideB + rowsB * ldb);
        int sizeC = (int)((batch - 1) * strideC + M * ldc);
        var a = OpHarness.Random(5, sizeA);
        var b = OpHarness.Random(6, sizeB);
        var c = OpHarness.Random(7, sizeC);

        using var s = NewScope();
        var tc = s.Upload("c", c, sizeC);
        Backend.Gemm(transA, transB, M, N, K, alpha, s.Upload("a", a, sizeA), lda, strideA,
                     s.Upload("b", b, sizeB), ldb, strideB, beta, tc, ldc, strideC, batch);
        var expected = GemmReference.Gemm(transA, transB, M, N, K, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch);
        OpHarness.AssertClose($"gemm tA={transA} tB={transB} α={alpha} β={beta}", expected, tc.ToArray(), 1e-11);
        s.CheckGuards();
    }
}

public sealed class CpuGemmOpTests : GemmOpTests
{
    protected override IBackend CreateBackend() => new Cpu.CpuBackend(2, Cpu.CpuGemm.OpenBlas);

    /// <summary>OpenBLAS's thread count is process-wide: a backend created later must not change an earlier one's.</summary>
    [Test]
    public void EachBackendRunsItsGemmsOnItsOwnThreadCount()
    {
        using var one = new Cpu.CpuBackend(1, Cpu.CpuGemm.OpenBlas);
        using var s1 = new OpHarness.Scope(one);
        using var s2 = NewScope();
        Assert.Multiple(() =>
        {
            Assert.That(ThreadsUsedBy(s2), Is.EqualTo(2), "2-thread backend created before a 1-thread one");
            Assert.That(ThreadsUsedBy(s1), Is.EqualTo(1), "1-thread backend");
            Assert.That(ThreadsUsedBy(s2), Is.EqualTo(2), "2-thread backend after the 1-thread one ran");
        });
    }

    /// <summary>
    /// OpenBLAS reads how long its idle threads spin once, as it loads: by the first GEMM the process environment must
    /// hold the backend's short spin, or the value the user exported before starting.
    /// </summary>
    [Test]
    public void OpenBlasLoadsWithAShortIdleSpin()
    {
        using var s = NewScope();
        ThreadsUsedBy(s);
        const string name = Cpu.Native.OpenBlas.ThreadTimeoutVariable;
        Assert.That(Cpu.Native.OpenBlas.GetEnv(name), Is.EqualTo(Environment.GetEnvironmentVariable(name) ?? Cpu.Native.OpenBlas.ThreadTimeout));
    }

    /// <summary>
    /// Decoding a batch must give each sample the logits it gets alone: a few-row product's rows are bit-identical to
    /// the same rows computed one at a time, and to a one-thread backend's.
    /// </summary>
    [Test]
    public void FewRowLinearRowsAreIndependentOfBatchAndThreads()
    {
        const int M = 3, N = 700, K = 256;
        using var one = new Cpu.CpuBackend(1, Cpu.CpuGemm.OpenBlas);
        using var s1 = new OpHarness.Scope(one);
        using var s = NewScope();
        var x = OpHarness.Random(8, M * K);
        var w = OpHarness.Random(9, N * K);
        float[] Rows(OpHarness.Scope sc, int first, int rows)
        {
            var c = sc.New("c", rows * N);
            sc.Backend.Gemm(false, true, rows, N, K, 1f, sc.Upload("x", x.AsSpan(first * K, rows * K).ToArray(), rows * K), K, 0,
                            sc.Upload("w", w, N * K), K, 0, 0f, c, N, 0, 1);
            return c.ToArray();
        }
        var all = Rows(s, 0, M);
        for (int r = 0; r < M; r++)
        {
            AssertBitIdentical($"row {r} alone", all.AsSpan(r * N, N).ToArray(), Rows(s, r, 1));
            AssertBitIdentical($"row {r} on one thread", all.AsSpan(r * N, N).ToArray(), Rows(s1, r, 1));
        }
    }

    private static int ThreadsUsedBy(OpHarness.Scope s)
    {
        var a = s.Upload("a", OpHarness.Random(1, 64), 8, 8);
        var c = s.New("c", 8, 8);
        s.Backend.Gemm(false, false, 8, 8, 8, 1f, a, 8, 0, a, 8, 0, 0f, c, 8, 0, 1);
        return Cpu.Native.OpenBlas.GetNumThreads();
    }
}

/// <summary>
/// <see cref="Cpu.PackedSgemm"/>: the shared suite, then shapes that cross its blocking (K past one 256-deep block, N past
/// one 1024-column panel, M past a 132-row pass, edges on every side, edge rows in four-row tiles) and the promise that
/// an element's bits depend only on its row of op(A) and column of op(B).
/// </summary>
public sealed class CpuAvx512GemmOpTests : GemmOpTests
{
    protected override IBackend CreateBackend()
    {
        if (!Cpu.PackedSgemm.IsSupported) Assert.Ignore("Vector512 is not hardware-accelerated on this CPU");
        return new Cpu.CpuBackend(2, Cpu.CpuGemm.Avx512);
    }

    [Test]
    public void AutoPicksItWhereVector512IsAccelerated()
    {
        using var auto = new Cpu.CpuBackend(1);
        Assert.That(auto.GemmKernel, Is.EqualTo(Cpu.CpuGemm.Avx512));
    }

    [TestCase(false, false, 205, 1100, 530)]
    [TestCase(false, true, 205, 1100, 530)]
    [TestCase(true, false, 97, 70, 1030)]
    [TestCase(true, true, 13, 1057, 257)]
    [TestCase(false, true, 139, 70, 300)] // a 132-row pass, then a four-row tile in place and one of three copied rows
    [TestCase(true, false, 8, 45, 40)]    // two four-row tiles, no copy
    public void ShapesAcrossTheBlocking(bool transA, bool transB, int M, int N, int K) =>
        Check(transA, transB, M, N, K, 0.5f, -0.75f, batch: 1, pad: 0, gap: 0);

    /// <summary>
    /// Rows of A 4 KiB apart (a pitch of 1024 floats), or a transposed A's k, are copied before the products, which
    /// crowd one L1 set otherwise: the bits of the same A read in place at a pitch of 1025, across a 132-row pass, an
    /// edge of seven rows, two blocks of K and an edge of columns.
    /// </summary>
    [Test]
    public void ARowPitchOf4KiBGivesTheBitsOfAPitchReadInPlace([Values] bool transA, [Values] bool transB)
    {
        const int M = 139, N = 70, K = 300;
        using var s = NewScope();
        var a = OpHarness.Random(41, M * K);
        var b = OpHarness.Random(42, K * N);
        var c0 = OpHarness.Random(43, M * N);
        float[] Product(int lda)
        {
            // op(A) is a [M,K]: stored so, or as its transpose [K,M], a stored row every lda floats.
            int rows = transA ? K : M, cols = transA ? M : K;
            var pitched = new float[rows * lda];
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) pitched[r * lda + c] = transA ? a[c * K + r] : a[r * K + c];
            var tc = s.Upload($"c{lda}", c0, M * N);
            Backend.Gemm(transA, transB, M, N, K, 0.5f, s.Upload($"a{lda}", pitched, rows * lda), lda, 0,
                         s.Upload($"b{lda}", b, K * N), transB ? K : N, 0, -0.75f, tc, N, 0, 1);
            return tc.ToArray();
        }
        var copied = Product(1024);
        AssertBitIdentical("pitch 1024 vs 1025", Product(1025), copied);
        OpHarness.AssertClose("pitch 1024", GemmReference.Gemm(false, transB, M, N, K, 0.5, a, K, 0, b, transB ? K : N, 0, -0.75, c0, N, 0, 1), copied);
        s.CheckGuards();
    }

    /// <summary>
    /// Products of up to 132 rows (a batch-1 forward's) pack each micro-panel of B just before its only use, in the
    /// columns each thread takes: a stack of three linear layers (N not a multiple of the 32-column panel) with a bias
    /// and an addend gives one thread's bits, every time.
    /// </summary>
    [TestCase(65, 200, 300)]
    [TestCase(128, 256, 256)]
    public void FewRowProductsGiveOneThreadsBits(int M, int N, int K)
    {
        const int Batch = 3;
        using var one = new Cpu.CpuBackend(1, Cpu.CpuGemm.Avx512);
        using var s1 = new OpHarness.Scope(one);
        using var s = NewScope();
        var x = OpHarness.Random(31, M * K);
        var w = OpHarness.Random(32, Batch * N * K);
        var bias = OpHarness.Random(33, Batch * N);
        var addend = OpHarness.Random(34, Batch * M * N);
        float[] Product(OpHarness.Scope sc)
        {
            var c = sc.New("c", Batch * M * N);
            sc.Backend.Gemm(false, true, M, N, K, 1f, sc.Upload("x", x, M * K), K, 0, sc.Upload("w", w, Batch * N * K), K, (long)N * K,
                            0f, c, N, (long)M * N, Batch, sc.Upload("bias", bias, Batch * N), N, sc.Upload("addend", addend, Batch * M * N));
            return c.ToArray();
        }
        var expected = Product(s1);
        for (int run = 0; run < 20; run++) AssertBitIdentical($"run {run}", expected, Product(s));
    }

    /// <summary>
    /// One thread or two, the whole product or a block of C's rows and columns on its own (offset pointers, the full
    /// leading dimensions): the same bits. So a train step does not depend on the thread count, and the bf16 GEMM's
    /// widened blocks give the one-block product.
    /// </summary>
    [Test]
    public void AnElementsBitsDependOnlyOnItsRowAndColumn([Values] bool transA, [Values] bool transB)
    {
        const int M = 150, N = 300, K = 600;
        using var one = new Cpu.CpuBackend(1, Cpu.CpuGemm.Avx512);
        using var s1 = new OpHarness.Scope(one);
        using var s = NewScope();
        var a = OpHarness.Random(24, M * K);
        var b = OpHarness.Random(25, K * N);
        int lda = transA ? M : K, ldb = transB ? K : N;
        float[] Product(OpHarness.Scope sc, int m0, int m, int n0, int n)
        {
            var ta = sc.Upload("a", a, M * K);
            var tb = sc.Upload("b", b, K * N);
            var c = sc.New("c", M * N);
            long offA = transA ? m0 : (long)m0 * lda, offB = transB ? (long)n0 * ldb : n0;
            long offC = (long)m0 * N + n0;
            sc.Backend.Gemm(transA, transB, m, n, K, 1f, ta.View(offA, new Shape((int)(ta.Numel - offA))), lda, 0,
                            tb.View(offB, new Shape((int)(tb.Numel - offB))), ldb, 0, 0f, c.View(offC, new Shape((int)(c.Numel - offC))), N, 0, 1);
            var all = c.ToArray();
            var block = new float[m * n];
            for (int i = 0; i < m; i++) Array.Copy(all, (m0 + i) * N + n0, block, i * n, n);
            return block;
        }
        var whole = Product(s, 0, M, 0, N);
        AssertBitIdentical("one thread", whole, Product(s1, 0, M, 0, N));
        var block = Product(s, 37, 50, 45, 70);
        for (int i = 0; i < 50; i++)
            AssertBitIdentical($"row {37 + i} of a block", whole.AsSpan((37 + i) * N + 45, 70).ToArray(), block.AsSpan(i * 70, 70).ToArray());
    }
}
