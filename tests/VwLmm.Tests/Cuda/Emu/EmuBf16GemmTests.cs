using VwLmm.Core;
using VwLmm.Cuda;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>kernels/gemm.cu and the widened cuBLAS path on the emulator against the bf16 GEMM suite.</summary>
public sealed class EmuBf16GemmTests : Bf16GemmTests
{
    protected override IBackend CreateBackend() => new CudaBackend(new EmulatedRuntime());
}
