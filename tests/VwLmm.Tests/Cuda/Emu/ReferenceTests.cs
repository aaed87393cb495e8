using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>Proves the double references before the kernels are compared with them: erf against tabulated values,
/// every backward formula against central finite differences of its forward.</summary>
[TestFixture]
public sealed class ReferenceTests
{
    [TestCase(0.5, 0.5204998778130465)]
    [TestCase(1.0, 0.8427007929497149)]
    [TestCase(-2.0, -0.9953222650189527)]
    [TestCase(3.5, 0.9999992569016276)]
    public void GeluUsesAnAccurateErf(double x, double erf)
        => Assert.That(Reference.Act(Activation.Gelu, x * Math.Sqrt(2)), Is.EqualTo(0.5 * x * Math.Sqrt(2) * (1 + erf)).Within(1e-12));

    [TestCase(Activation.Gelu)]
    [TestCase(Activation.QuickGelu)]
    [TestCase(Activation.Silu)]
    public void ActivationGradientMatchesFiniteDifferences(Activation act)
    {
        var x = OpHarness.ToDouble(OpHarness.Random(1, 41, 4f));
        var fd = OpHarness.FiniteDifference(v => v.Sum(e => Reference.Act(act, e)), x);
        OpHarness.AssertAllClose($"{act}'", fd, x.Select(e => Reference.ActGrad(act, e)).ToArray());
    }

    [TestCase(true)]
    [TestCase(false)]
    public void NormBackwardMatchesFiniteDifferences(bool centered)
    {
        const int N = 3, C = 7;
        const double eps = 1e-5;
        var x = OpHarness.ToDouble(OpHarness.Random(2, N * C, 2f));
        var gamma = OpHarness.ToDouble(OpHarness.Random(3, C));
        var beta = OpHarness.ToDouble(OpHarness.Random(4, C));
        var w = OpHarness.ToDouble(OpHarness.Random(5, N * C));
        var (dx, dgamma, dbeta) = Reference.NormBackward(centered, w, x, gamma, N, C, eps);
        double Loss(double[] xv, double[] g, double[] b) => OpHarness.Project(Reference.NormForward(centered, xv, g, centered ? b : null, N, C, eps).y, w);
        OpHarness.AssertAllClose("dx", OpHarness.FiniteDifference(v => Loss(v, gamma, beta), x), dx);
        OpHarness.AssertAllClose("dgamma", OpHarness.FiniteDifference(v => Loss(x, v, beta), gamma), dgamma);
        if (centered) OpHarness.AssertAllClose("dbeta", OpHarness.FiniteDifference(v => Loss(x, gamma, v), beta), dbeta);
    }
}
