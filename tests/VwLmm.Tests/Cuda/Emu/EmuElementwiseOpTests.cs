using VwLmm.Core;
using VwLmm.Cuda;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>kernels/elementwise.cu on the emulator against the shared elementwise suite.</summary>
public sealed class EmuElementwiseOpTests : ElementwiseOpTests
{
    protected override IBackend CreateBackend() => new CudaBackend(new EmulatedRuntime());
}
