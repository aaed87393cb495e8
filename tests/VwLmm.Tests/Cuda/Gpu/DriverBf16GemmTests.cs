using VwLmm.Core;

namespace VwLmm.Tests.Cuda.Gpu;

/// <summary>kernels/gemm.cu and the widened cuBLAS path on the GPU against the bf16 GEMM suite (ignored without a GPU).</summary>
public sealed class DriverBf16GemmTests : Bf16GemmTests
{
    protected override IBackend CreateBackend() => DriverBackend.Create();
}
