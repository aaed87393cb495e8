using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cuda;
using VwLmm.Tests.Ops;
using VwLmm.Tests.Ops.Reference;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>kernels/adamw.cu and kernels/reduce.cu on the emulator against the shared optimiser suite.</summary>
public sealed class EmuOptimizerOpTests : OptimizerOpTests
{
    protected override IBackend CreateBackend() => new CudaBackend(new EmulatedRuntime());

    /// <summary>300 007 elements are 37 first-stage blocks run by however many workers, plus a ragged tail.</summary>
    [Test]
    public void SumSquaresIsIndependentOfWorkerCount()
    {
        try
        {
            EmulatedRuntime.SetWorkers(1);
            float one = SumSquaresOn(Backend, 300_007);
            EmulatedRuntime.SetWorkers(3);
            float three = SumSquaresOn(Backend, 300_007);
            Assert.That(BitConverter.SingleToInt32Bits(three), Is.EqualTo(BitConverter.SingleToInt32Bits(one)));
        }
        finally
        {
            EmulatedRuntime.SetWorkers(2);
        }
    }

    /// <summary>A view one float into its buffer is not 16-byte aligned: the first stage's scalar path.</summary>
    [Test]
    public void SumSquaresOfUnalignedView()
    {
        const int n = 20_001;
        var x = OpHarness.Random(30, n + 1, 2f);
        using var s = new OpHarness.Scope(Backend);
        var result = s.Zeros("result", 1);
        Backend.SumSquares(result, 0, s.Upload("x", x, n + 1).View(1, new Shape(n)), n);
        OpHarness.AssertClose("sum of squares", [OptimizerReference.SumSquares(x[1..])], result.ToArray(), 1e-14);
        s.CheckGuards();
    }
}
