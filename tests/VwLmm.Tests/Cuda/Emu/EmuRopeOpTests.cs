using VwLmm.Core;
using VwLmm.Cuda;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>The shared RoPE suite (double reference and the transformers fixture) on kernels/rope.cu under the emulator.</summary>
public sealed class EmuRopeOpTests : RopeOpTests
{
    protected override IBackend CreateBackend() => new CudaBackend(new EmulatedRuntime());
}
