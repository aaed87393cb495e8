using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Tests.Ops.Reference;
using static VwLmm.Tests.Ops.OpHarness;

namespace VwLmm.Tests.Ops;

/// <summary>Patch embedding against direct-convolution loops in double; subclassed once per backend.</summary>
public abstract class PatchEmbedOpTests : BackendOpTests
{
    private const int B = 2, Cin = 3, P = 8, C = 37;

    /// <summary>24×16 tiles exactly; 26×17 leaves a border narrower than P that the stride-P convolution drops.</summary>
    [TestCase(24, 16)]
    [TestCase(26, 17)]
    public void ForwardAndBackwardMatchReference(int hi, int wi)
    {
        int np = (hi / P) * (wi / P);
        var img = Random(1, B * Cin * hi * wi);
        var w = Random(2, C * Cin * P * P, 0.1f);
        var dy = Random(3, B * np * C);
        var dw0 = Random(4, w.Length);
        var expectedDw = PatchEmbedReference.BackwardWeight(ToDouble(dy), ToDouble(img), B, Cin, hi, wi, P, C);
        for (int i = 0; i < w.Length; i++) expectedDw[i] += dw0[i];

        using var s = new Scope(Backend);
        var timg = s.Upload("img", img, B, Cin, hi, wi);
        var tw = s.Upload("w", w, C, Cin, P, P);
        var tdy = s.Upload("dy", dy, B, np, C);
        var y = s.New("y", B, np, C);
        var dw = s.Upload("dw", dw0, C, Cin, P, P);
        Backend.PatchEmbedForward(y, timg, tw, B, Cin, hi, wi, P, C);
        Backend.PatchEmbedBackward(dw, tdy, timg, B, Cin, hi, wi, P, C);
        Backend.Synchronize();
        s.CheckGuards();
        AssertClose("y", PatchEmbedReference.Forward(ToDouble(img), ToDouble(w), B, Cin, hi, wi, P, C), y.ToArray());
        AssertClose("dw", expectedDw, dw.ToArray());
    }

    [Test]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        const int b = 2, cin = 2, hi = 6, wi = 4, p = 2, c = 3;
        var img = ToDouble(Random(5, b * cin * hi * wi));
        var w = ToDouble(Random(6, c * cin * p * p));
        var proj = ToDouble(Random(7, b * (hi / p) * (wi / p) * c));
        var fd = FiniteDifference(x => Project(PatchEmbedReference.Forward(img, x, b, cin, hi, wi, p, c), proj), w);
        AssertAllClose("dw", fd, PatchEmbedReference.BackwardWeight(proj, img, b, cin, hi, wi, p, c));
    }
}

public sealed class CpuPatchEmbedOpTests : PatchEmbedOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);
}
