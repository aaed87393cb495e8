using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using static VwLmm.Tests.Ops.OpHarness;

namespace VwLmm.Tests.Core;

/// <summary>The profiling decorator: results pass through unchanged, and every GEMM is counted once per op and once by shape.</summary>
public class ProfilingBackendTests
{
    [Test]
    public void GemmsAreCountedByLayoutAndShape()
    {
        using var cpu = new CpuBackend(1);
        var profiler = new ProfilingBackend(cpu);
        using var s = new Scope(cpu);
        var a = s.Upload("a", Random(1, 6 * 4), 6, 4);
        var b = s.Upload("b", Random(2, 5 * 4), 5, 4);
        var c = s.New("c", 6, 5);
        var direct = s.New("direct", 6, 5);
        var ct = s.New("ct", 4, 4);
        cpu.Gemm(false, true, 6, 5, 4, 1f, a, 4, 0, b, 4, 0, 0f, direct, 5, 0, 1);
        for (int i = 0; i < 3; i++) profiler.Gemm(false, true, 6, 5, 4, 1f, a, 4, 0, b, 4, 0, 0f, c, 5, 0, 1);
        profiler.Gemm(true, false, 4, 4, 6, 1f, a, 4, 0, a, 4, 0, 0f, ct, 4, 0, 1);
        Assert.That(c.ToArray(), Is.EqualTo(direct.ToArray()), "the decorator forwards the call unchanged");

        Assert.That(profiler.Table().Single(r => r.Op == "Gemm").Calls, Is.EqualTo(4));
        var shapes = profiler.GemmTable().ToDictionary(r => r.Shape.ToString(), r => r.Calls);
        Assert.That(shapes, Is.EquivalentTo(new Dictionary<string, long> { ["NT 6×5×4"] = 3, ["TN 4×4×6"] = 1 }));
        Assert.That(new GemmShape(false, true, 6, 5, 4, 8).ToString(), Is.EqualTo("NT 6×5×4 ×8"));
        Assert.That(new GemmShape(false, true, 6, 5, 4, 8).Flop, Is.EqualTo(2.0 * 6 * 5 * 4 * 8));

        AssertAllocationFree("profiled Gemm of a shape already seen",
            () => profiler.Gemm(false, true, 6, 5, 4, 1f, a, 4, 0, b, 4, 0, 0f, c, 5, 0, 1));
        profiler.ResetCounters();
        Assert.That(profiler.Table(), Is.Empty);
        Assert.That(profiler.GemmTable(), Is.Empty);
    }
}
