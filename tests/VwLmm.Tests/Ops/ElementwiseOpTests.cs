using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Tests.Ops.Reference;

namespace VwLmm.Tests.Ops;

/// <summary>Fill, Copy, Add, Axpy, Scale, BiasAdd/Backward, activations and SwiGLU against the double reference.</summary>
public abstract class ElementwiseOpTests : BackendOpTests
{
    // 77·83 is odd and leaves a vector tail; 17 blocks of 2048 + 13 crosses the CPU's parallel threshold.
    private static readonly int[] Sizes = [5, 77 * 83, 2048 * 17 + 13];

    [Test]
    public void FillSetsEveryElement([ValueSource(nameof(Sizes))] int n)
    {
        using var s = NewScope();
        var x = s.Upload("x", OpHarness.Random(1, n), n);
        Backend.Fill(x, -2.5f);
        OpHarness.AssertClose("fill", Enumerable.Repeat(-2.5, n).ToArray(), x.ToArray(), 0);
        s.CheckGuards();
    }

    [Test]
    public void FillZeroClearsIntTensor()
    {
        using var s = NewScope();
        var ids = s.UploadInts("ids", Enumerable.Range(1, 77).ToArray(), 77);
        Backend.Fill(ids, 0f);
        Assert.That(ids.ToIntArray(), Is.All.EqualTo(0));
        s.CheckGuards();
    }

    [Test]
    public void CopyCopiesPrefix([ValueSource(nameof(Sizes))] int n)
    {
        using var s = NewScope();
        var src = OpHarness.Random(2, n);
        var dst0 = OpHarness.Random(3, n + 7);
        var dst = s.Upload("dst", dst0, n + 7);
        Backend.Copy(dst, s.Upload("src", src, n), n);
        var expected = D(dst0);
        for (int i = 0; i < n; i++) expected[i] = src[i];
        OpHarness.AssertClose("copy", expected, dst.ToArray(), 0);
        s.CheckGuards();
    }

    [Test]
    public void AddMatchesReference([ValueSource(nameof(Sizes))] int n)
    {
        using var s = NewScope();
        var a = OpHarness.Random(4, n);
        var b = OpHarness.Random(5, n);
        var y = s.New("y", n);
        var ta = s.Upload("a", a, n);
        var tb = s.Upload("b", b, n);
        Backend.Add(y, ta, tb, n);
        var expected = Plus(a, D(b));
        OpHarness.AssertClose("add", expected, y.ToArray(), 1e-14);
        Backend.Add(ta, ta, tb, n);
        OpHarness.AssertClose("add aliased y=a", expected, ta.ToArray(), 1e-14);
        s.CheckGuards();
    }

    [Test]
    public void AxpyAndScaleMatchReference([ValueSource(nameof(Sizes))] int n)
    {
        using var s = NewScope();
        var x = OpHarness.Random(6, n);
        var y0 = OpHarness.Random(7, n);
        var y = s.Upload("y", y0, n);
        Backend.Axpy(y, s.Upload("x", x, n), n, -0.75f);
        var expected = new double[n];
        for (int i = 0; i < n; i++) expected[i] = y0[i] - 0.75 * x[i];
        OpHarness.AssertClose("axpy", expected, y.ToArray(), 1e-14);

        var z = s.Upload("z", x, n);
        Backend.Scale(z, n, 1.5f);
        OpHarness.AssertClose("scale", Array.ConvertAll(x, v => 1.5 * v), z.ToArray(), 1e-14);
        s.CheckGuards();
    }

    [TestCase(77, 83, 1)]
    [TestCase(77, 83, 7)]
    [TestCase(300, 211, 1)]
    public void BiasAddMatchesReference(int N, int C, int P)
    {
        using var s = NewScope();
        var x = OpHarness.Random(8, N * C);
        var bias = OpHarness.Random(9, P * C);
        var tx = s.Upload("x", x, N, C);
        Backend.BiasAdd(tx, s.Upload("bias", bias, P, C), N, C, P);
        OpHarness.AssertClose("bias add", ElementwiseReference.BiasAdd(x, bias, N, C, P), tx.ToArray(), 1e-14);
        s.CheckGuards();
    }

    [TestCase(77, 83, 1)]
    [TestCase(77, 83, 7)]
    [TestCase(300, 211, 1)]
    public void BiasBackwardAccumulates(int N, int C, int P)
    {
        using var s = NewScope();
        var dy = OpHarness.Random(10, N * C);
        var db0 = OpHarness.Random(11, P * C);
        var db = s.Upload("dbias", db0, P, C);
        var tdy = s.Upload("dy", dy, N, C);
        Backend.BiasBackward(db, tdy, N, C, P);
        var first = db.ToArray();
        OpHarness.AssertClose("bias backward", Plus(db0, ElementwiseReference.BiasBackward(dy, N, C, P)), first, 1e-12);

        Backend.Upload<float>(db, db0);
        Backend.BiasBackward(db, tdy, N, C, P);
        AssertBitIdentical("bias backward rerun", first, db.ToArray());
        s.CheckGuards();
    }

    [Test]
    public void ActivationForwardMatchesReference([Values] Activation act, [ValueSource(nameof(Sizes))] int n)
    {
        using var s = NewScope();
        var x = ActivationInputs(12, n);
        var y = s.New("y", n);
        Backend.ActivationForward(y, s.Upload("x", x, n), n, act);
        OpHarness.AssertClose($"{act} forward", ElementwiseReference.Act(act, x), y.ToArray(), 1e-12);
        s.CheckGuards();
    }

    [Test]
    public void ActivationBackwardAddsOrStores([Values] Activation act, [ValueSource(nameof(Sizes))] int n, [Values] bool accumulate)
    {
        using var s = NewScope();
        var x = ActivationInputs(13, n);
        var dy = OpHarness.Random(14, n);
        var dx0 = GradientBefore(15, n, accumulate);
        var dx = s.Upload("dx", dx0, n);
        Tensor tdy = s.Upload("dy", dy, n), tx = s.Upload("x", x, n);
        Backend.ActivationBackward(dx, tdy, tx, n, act, accumulate);
        var prior = accumulate ? dx0 : new float[n];
        OpHarness.AssertClose($"{act} backward", ElementwiseReference.ActBackward(act, prior, dy, x), dx.ToArray(), 1e-12);
        AssertStoreEqualsAddToZeros($"{act} backward", a => Backend.ActivationBackward(dx, tdy, tx, n, act, a), dx);
        s.CheckGuards();
    }

    [Test]
    public void ActivationReferenceGradientMatchesFiniteDifferences([Values] Activation act)
    {
        var x = ActivationInputs(16, 64);
        var w = D(OpHarness.Random(17, 64));
        var fd = OpHarness.FiniteDifference(
            xs => OpHarness.Project(Array.ConvertAll(xs, v => ElementwiseReference.Act(act, v)), w), D(x));
        var grad = ElementwiseReference.ActBackward(act, new float[64], Array.ConvertAll(w, v => (float)v), x);
        OpHarness.AssertAllClose($"{act} gradient", fd, grad, 1e-5, 1e-7);
    }

    [Test]
    public void SwiGluForwardMatchesReference([ValueSource(nameof(Sizes))] int n)
    {
        using var s = NewScope();
        var gate = ActivationInputs(18, n);
        var up = OpHarness.Random(19, n, 2f);
        var y = s.New("y", n);
        Backend.SwiGluForward(y, s.Upload("gate", gate, n), s.Upload("up", up, n), n);
        OpHarness.AssertClose("swiglu forward", ElementwiseReference.SwiGlu(gate, up), y.ToArray(), 1e-12);
        s.CheckGuards();
    }

    [Test]
    public void SwiGluBackwardAddsOrStoresAndSkipsNulls([ValueSource(nameof(Sizes))] int n, [Values] bool accumulate)
    {
        using var s = NewScope();
        var gate = ActivationInputs(20, n);
        var up = OpHarness.Random(21, n, 2f);
        var dy = OpHarness.Random(22, n);
        var dg0 = GradientBefore(23, n, accumulate);
        var du0 = GradientBefore(24, n, accumulate);
        var (dg, du) = ElementwiseReference.SwiGluBackward(dy, gate, up);
        var tg = s.Upload("gate", gate, n);
        var tu = s.Upload("up", up, n);
        var tdy = s.Upload("dy", dy, n);
        var tdg = s.Upload("dgate", dg0, n);
        var tdu = s.Upload("dup", du0, n);

        Backend.SwiGluBackward(tdg, null, tdy, tg, tu, n, accumulate);
        var dgateAlone = tdg.ToArray();
        OpHarness.AssertClose("dgate", After(dg0, dg, accumulate), dgateAlone, 1e-12);
        Backend.SwiGluBackward(null, tdu, tdy, tg, tu, n, accumulate);
        var dupAlone = tdu.ToArray();
        OpHarness.AssertClose("dup", After(du0, du, accumulate), dupAlone, 1e-12);

        Backend.Upload<float>(tdg, dg0);
        Backend.Upload<float>(tdu, du0);
        Backend.SwiGluBackward(tdg, tdu, tdy, tg, tu, n, accumulate);
        OpHarness.AssertClose("dgate (both)", After(dg0, dg, accumulate), tdg.ToArray(), 1e-12);
        OpHarness.AssertClose("dup (both)", After(du0, du, accumulate), tdu.ToArray(), 1e-12);
        // A gradient's bits must not depend on whether the other one is wanted (frozen up/gate weights).
        AssertBitIdentical("dgate (both) vs alone", dgateAlone, tdg.ToArray());
        AssertBitIdentical("dup (both) vs alone", dupAlone, tdu.ToArray());
        AssertStoreEqualsAddToZeros("swiglu backward", a => Backend.SwiGluBackward(tdg, tdu, tdy, tg, tu, n, a), tdg, tdu);
        AssertStoreEqualsAddToZeros("swiglu dgate alone", a => Backend.SwiGluBackward(tdg, null, tdy, tg, tu, n, a), tdg);
        AssertStoreEqualsAddToZeros("swiglu dup alone", a => Backend.SwiGluBackward(null, tdu, tdy, tg, tu, n, a), tdu);
        s.CheckGuards();
    }

    /// <summary>One buffer for both gradients (silu(x)·x): both parts are added, whichever path the length takes.</summary>
    [Test]
    public void SwiGluBackwardAddsBothPartsIntoOneBuffer([ValueSource(nameof(Sizes))] int n)
    {
        using var s = NewScope();
        var x = ActivationInputs(25, n);
        var dy = OpHarness.Random(26, n);
        var d0 = OpHarness.Random(27, n);
        var (dg, du) = ElementwiseReference.SwiGluBackward(dy, x, x);
        var tx = s.Upload("x", x, n);
        var d = s.Upload("d", d0, n);
        Backend.SwiGluBackward(d, d, s.Upload("dy", dy, n), tx, tx, n, accumulate: true);
        OpHarness.AssertClose("dgate + dup", Plus(d0, dg.Zip(du, (a, b) => a + b).ToArray()), d.ToArray(), 1e-12);
        s.CheckGuards();
    }

    [Test]
    public void SwiGluReferenceGradientMatchesFiniteDifferences()
    {
        const int n = 48;
        var gate = ActivationInputs(25, n);
        var up = OpHarness.Random(26, n, 2f);
        var w = OpHarness.Random(27, n);
        var (dg, du) = ElementwiseReference.SwiGluBackward(w, gate, up);
        double Loss(double[] g, double[] u)
        {
            double l = 0;
            for (int i = 0; i < n; i++) l += w[i] * ElementwiseReference.Act(Activation.Silu, g[i]) * u[i];
            return l;
        }
        OpHarness.AssertAllClose("dgate", OpHarness.FiniteDifference(g => Loss(g, D(up)), D(gate)), dg, 1e-5, 1e-7);
        OpHarness.AssertAllClose("dup", OpHarness.FiniteDifference(u => Loss(D(gate), u), D(up)), du, 1e-5, 1e-7);
    }

    [Test]
    public void DropoutKeepsTheSplitMixMaskAndScalesIt([ValueSource(nameof(Sizes))] int n, [Values(0.1f, 0.5f)] float rate,
                                                        [Values] bool accumulate)
    {
        using var s = NewScope();
        const ulong seed = 0xD1CE_5EED_0000_0007UL;
        var x = OpHarness.Random(29, n);
        var y0 = GradientBefore(30, n, accumulate);
        var keep = ElementwiseReference.DropoutKeeps(seed, n, rate);
        var dropped = new double[n];
        for (int i = 0; i < n; i++) dropped[i] = keep[i] ? x[i] * (double)(1f / (1f - rate)) : 0;
        var y = s.Upload("y", y0, n);
        Backend.Dropout(y, s.Upload("x", x, n), n, rate, seed, accumulate);
        var got = y.ToArray();
        OpHarness.AssertClose("dropout", After(y0, dropped, accumulate), got, 1e-14);
        if (!accumulate)
            for (int i = 0; i < n; i++)
                Assert.That(got[i] == 0, Is.EqualTo(!keep[i]), $"element {i}: kept by the reference: {keep[i]}, value {got[i]}");
        s.CheckGuards();
    }

    [Test]
    public void DropoutDropsTheRateAndDependsOnTheSeed()
    {
        const int n = 2048 * 17 + 13;
        const float rate = 0.25f;
        using var s = NewScope();
        var x = s.Upload("x", Enumerable.Repeat(1f, n).ToArray(), n);
        var a = s.New("a", n);
        var b = s.New("b", n);
        Backend.Dropout(a, x, n, rate, 1, accumulate: false);
        Backend.Dropout(b, x, n, rate, 2, accumulate: false);
        float[] ma = a.ToArray(), mb = b.ToArray();
        // Binomial: σ = √(n·p·(1 − p)) ≈ 80 drops; 6σ leaves no room for a wrong threshold or a biased bit.
        int drops = ma.Count(v => v == 0), differ = ma.Zip(mb).Count(p => (p.First == 0) != (p.Second == 0));
        Assert.That(drops, Is.InRange(n * rate - 480, n * rate + 480));
        Assert.That(ma.Where(v => v != 0), Is.All.EqualTo(1f / (1f - rate)));
        Assert.That(differ, Is.InRange(n * 2 * rate * (1 - rate) - 600, n * 2 * rate * (1 - rate) + 600), "masks of two seeds should be independent");
        Backend.Dropout(x, x, n, rate, 1, accumulate: false);
        AssertBitIdentical("dropout in place", ma, x.ToArray());
        s.CheckGuards();
    }

    [Test]
    public void GeluIsBitIdenticalAcrossRuns()
    {
        const int n = 2048 * 17 + 13;
        using var s = NewScope();
        var x = s.Upload("x", ActivationInputs(28, n), n);
        var y = s.New("y", n);
        Backend.ActivationForward(y, x, n, Activation.Gelu);
        var first = y.ToArray();
        Backend.ActivationForward(y, x, n, Activation.Gelu);
        AssertBitIdentical("gelu rerun", first, y.ToArray());
    }

    /// <summary>Uniform in [−6, 6] (both erf branches, sigmoid saturation) plus exact zeros and large magnitudes.</summary>
    private static float[] ActivationInputs(int seed, int n)
    {
        var x = OpHarness.Random(seed, n, 6f);
        float[] special = [0f, -0f, 30f, -30f, 100f, -100f, 0.921875f, -0.921875f, 3.925f, 1e-30f];
        for (int i = 0; i < special.Length && i * 7 < n; i++) x[i * 7] = special[i];
        return x;
    }
}

public sealed class CpuElementwiseOpTests : ElementwiseOpTests
{
    protected override IBackend CreateBackend() => new Cpu.CpuBackend(2);
}
