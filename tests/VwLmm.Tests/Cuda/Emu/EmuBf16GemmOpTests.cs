using VwLmm.Core;
using VwLmm.Cuda;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>The shared bf16-weight GEMM suite on the CUDA backend under the emulator (gemv_bf16, and the widening in front of cuBLAS).</summary>
public sealed class EmuBf16GemmOpTests : Bf16GemmOpTests
{
    protected override IBackend CreateBackend() => new CudaBackend(new EmulatedRuntime());
}
