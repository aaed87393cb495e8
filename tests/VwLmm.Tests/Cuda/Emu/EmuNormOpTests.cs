using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cuda;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>kernels/layernorm.cu on the emulator against the shared LayerNorm/RMSNorm suite.</summary>
public sealed class EmuNormOpTests : NormOpTests
{
    protected override IBackend CreateBackend() => new CudaBackend(new EmulatedRuntime());

    /// <summary>1000 rows are 32 backward blocks whose γ/β partials the workers produce in any order; the float4
    /// width 96 differs from the suite's 256.</summary>
    [Test]
    public void WeightGradientsDoNotDependOnWorkerCount([Values] bool rms)
    {
        try
        {
            EmulatedRuntime.SetWorkers(1);
            var one = NormWeightGradients(Backend, rms, 1000, 96);
            EmulatedRuntime.SetWorkers(3);
            AssertBitIdentical("1 vs 3 emulator workers", one, NormWeightGradients(Backend, rms, 1000, 96));
        }
        finally
        {
            EmulatedRuntime.SetWorkers(2);
        }
    }
}
