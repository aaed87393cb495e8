using VwLmm.Core;
using VwLmm.Cuda;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>kernels/patch_embed.cu and the cuBLAS call sites on the emulator against the shared patch-embedding suite.</summary>
public sealed class EmuPatchEmbedOpTests : PatchEmbedOpTests
{
    protected override IBackend CreateBackend() => new CudaBackend(new EmulatedRuntime());
}
