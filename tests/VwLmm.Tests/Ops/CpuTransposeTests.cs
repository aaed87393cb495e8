using NUnit.Framework;
using System.Runtime.Intrinsics;
using VwLmm.Cpu;

namespace VwLmm.Tests.Ops;

/// <summary>The in-register square transpose that packs a transposed weight for the CPU GEMM, at both vector widths.</summary>
public sealed class CpuTransposeTests
{
    [Test]
    public void EveryElementLandsAtItsMirror([Values(256, 512)] int width)
    {
        if (width == 512 ? !Vector512.IsHardwareAccelerated : !Vector256.IsHardwareAccelerated)
            Assert.Ignore($"{width}-bit vectors are not accelerated here");
        int n = width / 32, lds = n + 5, ldd = n + 3;
        // Distinct values, and destination padding that must survive: a transpose that writes past a row shows.
        var src = new float[n * lds];
        for (int i = 0; i < src.Length; i++) src[i] = i + 1;
        var dst = new float[n * ldd];
        Array.Fill(dst, -1f);
        Transpose(width, src, lds, dst, ldd);
        for (int r = 0; r < n; r++)
            for (int c = 0; c < ldd; c++)
                Assert.That(dst[r * ldd + c], Is.EqualTo(c < n ? src[c * lds + r] : -1f), $"dst[{r}, {c}]");
    }

    private static unsafe void Transpose(int width, float[] src, int lds, float[] dst, int ldd)
    {
        fixed (float* s = src, d = dst)
            if (width == 512) V512.Transpose(s, lds, d, ldd);
            else V256.Transpose(s, lds, d, ldd);
    }
}
