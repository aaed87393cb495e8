using VwLmm.Core;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Gpu;

/// <summary>cuBLAS through CudaBackend's row-major call site on the GPU against the shared suite (ignored without a GPU).</summary>
public sealed class DriverGemmOpTests : GemmOpTests
{
    protected override IBackend CreateBackend() => DriverBackend.Create();
}
