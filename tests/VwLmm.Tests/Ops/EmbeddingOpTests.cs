using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Tests.Ops.Reference;

namespace VwLmm.Tests.Ops;

/// <summary>GatherRows (token lookup and LLaVA splice), its deterministic scatter-add backward, and ScatterRows (KV cache append).</summary>
public abstract class EmbeddingOpTests : BackendOpTests
{
    private const int RowsA = 50, RowsB = 20;

    /// <summary>Ids into srcA with repeats, optionally mixed with srcB rows (≤ −2) and zero rows (−1).</summary>
    private static int[] MakeMap(int seed, int R, bool splice)
    {
        var rng = new Random(seed);
        var map = new int[R];
        for (int r = 0; r < R; r++)
        {
            int kind = splice ? rng.Next(4) : 0;
            map[r] = kind switch { 0 or 1 => rng.Next(RowsA / 5), 2 => -2 - rng.Next(RowsB), _ => -1 };
        }
        return map;
    }

    [TestCase(77, 83, false)]
    [TestCase(77, 83, true)]
    [TestCase(300, 211, true)]
    public void GatherMatchesReference(int R, int C, bool splice)
    {
        using var s = NewScope();
        var srcA = OpHarness.Random(1, RowsA * C);
        var srcB = OpHarness.Random(2, RowsB * C);
        var map = MakeMap(3, R, splice);
        var y = s.Upload("y", OpHarness.Random(4, R * C), R, C);
        Backend.GatherRows(y, s.Upload("srcA", srcA, RowsA, C), splice ? s.Upload("srcB", srcB, RowsB, C) : null,
                           s.UploadInts("map", map, R), R, C);
        OpHarness.AssertClose("gather", EmbeddingReference.Gather(srcA, srcB, map, R, C), y.ToArray(), 0);
        s.CheckGuards();
    }

    [TestCase(77, 83)]
    [TestCase(300, 211)]
    public void BackwardAccumulatesMultiHitRows(int R, int C)
    {
        using var s = NewScope();
        var dy = OpHarness.Random(5, R * C);
        var map = MakeMap(6, R, splice: true);
        var da0 = OpHarness.Random(7, RowsA * C);
        var db0 = OpHarness.Random(8, RowsB * C);
        var (da, db) = EmbeddingReference.GatherBackward(dy, map, R, C, RowsA, RowsB);
        Assert.That(map.Where(m => m >= 0).GroupBy(m => m).Any(g => g.Count() > 2), "test needs rows hit several times");

        var tda = s.Upload("dA", da0, RowsA, C);
        var tdb = s.Upload("dB", db0, RowsB, C);
        var tdy = s.Upload("dy", dy, R, C);
        var tmap = s.UploadInts("map", map, R);
        Backend.GatherRowsBackward(tda, tdb, tdy, tmap, R, C);
        var first = tda.ToArray();
        OpHarness.AssertClose("dA", Plus(da0, da), first, 1e-13);
        OpHarness.AssertClose("dB", Plus(db0, db), tdb.ToArray(), 1e-13);

        Backend.Upload<float>(tda, da0);
        Backend.GatherRowsBackward(tda, null, tdy, tmap, R, C);
        AssertBitIdentical("dA rerun with dB skipped", first, tda.ToArray());

        Backend.Upload<float>(tdb, db0);
        Backend.GatherRowsBackward(null, tdb, tdy, tmap, R, C);
        OpHarness.AssertClose("dB with dA skipped", Plus(db0, db), tdb.ToArray(), 1e-13);
        s.CheckGuards();
    }

    /// <summary>A decode step's one row of keys, and many rows of an odd width; the slots are a random subset of the
    /// destination's rows in random order.</summary>
    [TestCase(1, 256, 64)]
    [TestCase(37, 83, 100)]
    public void ScatterReplacesTheNamedRowsOnly(int R, int C, int dstRows)
    {
        using var s = NewScope();
        var dst0 = OpHarness.Random(13, dstRows * C);
        var src = OpHarness.Random(14, R * C);
        var slots = Enumerable.Range(0, dstRows).ToArray();
        new Random(15).Shuffle(slots);
        var rows = slots[..R];
        var dst = s.Upload("dst", dst0, dstRows, C);
        Backend.ScatterRows(dst, s.Upload("src", src, R, C), s.UploadInts("rows", rows, R), R, C);
        AssertBitIdentical("scatter", EmbeddingReference.Scatter(dst0, src, rows, R, C), dst.ToArray());
        s.CheckGuards();
    }

    [Test]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        const int R = 12, C = 3;
        var map = MakeMap(9, R, splice: true);
        var w = D(OpHarness.Random(10, R * C));
        var srcA = OpHarness.Random(11, RowsA * C);
        var srcB = OpHarness.Random(12, RowsB * C);
        var (da, db) = EmbeddingReference.GatherBackward(Array.ConvertAll(w, v => (float)v), map, R, C, RowsA, RowsB);
        static float[] F(double[] a) => Array.ConvertAll(a, v => (float)v);
        // The gather is linear, so a step of 1 is exact in double.
        var fdA = OpHarness.FiniteDifference(a => OpHarness.Project(EmbeddingReference.Gather(F(a), srcB, map, R, C), w), D(srcA), 1);
        var fdB = OpHarness.FiniteDifference(b => OpHarness.Project(EmbeddingReference.Gather(srcA, F(b), map, R, C), w), D(srcB), 1);
        OpHarness.AssertAllClose("dA", fdA, da, 1e-6, 1e-6);
        OpHarness.AssertAllClose("dB", fdB, db, 1e-6, 1e-6);
    }
}

public sealed class CpuEmbeddingOpTests : EmbeddingOpTests
{
    protected override IBackend CreateBackend() => new Cpu.CpuBackend(2);
}
