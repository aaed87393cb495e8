using VwLmm.Core;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Gpu;

/// <summary>The shared bf16-weight GEMM suite on the GPU (ignored without a GPU).</summary>
public sealed class DriverBf16GemmOpTests : Bf16GemmOpTests
{
    protected override IBackend CreateBackend() => DriverBackend.Create();
}
