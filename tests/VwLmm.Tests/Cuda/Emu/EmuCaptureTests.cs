using VwLmm.Cuda;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>Step capture on the kernel emulator.</summary>
public sealed class EmuCaptureTests : CudaCaptureTests
{
    protected override CudaBackend CreateCuda() => new(new EmulatedRuntime());
}
