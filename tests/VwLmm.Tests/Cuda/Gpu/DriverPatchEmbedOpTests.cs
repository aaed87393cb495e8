using VwLmm.Core;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Gpu;

/// <summary>kernels/patch_embed.cu with cuBLAS on the GPU against the shared suite (ignored without a GPU).</summary>
public sealed class DriverPatchEmbedOpTests : PatchEmbedOpTests
{
    protected override IBackend CreateBackend() => DriverBackend.Create();
}
