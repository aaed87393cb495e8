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
}
