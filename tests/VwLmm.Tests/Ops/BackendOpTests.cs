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

    /// <summary>
    /// A backward op's gradient before the call: random values it adds to, or NaN where it stores, so that a store that
    /// reads the gradient, or leaves an element unwritten, shows.
    /// </summary>
    protected static float[] GradientBefore(int seed, long n, bool accumulate)
    {
        if (accumulate) return OpHarness.Random(seed, n);
        var a = new float[n];
        Array.Fill(a, float.NaN);
        return a;
    }

    /// <summary>Expected gradient after the op: what was there plus its result when accumulating, the result alone when storing.</summary>
    protected static double[] After(float[] before, double[] result, bool accumulate) => accumulate ? Plus(before, result) : result;

    /// <summary>
    /// Runs a backward op storing into NaN-filled gradients, then adding into zero-filled ones, and asserts the two equal
    /// element for element (a zero's sign aside): the op contract's promise that a store changes no bit of training.
    /// </summary>
    protected void AssertStoreEqualsAddToZeros(string what, Action<bool> run, params Tensor[] grads)
    {
        foreach (var g in grads) Backend.Fill(g, float.NaN);
        run(false);
        var stored = Array.ConvertAll(grads, g => g.ToArray());
        foreach (var g in grads) Backend.Fill(g, 0f);
        run(true);
        for (int k = 0; k < grads.Length; k++)
        {
            var added = grads[k].ToArray();
            for (int i = 0; i < added.Length; i++)
                if (!(stored[k][i] == added[i]))
                    Assert.Fail($"{what}: gradient {k} element {i} stored {stored[k][i]:G9}, added to zero {added[i]:G9}");
        }
    }

    protected static void AssertBitIdentical(string what, float[] expected, float[] actual)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), $"{what}: length");
        for (int i = 0; i < actual.Length; i++)
            if (BitConverter.SingleToInt32Bits(actual[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                Assert.Fail($"{what}: element {i} differs ({actual[i]:G9} vs {expected[i]:G9})");
    }
}
