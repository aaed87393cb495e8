using VwLmm.Core;
using VwLmm.Cuda;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>
/// CudaBackend's cuBLAS call site (row-major through column-major, swapped operands) on the emulated runtime, whose
/// OpenBLAS runs in column-major mode as cuBLAS would, against the shared GEMM suite.
/// </summary>
public sealed class EmuGemmOpTests : GemmOpTests
{
    protected override IBackend CreateBackend() => new CudaBackend(new EmulatedRuntime());
}
