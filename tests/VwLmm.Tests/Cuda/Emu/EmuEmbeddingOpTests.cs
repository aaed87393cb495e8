using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cuda;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>kernels/embedding.cu on the emulator against the shared gather/scatter suite.</summary>
public sealed class EmuEmbeddingOpTests : EmbeddingOpTests
{
    protected override IBackend CreateBackend() => new CudaBackend(new EmulatedRuntime());

    /// <summary>The shared widths are odd; C = 96 takes the kernels' float4 path.</summary>
    [TestCase(77, true)]
    [TestCase(77, false)]
    public void GatherFloat4Rows(int R, bool splice) => GatherMatchesReference(R, 96, splice);

    [Test]
    public void BackwardFloat4Rows() => BackwardAccumulatesMultiHitRows(77, 96);

    /// <summary>Both backends add each destination's rows in increasing r onto its old value, so they agree bit for bit.</summary>
    [Test]
    public void BackwardMatchesTheCpuBitForBit()
    {
        const int R = 300, C = 96, rowsA = 10, rowsB = 4;
        var rng = new Random(40);
        var map = Enumerable.Range(0, R).Select(_ => rng.Next(4) switch { 0 or 1 => rng.Next(rowsA), 2 => -2 - rng.Next(rowsB), _ => -1 }).ToArray();
        var dy = OpHarness.Random(41, R * C);
        var da0 = OpHarness.Random(42, rowsA * C);
        var db0 = OpHarness.Random(43, rowsB * C);
        (float[] A, float[] B) Run(IBackend backend)
        {
            using var s = new OpHarness.Scope(backend);
            var da = s.Upload("dA", da0, rowsA, C);
            var db = s.Upload("dB", db0, rowsB, C);
            backend.GatherRowsBackward(da, db, s.Upload("dy", dy, R, C), s.UploadInts("map", map, R), R, C);
            s.CheckGuards();
            return (da.ToArray(), db.ToArray());
        }
        using var cpu = new VwLmm.Cpu.CpuBackend(2);
        var expected = Run(cpu);
        var actual = Run(Backend);
        AssertBitIdentical("dA", expected.A, actual.A);
        AssertBitIdentical("dB", expected.B, actual.B);
    }
}
