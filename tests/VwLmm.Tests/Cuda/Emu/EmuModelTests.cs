using VwLmm.Core;
using VwLmm.Cuda;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>The whole model under the kernel emulator against the CPU backend.</summary>
public sealed class EmuModelTests : CudaModelTests
{
    protected override IBackend CreateCuda() => new CudaBackend(new EmulatedRuntime());
}
