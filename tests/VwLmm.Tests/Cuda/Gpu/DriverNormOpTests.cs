using VwLmm.Core;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Gpu;

/// <summary>kernels/layernorm.cu on the GPU against the shared suite (ignored without a GPU).</summary>
public sealed class DriverNormOpTests : NormOpTests
{
    protected override IBackend CreateBackend() => DriverBackend.Create();
}
