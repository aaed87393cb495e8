using NUnit.Framework;
using VwLmm.Core;

namespace VwLmm.Tests.Core;

/// <summary>The host-side reductions that rank logits read back from a backend.</summary>
public class HostMathTests
{
    [Test]
    public void TopKIsTheLargestFirstWithTiesToTheLowerIndex()
    {
        float[] x = [0.5f, 3f, -1f, 3f, 2f, float.NegativeInfinity, 2f];
        Assert.That(HostMath.TopK(x, 1), Is.EqualTo(new[] { 1 }));
        Assert.That(HostMath.TopK(x, 4), Is.EqualTo(new[] { 1, 3, 4, 6 }));
        Assert.That(HostMath.TopK(x, 10), Is.EqualTo(new[] { 1, 3, 4, 6, 0, 2, 5 }));
        Assert.That(HostMath.TopK(x, 0), Is.Empty);
    }

    [Test]
    public void TopKAgreesWithASortOnRandomRows()
    {
        var rng = new Random(7);
        for (int trial = 0; trial < 50; trial++)
        {
            var x = Enumerable.Range(0, 1 + rng.Next(40)).Select(_ => (float)Math.Round(rng.NextDouble() * 8, 0)).ToArray();
            int k = rng.Next(1, x.Length + 2);
            var expected = Enumerable.Range(0, x.Length).OrderByDescending(i => x[i]).ThenBy(i => i).Take(k).ToArray();
            Assert.That(HostMath.TopK(x, k), Is.EqualTo(expected), $"trial {trial}");
        }
    }

    [Test]
    public void TopSoftmaxRanksByLogitWithTheProbabilitiesAFloatSoftmaxLoses()
    {
        float[] x = [200f, 1f, 5f, -300f, 5f];
        var top = HostMath.TopSoftmax(x, 4);
        Assert.That(top.Select(t => t.Index), Is.EqualTo(new[] { 0, 2, 4, 1 }));
        foreach (var (i, p) in top)
        {
            // softmax_i = 1 / Σ_j exp(x_j − x_i), in double straight from the definition.
            double expected = 1 / x.Sum(xj => Math.Exp((double)xj - x[i]));
            Assert.That(p, Is.EqualTo(expected).Within(1e-12 * expected), $"index {i}");
        }
        Assert.That(top[1].P, Is.GreaterThan(0), "e^-195 is below the smallest float, not below the smallest double");
        Assert.That(HostMath.TopSoftmax(x, 0), Is.Empty);
    }

    [Test]
    public void LogSumExpGivesProbabilitiesWhereFloatSoftmaxUnderflows()
    {
        float[] x = [200f, 1f, 5f, -300f];
        double lse = HostMath.LogSumExp(x);
        Assert.That(lse, Is.EqualTo(200 + Math.Log(1 + Math.Exp(-199) + Math.Exp(-195) + Math.Exp(-500))).Within(1e-12));
        Assert.That(Math.Exp(x[2] - lse), Is.EqualTo(Math.Exp(-195)).Within(1e-95));
        Assert.That(Math.Exp(x[2] - lse), Is.GreaterThan(Math.Exp(x[1] - lse)));
        Assert.That(HostMath.LogSumExp([float.NegativeInfinity, float.NegativeInfinity]), Is.EqualTo(double.NegativeInfinity));
        Assert.That(HostMath.LogSumExp([0f, 0f]), Is.EqualTo(Math.Log(2)).Within(1e-15));
    }
}
