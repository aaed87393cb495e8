using NUnit.Framework;
using System.Runtime.Intrinsics;
using VwLmm.Cpu;
using VwLmm.Tests.Ops.Reference;

namespace VwLmm.Tests.Ops;

/// <summary>The CPU's vector erf (behind GELU) against the double reference, at both vector widths.</summary>
public sealed class CpuErfTests
{
    [TestCase(0.5, 0.5204998778130465)]
    [TestCase(1.0, 0.8427007929497149)]
    [TestCase(2.0, 0.9953222650189527)]
    [TestCase(-3.0, -0.9999779095030014)]
    [TestCase(4.5, 0.9999999998033839)]
    public void ReferenceMatchesTabulatedValues(double x, double erf) =>
        Assert.That(ElementwiseReference.Erf(x), Is.EqualTo(erf).Within(1e-14));

    [Test]
    public void VectorErfIsAccurate([Values(256, 512)] int width)
    {
        double worstAbs = 0, worstRel = 0;
        for (int i = -70000; i <= 70000; i++)
        {
            float x = i * 1e-4f;
            worstAbs = Math.Max(worstAbs, Math.Abs(Erf(width, x) - ElementwiseReference.Erf(x)));
            // Tiny arguments: erf(x) ≈ 2x/√π must keep its relative accuracy (GELU near 0).
            float tiny = x * 1e-20f;
            if (tiny != 0)
                worstRel = Math.Max(worstRel, Math.Abs(Erf(width, tiny) / ElementwiseReference.Erf(tiny) - 1));
        }
        Assert.That(worstAbs, Is.LessThanOrEqualTo(2e-7), "max absolute error");
        Assert.That(worstRel, Is.LessThanOrEqualTo(2.5e-7), "max relative error for tiny x");
    }

    private static unsafe float Erf(int width, float x)
    {
        float* buf = stackalloc float[16];
        if (width == 512) SimdMath.Erf(new V512(Vector512.Create(x))).Store(buf);
        else SimdMath.Erf(new V256(Vector256.Create(x))).Store(buf);
        return buf[0];
    }
}
