using NUnit.Framework;
using VwLmm.Cuda;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>A CudaBackend on the emulated runtime, shared by the tests of one fixture.</summary>
public abstract class EmuFixture
{
    protected CudaBackend Backend { get; private set; } = null!;

    [OneTimeSetUp]
    public void CreateBackend() => Backend = new CudaBackend(new EmulatedRuntime());

    [OneTimeTearDown]
    public void DisposeBackend() => Backend.Dispose();

    protected static bool BitIdentical(float[] a, float[] b) =>
        a.Length == b.Length && a.Select(BitConverter.SingleToInt32Bits).SequenceEqual(b.Select(BitConverter.SingleToInt32Bits));
}
