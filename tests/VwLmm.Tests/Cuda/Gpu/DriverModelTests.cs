using VwLmm.Core;

namespace VwLmm.Tests.Cuda.Gpu;

/// <summary>The whole model on the GPU against the CPU backend (ignored without a GPU).</summary>
public sealed class DriverModelTests : CudaModelTests
{
    protected override IBackend CreateCuda() => DriverBackend.Create();
}
