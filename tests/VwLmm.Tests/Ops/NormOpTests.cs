using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Tests.Ops.Reference;

namespace VwLmm.Tests.Ops;

/// <summary>LayerNorm and RMSNorm forward/backward against the double reference.</summary>
public abstract class NormOpTests : BackendOpTests
{
    private const float Eps = 1e-5f;

    /// <summary>Rows with a non-zero mean and varied scale, so centring and the variance both matter.</summary>
    protected static float[] NormInputs(int seed, int N, int C)
    {
        var x = OpHarness.Random(seed, N * C);
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                x[n * C + c] = x[n * C + c] * (1 + n % 5) + 0.5f * (n % 3);
        return x;
    }

    [TestCase(77, 83)]
    [TestCase(300, 256)]
    [TestCase(3, 5)]
    public void LayerNormForwardMatchesReference(int N, int C)
    {
        using var s = NewScope();
        var x = NormInputs(1, N, C);
        var gamma = OpHarness.Random(2, C);
        var beta = OpHarness.Random(3, C);
        var y = s.New("y", N, C);
        var mean = s.New("mean", N);
        var rstd = s.New("rstd", N);
        Backend.LayerNormForward(y, mean, rstd, s.Upload("x", x, N, C), s.Upload("gamma", gamma, C), s.Upload("beta", beta, C), N, C, Eps);
        var r = NormReference.LayerNorm(D(x), D(gamma), D(beta), N, C, Eps);
        OpHarness.AssertClose("y", r.Y, y.ToArray(), 1e-12);
        OpHarness.AssertClose("mean", r.Mean, mean.ToArray(), 1e-12);
        OpHarness.AssertClose("rstd", r.Rstd, rstd.ToArray(), 1e-12);
        s.CheckGuards();
    }

    [TestCase(77, 83)]
    [TestCase(300, 256)]
    [TestCase(2101, 9)] // several rows per CUDA block, the last block short
    public void LayerNormBackwardAccumulatesAndSkipsNulls(int N, int C)
    {
        using var s = NewScope();
        var x = NormInputs(4, N, C);
        var gamma = OpHarness.Random(5, C);
        var dy = OpHarness.Random(6, N * C);
        var dx0 = OpHarness.Random(7, N * C);
        var dg0 = OpHarness.Random(8, C);
        var db0 = OpHarness.Random(9, C);
        var r = NormReference.LayerNormBackward(D(dy), D(x), D(gamma), N, C, Eps);

        var tx = s.Upload("x", x, N, C);
        var tg = s.Upload("gamma", gamma, C);
        var mean = s.New("mean", N);
        var rstd = s.New("rstd", N);
        Backend.LayerNormForward(s.New("y", N, C), mean, rstd, tx, tg, s.Zeros("beta", C), N, C, Eps);
        var tdy = s.Upload("dy", dy, N, C);
        var dx = s.Upload("dx", dx0, N, C);
        var dg = s.Upload("dgamma", dg0, C);
        var db = s.Upload("dbeta", db0, C);

        Backend.LayerNormBackward(dx, dg, db, tdy, tx, tg, mean, rstd, N, C);
        OpHarness.AssertClose("dx", Plus(dx0, r.Dx), dx.ToArray(), 1e-11);
        OpHarness.AssertClose("dgamma", Plus(dg0, r.DGamma), dg.ToArray(), 1e-11);
        OpHarness.AssertClose("dbeta", Plus(db0, r.DBeta), db.ToArray(), 1e-11);
        var first = (dx.ToArray(), dg.ToArray(), db.ToArray());

        foreach (var (useDx, useDg, useDb) in new[] { (true, false, false), (false, true, false), (false, false, true) })
        {
            Backend.Upload<float>(dx, dx0);
            Backend.Upload<float>(dg, dg0);
            Backend.Upload<float>(db, db0);
            Backend.LayerNormBackward(useDx ? dx : null, useDg ? dg : null, useDb ? db : null, tdy, tx, tg, mean, rstd, N, C);
            string what = $"dx={useDx} dgamma={useDg} dbeta={useDb}";
            AssertBitIdentical($"{what}: dx", useDx ? first.Item1 : dx0, dx.ToArray());
            AssertBitIdentical($"{what}: dgamma", useDg ? first.Item2 : dg0, dg.ToArray());
            AssertBitIdentical($"{what}: dbeta", useDb ? first.Item3 : db0, db.ToArray());
        }
        s.CheckGuards();
    }

    [TestCase(77, 83)]
    [TestCase(300, 256)]
    [TestCase(3, 5)]
    public void RmsNormForwardMatchesReference(int N, int C)
    {
        using var s = NewScope();
        var x = NormInputs(10, N, C);
        var gamma = OpHarness.Random(11, C);
        var y = s.New("y", N, C);
        var rstd = s.New("rstd", N);
        Backend.RmsNormForward(y, rstd, s.Upload("x", x, N, C), s.Upload("gamma", gamma, C), N, C, Eps);
        var r = NormReference.RmsNorm(D(x), D(gamma), N, C, Eps);
        OpHarness.AssertClose("y", r.Y, y.ToArray(), 1e-12);
        OpHarness.AssertClose("rstd", r.Rstd, rstd.ToArray(), 1e-12);
        s.CheckGuards();
    }

    [TestCase(77, 83)]
    [TestCase(300, 256)]
    [TestCase(2101, 9)] // several rows per CUDA block, the last block short
    public void RmsNormBackwardAccumulatesAndSkipsNulls(int N, int C)
    {
        using var s = NewScope();
        var x = NormInputs(12, N, C);
        var gamma = OpHarness.Random(13, C);
        var dy = OpHarness.Random(14, N * C);
        var dx0 = OpHarness.Random(15, N * C);
        var dg0 = OpHarness.Random(16, C);
        var r = NormReference.RmsNormBackward(D(dy), D(x), D(gamma), N, C, Eps);

        var tx = s.Upload("x", x, N, C);
        var tg = s.Upload("gamma", gamma, C);
        var rstd = s.New("rstd", N);
        Backend.RmsNormForward(s.New("y", N, C), rstd, tx, tg, N, C, Eps);
        var tdy = s.Upload("dy", dy, N, C);
        var dx = s.Upload("dx", dx0, N, C);
        var dg = s.Upload("dgamma", dg0, C);

        Backend.RmsNormBackward(dx, dg, tdy, tx, tg, rstd, N, C);
        OpHarness.AssertClose("dx", Plus(dx0, r.Dx), dx.ToArray(), 1e-11);
        OpHarness.AssertClose("dgamma", Plus(dg0, r.DGamma), dg.ToArray(), 1e-11);
        var (firstDx, firstDg) = (dx.ToArray(), dg.ToArray());

        Backend.Upload<float>(dx, dx0);
        Backend.Upload<float>(dg, dg0);
        Backend.RmsNormBackward(dx, null, tdy, tx, tg, rstd, N, C);
        AssertBitIdentical("dx only: dx", firstDx, dx.ToArray());
        AssertBitIdentical("dx only: dgamma", dg0, dg.ToArray());
        Backend.Upload<float>(dx, dx0);
        Backend.RmsNormBackward(null, dg, tdy, tx, tg, rstd, N, C);
        AssertBitIdentical("dgamma only: dx", dx0, dx.ToArray());
        AssertBitIdentical("dgamma only: dgamma", firstDg, dg.ToArray());
        s.CheckGuards();
    }

    [Test]
    public void LayerNormReferenceBackwardMatchesFiniteDifferences()
    {
        const int N = 3, C = 7;
        var x = D(NormInputs(17, N, C));
        var gamma = D(OpHarness.Random(18, C));
        var beta = D(OpHarness.Random(19, C));
        var w = D(OpHarness.Random(20, N * C));
        var r = NormReference.LayerNormBackward(w, x, gamma, N, C, Eps);
        OpHarness.AssertAllClose("dx", OpHarness.FiniteDifference(v => OpHarness.Project(NormReference.LayerNorm(v, gamma, beta, N, C, Eps).Y, w), x), r.Dx, 1e-5, 1e-7);
        OpHarness.AssertAllClose("dgamma", OpHarness.FiniteDifference(g => OpHarness.Project(NormReference.LayerNorm(x, g, beta, N, C, Eps).Y, w), gamma), r.DGamma, 1e-5, 1e-7);
        OpHarness.AssertAllClose("dbeta", OpHarness.FiniteDifference(b => OpHarness.Project(NormReference.LayerNorm(x, gamma, b, N, C, Eps).Y, w), beta), r.DBeta, 1e-5, 1e-7);
    }

    [Test]
    public void RmsNormReferenceBackwardMatchesFiniteDifferences()
    {
        const int N = 3, C = 7;
        var x = D(NormInputs(21, N, C));
        var gamma = D(OpHarness.Random(22, C));
        var w = D(OpHarness.Random(23, N * C));
        var r = NormReference.RmsNormBackward(w, x, gamma, N, C, Eps);
        OpHarness.AssertAllClose("dx", OpHarness.FiniteDifference(v => OpHarness.Project(NormReference.RmsNorm(v, gamma, N, C, Eps).Y, w), x), r.Dx, 1e-5, 1e-7);
        OpHarness.AssertAllClose("dgamma", OpHarness.FiniteDifference(g => OpHarness.Project(NormReference.RmsNorm(x, g, N, C, Eps).Y, w), gamma), r.DGamma, 1e-5, 1e-7);
    }

    /// <summary>dgamma (and dbeta) of a backward pass on <paramref name="backend"/>, for determinism checks.</summary>
    protected static float[] NormWeightGradients(IBackend backend, bool rms, int N, int C)
    {
        using var s = new OpHarness.Scope(backend);
        var x = s.Upload("x", NormInputs(24, N, C), N, C);
        var gamma = s.Upload("gamma", OpHarness.Random(25, C), C);
        var dy = s.Upload("dy", OpHarness.Random(26, N * C), N, C);
        var mean = s.New("mean", N);
        var rstd = s.New("rstd", N);
        var dg = s.Zeros("dgamma", C);
        var db = s.Zeros("dbeta", C);
        if (rms)
        {
            backend.RmsNormForward(s.New("y", N, C), rstd, x, gamma, N, C, Eps);
            backend.RmsNormBackward(null, dg, dy, x, gamma, rstd, N, C);
        }
        else
        {
            backend.LayerNormForward(s.New("y", N, C), mean, rstd, x, gamma, s.Zeros("beta", C), N, C, Eps);
            backend.LayerNormBackward(null, dg, db, dy, x, gamma, mean, rstd, N, C);
        }
        return [.. dg.ToArray(), .. db.ToArray()];
    }

    [Test]
    public void WeightGradientsAreBitIdenticalAcrossRuns([Values] bool rms)
    {
        AssertBitIdentical("rerun", NormWeightGradients(Backend, rms, 1000, 83), NormWeightGradients(Backend, rms, 1000, 83));
    }
}

public sealed class CpuNormOpTests : NormOpTests
{
    protected override IBackend CreateBackend() => new Cpu.CpuBackend(2);

    [Test]
    public void WeightGradientsAreIndependentOfThreadCount([Values] bool rms)
    {
        using var single = new Cpu.CpuBackend(1);
        // 1000 rows are 32 blocks of 32, split across both workers of the two-thread backend.
        AssertBitIdentical("1 vs 2 threads", NormWeightGradients(single, rms, 1000, 83), NormWeightGradients(Backend, rms, 1000, 83));
    }
}
