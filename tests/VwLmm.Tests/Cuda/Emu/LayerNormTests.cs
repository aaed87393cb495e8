using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cuda;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>kernels/layernorm.cu through CudaBackend on the emulator: LayerNorm and RMSNorm forward and backward
/// against double references, on a scalar-path width (83) and a float4-path width (96), with guards checked.</summary>
[TestFixture]
public sealed class LayerNormTests : EmuFixture
{
    private const int N = 77;
    private const float Eps = 1e-5f;

    private sealed record Inputs(float[] X, float[] Gamma, float[] Beta, float[] Dy, float[] Dx0, float[] Dg0, float[] Db0);

    private static Inputs Make(int C)
    {
        // A per-row offset makes the centring matter.
        var x = OpHarness.Random(1, N * C, 2f);
        for (int i = 0; i < x.Length; i++) x[i] += i / C % 5 - 2;
        return new Inputs(x, OpHarness.Random(2, C), OpHarness.Random(3, C), OpHarness.Random(4, N * C),
                          OpHarness.Random(5, N * C), OpHarness.Random(6, C), OpHarness.Random(7, C));
    }

    private static double[] Plus(float[] init, double[] delta) => delta.Select((v, i) => init[i] + v).ToArray();

    [TestCase(true, 83)]
    [TestCase(true, 96)]
    [TestCase(false, 83)]
    [TestCase(false, 96)]
    public void Forward(bool layerNorm, int C)
    {
        var p = Make(C);
        using var s = new OpHarness.Scope(Backend);
        var x = s.Upload("x", p.X, N, C);
        var g = s.Upload("gamma", p.Gamma, C);
        var y = s.New("y", N, C);
        var rstd = s.New("rstd", N);
        var (ey, emean, erstd) = Reference.NormForward(layerNorm, OpHarness.ToDouble(p.X), OpHarness.ToDouble(p.Gamma),
                                                       layerNorm ? OpHarness.ToDouble(p.Beta) : null, N, C, Eps);
        if (layerNorm)
        {
            var mean = s.New("mean", N);
            Backend.LayerNormForward(y, mean, rstd, x, g, s.Upload("beta", p.Beta, C), N, C, Eps);
            OpHarness.AssertClose("mean", emean, mean.ToArray(), 1e-12);
        }
        else
            Backend.RmsNormForward(y, rstd, x, g, N, C, Eps);
        OpHarness.AssertClose("y", ey, y.ToArray(), 1e-12);
        OpHarness.AssertClose("rstd", erstd, rstd.ToArray(), 1e-12);
        s.CheckGuards();
    }

    /// <summary>Runs forward then backward into gradients initialised from <paramref name="p"/>; returns dx, dγ, dβ.</summary>
    private (float[]? dx, float[]? dg, float[]? db) Backward(bool layerNorm, int C, Inputs p, bool wantDx, bool wantDg, bool wantDb)
    {
        using var s = new OpHarness.Scope(Backend);
        var x = s.Upload("x", p.X, N, C);
        var g = s.Upload("gamma", p.Gamma, C);
        var y = s.New("y", N, C);
        var mean = s.New("mean", N);
        var rstd = s.New("rstd", N);
        var dy = s.Upload("dy", p.Dy, N, C);
        var dx = wantDx ? s.Upload("dx", p.Dx0, N, C) : null;
        var dg = wantDg ? s.Upload("dgamma", p.Dg0, C) : null;
        var db = wantDb ? s.Upload("dbeta", p.Db0, C) : null;
        if (layerNorm)
        {
            Backend.LayerNormForward(y, mean, rstd, x, g, s.Upload("beta", p.Beta, C), N, C, Eps);
            Backend.LayerNormBackward(dx, dg, db, dy, x, g, mean, rstd, N, C);
        }
        else
        {
            Backend.RmsNormForward(y, rstd, x, g, N, C, Eps);
            Backend.RmsNormBackward(dx, dg, dy, x, g, rstd, N, C);
        }
        s.CheckGuards();
        return (dx?.ToArray(), dg?.ToArray(), db?.ToArray());
    }

    [TestCase(true, 83)]
    [TestCase(true, 96)]
    [TestCase(false, 83)]
    [TestCase(false, 96)]
    public void BackwardAccumulatesAndIsDeterministic(bool layerNorm, int C)
    {
        var p = Make(C);
        var (edx, edg, edb) = Reference.NormBackward(layerNorm, OpHarness.ToDouble(p.Dy), OpHarness.ToDouble(p.X),
                                                     OpHarness.ToDouble(p.Gamma), N, C, Eps);
        var first = Backward(layerNorm, C, p, true, true, layerNorm);
        OpHarness.AssertClose("dx", Plus(p.Dx0, edx), first.dx, 1e-10);
        OpHarness.AssertClose("dgamma", Plus(p.Dg0, edg), first.dg, 1e-10);
        if (layerNorm) OpHarness.AssertClose("dbeta", Plus(p.Db0, edb), first.db, 1e-12);

        var again = Backward(layerNorm, C, p, true, true, layerNorm);
        Assert.That(BitIdentical(first.dx!, again.dx!) && BitIdentical(first.dg!, again.dg!), "backward must be bit-identical when repeated");
        if (layerNorm) Assert.That(BitIdentical(first.db!, again.db!), "dbeta must be bit-identical when repeated");
    }

    [Test]
    public void BackwardDoesNotDependOnWorkerCount()
    {
        var p = Make(96);
        try
        {
            EmulatedRuntime.SetWorkers(1);
            var one = Backward(true, 96, p, true, true, true);
            EmulatedRuntime.SetWorkers(3);
            var three = Backward(true, 96, p, true, true, true);
            Assert.That(BitIdentical(one.dx!, three.dx!) && BitIdentical(one.dg!, three.dg!) && BitIdentical(one.db!, three.db!));
        }
        finally
        {
            EmulatedRuntime.SetWorkers(2);
        }
    }

    [TestCase(true)]
    [TestCase(false)]
    public void NullGradientsAreSkipped(bool layerNorm)
    {
        var p = Make(83);
        var (edx, edg, _) = Reference.NormBackward(layerNorm, OpHarness.ToDouble(p.Dy), OpHarness.ToDouble(p.X),
                                                   OpHarness.ToDouble(p.Gamma), N, 83, Eps);
        var onlyDx = Backward(layerNorm, 83, p, true, false, false);
        OpHarness.AssertClose("dx alone", Plus(p.Dx0, edx), onlyDx.dx, 1e-10);
        var onlyDg = Backward(layerNorm, 83, p, false, true, false);
        OpHarness.AssertClose("dgamma alone", Plus(p.Dg0, edg), onlyDg.dg, 1e-10);
    }
}
