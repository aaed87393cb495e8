using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>kernels/elementwise.cu through CudaBackend on the emulator, against double references, guards checked.</summary>
[TestFixture]
public sealed class ElementwiseTests : EmuFixture
{
    private const int N = 77, C = 83;
    private const double Exact = 1e-13;

    private static double[] Map(float[] a, Func<double, double> f) => a.Select(v => f(v)).ToArray();

    [Test]
    public void FillCopyAddAxpyScale()
    {
        using var s = new OpHarness.Scope(Backend);
        var a = OpHarness.Random(1, N * C);
        var b = OpHarness.Random(2, N * C);
        var ta = s.Upload("a", a, N * C);
        var tb = s.Upload("b", b, N * C);
        var y = s.New("y", N * C);

        Backend.Fill(y, 1.25f);
        OpHarness.AssertClose("fill", Enumerable.Repeat(1.25, N * C).ToArray(), y.ToArray(), 0);
        Backend.Copy(y, ta, N * C - 5);
        OpHarness.AssertClose("copy", a.Take(N * C - 5).Select(v => (double)v).Concat(Enumerable.Repeat(1.25, 5)).ToArray(), y.ToArray(), 0);
        Backend.Add(ta, ta, tb, N * C);
        OpHarness.AssertClose("add (aliased)", a.Zip(b, (p, q) => (double)p + q).ToArray(), ta.ToArray(), Exact);
        var sum = ta.ToArray();
        Backend.Axpy(ta, tb, N * C, -0.75f);
        OpHarness.AssertClose("axpy", sum.Zip(b, (p, q) => p + -0.75 * q).ToArray(), ta.ToArray(), Exact);
        var ax = ta.ToArray();
        Backend.Scale(ta, N * C, 3f);
        OpHarness.AssertClose("scale", Map(ax, v => 3 * v), ta.ToArray(), Exact);
        s.CheckGuards();
    }

    [TestCase(1)]
    [TestCase(5)]
    public void BiasAdd(int P)
    {
        using var s = new OpHarness.Scope(Backend);
        var x = OpHarness.Random(3, N * C);
        var bias = OpHarness.Random(4, P * C);
        var tx = s.Upload("x", x, N, C);
        Backend.BiasAdd(tx, s.Upload("bias", bias, P, C), N, C, P);
        var expected = new double[N * C];
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) expected[n * C + c] = (double)x[n * C + c] + bias[n % P * C + c];
        OpHarness.AssertClose("bias add", expected, tx.ToArray(), Exact);
        s.CheckGuards();
    }

    // 300 rows of width P·C ≥ 64 rows per partial: the two-stage path with a short last chunk.
    [TestCase(77, 83, 1)]
    [TestCase(77, 83, 5)]
    [TestCase(301, 9, 2)]
    public void BiasBackwardAccumulatesDeterministically(int rows, int cols, int P)
    {
        using var s = new OpHarness.Scope(Backend);
        var dy = OpHarness.Random(5, rows * cols);
        var init = OpHarness.Random(6, P * cols);
        var tdy = s.Upload("dy", dy, rows, cols);
        var db = s.Upload("dbias", init, P, cols);
        Backend.BiasBackward(db, tdy, rows, cols, P);
        var first = db.ToArray();
        var reference = Reference.BiasBackward(OpHarness.ToDouble(dy), rows, cols, P);
        OpHarness.AssertClose("dbias", reference.Select((v, i) => v + init[i]).ToArray(), first, 1e-12);
        Backend.Upload<float>(db, init);
        Backend.BiasBackward(db, tdy, rows, cols, P);
        Assert.That(BitIdentical(first, db.ToArray()), "bias backward must be bit-identical when repeated");
        s.CheckGuards();
    }

    [TestCase(Activation.Gelu)]
    [TestCase(Activation.QuickGelu)]
    [TestCase(Activation.Silu)]
    public void ActivationForwardBackward(Activation act)
    {
        using var s = new OpHarness.Scope(Backend);
        var x = OpHarness.Random(7, N * C, 5f);
        var dy = OpHarness.Random(8, N * C);
        var dx0 = OpHarness.Random(9, N * C);
        var tx = s.Upload("x", x, N * C);
        var y = s.New("y", N * C);
        var dx = s.Upload("dx", dx0, N * C);
        Backend.ActivationForward(y, tx, N * C, act);
        OpHarness.AssertClose($"{act}", Map(x, v => Reference.Act(act, v)), y.ToArray(), 1e-12);
        Backend.ActivationBackward(dx, s.Upload("dy", dy, N * C), tx, N * C, act);
        var expected = x.Select((v, i) => dx0[i] + Reference.ActGrad(act, v) * dy[i]).ToArray();
        OpHarness.AssertClose($"{act} backward", expected, dx.ToArray(), 1e-12);
        s.CheckGuards();
    }

    [TestCase(true, true)]
    [TestCase(true, false)]
    [TestCase(false, true)]
    public void SwiGluForwardBackward(bool wantGate, bool wantUp)
    {
        using var s = new OpHarness.Scope(Backend);
        int n = N * C;
        var g = OpHarness.Random(10, n, 4f);
        var u = OpHarness.Random(11, n, 2f);
        var dy = OpHarness.Random(12, n);
        var dg0 = OpHarness.Random(13, n);
        var du0 = OpHarness.Random(14, n);
        var tg = s.Upload("gate", g, n);
        var tu = s.Upload("up", u, n);
        var y = s.New("y", n);
        Backend.SwiGluForward(y, tg, tu, n);
        OpHarness.AssertClose("swiglu", g.Select((v, i) => Reference.Act(Activation.Silu, v) * u[i]).ToArray(), y.ToArray(), 1e-12);
        var dg = s.Upload("dgate", dg0, n);
        var du = s.Upload("dup", du0, n);
        Backend.SwiGluBackward(wantGate ? dg : null, wantUp ? du : null, s.Upload("dy", dy, n), tg, tu, n);
        var eg = g.Select((v, i) => dg0[i] + (wantGate ? dy[i] * u[i] * Reference.ActGrad(Activation.Silu, v) : 0)).ToArray();
        var eu = g.Select((v, i) => du0[i] + (wantUp ? dy[i] * Reference.Act(Activation.Silu, v) : 0)).ToArray();
        OpHarness.AssertClose("dgate", eg, dg.ToArray(), 1e-12);
        OpHarness.AssertClose("dup", eu, du.ToArray(), 1e-12);
        s.CheckGuards();
    }

    [Test]
    public void GemmRowMajorThroughColumnMajorBlas([Values] bool transA, [Values] bool transB)
    {
        // Odd sizes, padded pitches, batch 2 with gaps between items, beta ≠ 0.
        const int M = 7, Nn = 5, K = 3, batch = 2;
        int lda = (transA ? M : K) + 2, ldb = (transB ? K : Nn) + 1, ldc = Nn + 3;
        long strideA = (transA ? K : M) * lda + 4, strideB = (transB ? Nn : K) * ldb + 1, strideC = M * ldc + 2;
        using var s = new OpHarness.Scope(Backend);
        var a = OpHarness.Random(15, strideA * batch);
        var b = OpHarness.Random(16, strideB * batch);
        var c = OpHarness.Random(17, strideC * batch);
        var tc = s.Upload("C", c, (int)strideC * batch);
        Backend.Gemm(transA, transB, M, Nn, K, 1.5f, s.Upload("A", a, (int)strideA * batch), lda, strideA,
                     s.Upload("B", b, (int)strideB * batch), ldb, strideB, -0.5f, tc, ldc, strideC, batch);
        var expected = OpHarness.ToDouble(c);
        for (int i = 0; i < batch; i++)
            Reference.Gemm(transA, transB, M, Nn, K, 1.5, OpHarness.ToDouble(a), lda, i * strideA, OpHarness.ToDouble(b), ldb, i * strideB,
                           -0.5, expected, ldc, i * strideC);
        OpHarness.AssertClose("gemm", expected, tc.ToArray(), 1e-12);
        s.CheckGuards();
    }
}
