using NUnit.Framework;
using VwLmm.Core;

namespace VwLmm.Tests.Ops;

/// <summary>
/// Base of the op conformance suites: each suite is abstract over the backend, so the CUDA and emulated backends
/// reuse it by overriding <see cref="CreateBackend"/>. One backend instance serves all tests of a fixture.
/// </summary>
public abstract class BackendOpTests
{
    protected IBackend Backend { get; private set; } = null!;

    protected abstract IBackend CreateBackend();

    [OneTimeSetUp]
    public void CreateBackendOnce() => Backend = CreateBackend();

    // Backend stays null when CreateBackend ignores the fixture (no GPU for the Driver* suites).
    [OneTimeTearDown]
    public void DisposeBackend() => Backend?.Dispose();

    protected OpHarness.Scope NewScope() => new(Backend);

    protected static double[] D(float[] a) => OpHarness.ToDouble(a);

    /// <summary>a + b elementwise in double (expected values of accumulating ops).</summary>
    protected static double[] Plus(float[] a, double[] b)
    {
        var r = new double[a.Length];
        for (int i = 0; i < r.Length; i++) r[i] = a[i] + b[i];
        return r;
    }

    protected static void AssertBitIdentical(string what, float[] expected, float[] actual)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), $"{what}: length");
        for (int i = 0; i < actual.Length; i++)
            if (BitConverter.SingleToInt32Bits(actual[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                Assert.Fail($"{what}: element {i} differs ({actual[i]:G9} vs {expected[i]:G9})");
    }
}
