using NUnit.Framework;
using System.Runtime.Intrinsics;
using VwLmm.Cpu;

namespace VwLmm.Tests.Ops;

/// <summary>The CPU's vector exp (behind softmax, attention, the vocabulary losses and the sigmoid activations) against
/// double-precision Math.Exp, at both vector widths.</summary>
public sealed class CpuExpTests
{
    [Test]
    public void IsWithinOneUlpOverTheFloatRange([Values(256, 512)] int width)
    {
        double worst = 0;
        float worstAt = 0;
        var x = new float[16];
        var y = new float[16];
        for (int i = 0; i < 1_000_000; i += 16)
        {
            for (int l = 0; l < 16; l++) x[l] = -110f + (i + l) * 2e-4f;
            Exp(width, x, y);
            for (int l = 0; l < 16; l++)
            {
                double exact = Math.Exp(x[l]);
                float rounded = (float)exact;
                double ulp = float.IsInfinity(rounded) ? float.MaxValue - MathF.BitDecrement(float.MaxValue)
                                                        : MathF.BitIncrement(rounded) - rounded;
                double err = float.IsInfinity(y[l]) && float.IsInfinity(rounded) ? 0 : Math.Abs(y[l] - exact) / ulp;
                if (err > worst) (worst, worstAt) = (err, x[l]);
            }
        }
        Assert.That(worst, Is.LessThanOrEqualTo(1.0), $"max error in ulp (at x = {worstAt:G9})");
    }

    [Test]
    public void SpecialValuesMatchMathF([Values(256, 512)] int width)
    {
        float[] x = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0f, -0f, 88.72f, 88.73f, -87.4f, -103.9f, -104f, -200f, 1e-10f, -1e-10f, 1f, -1f, 10f];
        var y = new float[16];
        Exp(width, x, y);
        for (int i = 0; i < x.Length; i++)
            Assert.That(y[i], Is.EqualTo(MathF.Exp(x[i])).Within(1).Ulps, $"exp({x[i]:G9})");
    }

    private static unsafe void Exp(int width, float[] x, float[] y)
    {
        fixed (float* px = x, py = y)
            for (int i = 0; i < 16; i += width / 32)
                if (width == 512) SimdMath.Exp(new V512(Vector512.Load(px + i))).Store(py + i);
                else SimdMath.Exp(new V256(Vector256.Load(px + i))).Store(py + i);
    }
}
