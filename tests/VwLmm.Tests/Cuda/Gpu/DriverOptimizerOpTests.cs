using VwLmm.Core;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Gpu;

/// <summary>kernels/adamw.cu and kernels/reduce.cu on the GPU against the shared suite (ignored without a GPU).</summary>
public sealed class DriverOptimizerOpTests : OptimizerOpTests
{
    protected override IBackend CreateBackend() => DriverBackend.Create();
}
