using System.Text.Json;
using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Tests.Ops.Reference;
using static VwLmm.Tests.Ops.OpHarness;

namespace VwLmm.Tests.Ops;

/// <summary>RoPE against the double reference and a transformers-style PyTorch fixture; subclassed once per backend.</summary>
public abstract class RopeOpTests : BackendOpTests
{
    private const int B = 2, T = 5, H = 3;
    protected const float Theta = 10000f;

    /// <summary>Sample 0 starts at 0; sample 1 continues a KV cache at offset 37 with a gap.</summary>
    private static readonly int[] Positions = [0, 1, 2, 3, 4, 37, 38, 39, 40, 300];

    [TestCase(64)]
    [TestCase(32)]
    public void ForwardMatchesReference(int D)
    {
        var x = Random(1, B * T * H * D);
        using var s = new Scope(Backend);
        var tx = s.Upload("x", x, B, T, H, D);
        var pos = s.UploadInts("positions", Positions, B, T);
        var y = s.New("y", B, T, H, D);
        Backend.RopeForward(y, tx, pos, B, T, H, D, Theta);
        Backend.Synchronize();
        s.CheckGuards();
        AssertClose("y", RopeReference.Rotate(ToDouble(x), Positions, B, T, H, D, Theta), y.ToArray());
    }

    [TestCase(64)]
    [TestCase(32)]
    public void ForwardInPlace(int D)
    {
        var x = Random(2, B * T * H * D);
        using var s = new Scope(Backend);
        var tx = s.Upload("x", x, B, T, H, D);
        var pos = s.UploadInts("positions", Positions, B, T);
        Backend.RopeForward(tx, tx, pos, B, T, H, D, Theta);
        Backend.Synchronize();
        s.CheckGuards();
        AssertClose("x rotated in place", RopeReference.Rotate(ToDouble(x), Positions, B, T, H, D, Theta), tx.ToArray());
    }

    [TestCase(64)]
    [TestCase(32)]
    public void BackwardAddsOrStoresInverseRotation(int D)
    {
        foreach (bool accumulate in new[] { true, false })
        {
            int n = B * T * H * D;
            var dy = Random(3, n);
            var dx0 = GradientBefore(4, n, accumulate);
            var expected = After(dx0, RopeReference.Rotate(ToDouble(dy), Positions, B, T, H, D, Theta, inverse: true), accumulate);
            using var s = new Scope(Backend);
            var tdy = s.Upload("dy", dy, B, T, H, D);
            var pos = s.UploadInts("positions", Positions, B, T);
            var dx = s.Upload("dx", dx0, B, T, H, D);
            Backend.RopeBackward(dx, tdy, pos, B, T, H, D, Theta, accumulate);
            Backend.Synchronize();
            s.CheckGuards();
            AssertClose($"dx (accumulate {accumulate})", expected, dx.ToArray());
            if (!accumulate)
                AssertStoreEqualsAddToZeros("rope backward", a => Backend.RopeBackward(dx, tdy, pos, B, T, H, D, Theta, a), dx);
        }
    }

    [TestCase(64)]
    [TestCase(32)]
    public void BackwardUndoesForward(int D)
    {
        var x = Random(5, B * T * H * D);
        using var s = new Scope(Backend);
        var tx = s.Upload("x", x, B, T, H, D);
        var pos = s.UploadInts("positions", Positions, B, T);
        var y = s.New("y", B, T, H, D);
        var back = s.Upload("back", new float[x.Length], B, T, H, D);
        Backend.RopeForward(y, tx, pos, B, T, H, D, Theta);
        Backend.RopeBackward(back, y, pos, B, T, H, D, Theta, accumulate: true);
        Backend.Synchronize();
        s.CheckGuards();
        AssertClose("Rᵀ·R·x", ToDouble(x), back.ToArray(), 1e-12);
    }

    [Test]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        const int D = 8;
        var x = ToDouble(Random(6, B * T * H * D));
        var w = ToDouble(Random(7, x.Length));
        var fd = FiniteDifference(v => Project(RopeReference.Rotate(v, Positions, B, T, H, D, Theta), w), x);
        AssertAllClose("dx", fd, RopeReference.Rotate(w, Positions, B, T, H, D, Theta, inverse: true));
    }

    /// <summary>At positions up to 1.2M the float32 angle differs from the exact one by up to ~0.1 rad; matching
    /// transformers there shows the float32 angle arithmetic is reproduced, not just the formula.</summary>
    [Test]
    public void MatchesTransformersFixture()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures/rope/rope_hf.json")));
        var root = doc.RootElement;
        int D = root.GetProperty("D").GetInt32(), h = root.GetProperty("H").GetInt32();
        float theta = root.GetProperty("theta").GetSingle();
        var positions = root.GetProperty("positions").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var x = root.GetProperty("x").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        var expected = root.GetProperty("y").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        int t = positions.Length;

        using var s = new Scope(Backend);
        var tx = s.Upload("x", x, 1, t, h, D);
        var pos = s.UploadInts("positions", positions, 1, t);
        var y = s.New("y", 1, t, h, D);
        Backend.RopeForward(y, tx, pos, 1, t, h, D, theta);
        Backend.Synchronize();
        s.CheckGuards();
        var got = y.ToArray();
        AssertAllClose("y vs transformers", expected, Array.ConvertAll(got, v => (double)v), rtol: 1e-6, atol: 1e-6);
        var exact = RopeReference.Rotate(ToDouble(x), positions, 1, t, h, D, theta);
        Assert.That(exact.Zip(expected, (a, b) => Math.Abs(a - b)).Max(), Is.GreaterThan(1e-3),
            "fixture positions too small to tell float32 angles from exact ones");
    }
}

public sealed class CpuRopeOpTests : RopeOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);

    /// <summary>
    /// Angles from the CPU's table (kept from call to call, grown to the largest position seen, up to a limit) give the
    /// bits of angles computed in the call: rows before the limit from the table, rows past it (300, 70000) not, a
    /// call that grows the table, and a head dim that replaces it.
    /// </summary>
    [TestCase(64)]
    [TestCase(40)]
    public void TableGivesTheBitsOfAnglesComputedPerCall(int D)
    {
        const int h = 2;
        int[][] calls = [[0, 1, 2, 3, 4, 5], [5, 4, 300, 70000, 0, 2], [9000, 1, 2, 3, 4, 255]];
        using var cached = new CpuBackend(2) { RopeTableLimit = 512 };
        using var perCall = new CpuBackend(2) { RopeTableLimit = 0 };
        using var other = new CpuBackend(2);
        foreach (var positions in calls)
        {
            int t = positions.Length, n = t * h * D;
            var x = Random(t + D, n);
            var dx0 = Random(t + D + 1, n);
            using (var s0 = new Scope(other))
            {
                // Another head dim first, so that the table must be rebuilt for D.
                other.RopeForward(s0.New("y", 1, t, h, 2 * D), s0.Upload("x", Random(1, 2 * n), 1, t, h, 2 * D),
                                  s0.UploadInts("positions", positions, 1, t), 1, t, h, 2 * D, Theta);
            }
            (float[] Y, float[] Dx) Run(IBackend backend)
            {
                using var s = new Scope(backend);
                var pos = s.UploadInts("positions", positions, 1, t);
                var y = s.New("y", 1, t, h, D);
                var dx = s.Upload("dx", dx0, 1, t, h, D);
                backend.RopeForward(y, s.Upload("x", x, 1, t, h, D), pos, 1, t, h, D, Theta);
                backend.RopeBackward(dx, y, pos, 1, t, h, D, Theta, accumulate: true);
                s.CheckGuards();
                return (y.ToArray(), dx.ToArray());
            }
            var expected = Run(perCall);
            foreach (var (name, backend) in new[] { ("table up to 512", cached), ("table, D changing", other) })
            {
                var got = Run(backend);
                AssertBitIdentical($"{name}, positions [{string.Join(", ", positions)}]: y", expected.Y, got.Y);
                AssertBitIdentical($"{name}, positions [{string.Join(", ", positions)}]: dx", expected.Dx, got.Dx);
            }
        }
    }
}
