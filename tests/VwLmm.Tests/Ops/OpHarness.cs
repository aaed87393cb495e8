using NUnit.Framework;
using VwLmm.Core;

namespace VwLmm.Tests.Ops;

/// <summary>
/// Shared machinery for op conformance tests (ggml's test-backend-ops is the model): seeded inputs, guarded device
/// buffers whose sentinels must come back untouched, normalised MSE against a double-precision reference with NaN/Inf
/// failing, and central finite differences for checking reference gradients.
/// </summary>
public static class OpHarness
{
    private const float Sentinel = -7.77e33f;
    private const int GuardElements = 64;

    /// <summary>
    /// A tensor with <see cref="GuardElements"/> sentinel floats on each side inside one allocation. A 2-byte dtype's
    /// elements are rounded up to whole floats, so the guards stay float-aligned.
    /// </summary>
    public sealed class Guarded : IDisposable
    {
        private readonly DeviceBuffer _buffer;
        private readonly long _floats;
        private readonly string _name;

        public Guarded(IBackend backend, string name, Shape shape, DType dtype = DType.F32)
        {
            _name = name;
            _floats = (shape.Numel * dtype.Size() + 3) / 4;
            _buffer = backend.Allocate((_floats + 2 * GuardElements) * 4);
            var whole = Tensor.FromBuffer(backend, _buffer, new Shape((int)(_floats + 2 * GuardElements)), DType.F32);
            var fill = new float[_floats + 2 * GuardElements];
            Array.Fill(fill, Sentinel);
            backend.Upload<float>(whole, fill);
            Whole = whole;
            int perFloat = 4 / dtype.Size();
            Tensor = Tensor.FromBuffer(backend, _buffer, new Shape((int)(_floats + 2 * GuardElements) * perFloat), dtype)
                .View(GuardElements * perFloat, shape);
        }

        private Tensor Whole { get; }
        public Tensor Tensor { get; }

        /// <summary>Fails the test when any sentinel changed (an op wrote outside its tensor).</summary>
        public void CheckGuards()
        {
            var all = new float[_floats + 2 * GuardElements];
            Whole.Backend.Download<float>(Whole, all);
            for (int i = 0; i < GuardElements; i++)
            {
                if (BitConverter.SingleToInt32Bits(all[i]) != BitConverter.SingleToInt32Bits(Sentinel))
                    Assert.Fail($"{_name}: write before the start of the buffer (guard element {i - GuardElements})");
                if (BitConverter.SingleToInt32Bits(all[_floats + GuardElements + i]) != BitConverter.SingleToInt32Bits(Sentinel))
                    Assert.Fail($"{_name}: write past the end of the buffer (float {_floats + i})");
            }
        }

        public void Dispose() => _buffer.Dispose();
    }

    /// <summary>Owns the guarded tensors of one test and checks all guards at the end.</summary>
    public sealed class Scope(IBackend backend) : IDisposable
    {
        private readonly List<Guarded> _all = new();
        public IBackend Backend { get; } = backend;

        public Tensor New(string name, params int[] dims) => Add(new Guarded(Backend, name, new Shape(dims)));

        public Tensor Upload(string name, float[] data, params int[] dims)
        {
            var t = New(name, dims);
            Backend.Upload<float>(t, data);
            return t;
        }

        /// <summary>A BF16 tensor holding the given bit patterns.</summary>
        public Tensor UploadBf16(string name, ushort[] bits, params int[] dims)
        {
            var t = Add(new Guarded(Backend, name, new Shape(dims), DType.BF16));
            Backend.Upload<ushort>(t, bits);
            return t;
        }

        public Tensor UploadInts(string name, int[] data, params int[] dims)
        {
            var t = Add(new Guarded(Backend, name, new Shape(dims), DType.I32));
            Backend.Upload<int>(t, data);
            return t;
        }

        public Tensor Zeros(string name, params int[] dims)
        {
            var t = New(name, dims);
            Backend.Fill(t, 0f);
            return t;
        }

        private Tensor Add(Guarded g)
        {
            _all.Add(g);
            return g.Tensor;
        }

        public void CheckGuards()
        {
            foreach (var g in _all) g.CheckGuards();
        }

        public void Dispose()
        {
            foreach (var g in _all) g.Dispose();
        }
    }

    /// <summary>
    /// Calls op once to warm it (JIT, scratch growth, pooled arrays), then counts the bytes every thread allocates over
    /// a few more calls. GC.GetTotalAllocatedBytes sees the whole process, and the test host's threads allocate now and
    /// then, so an attempt is repeated when one saw any allocation; an op that allocates does so on every attempt.
    /// </summary>
    public static void AssertAllocationFree(string what, Action op)
    {
        op();
        long allocated = 0;
        for (int attempt = 0; attempt < 20; attempt++)
        {
            long before = GC.GetTotalAllocatedBytes(precise: true);
            for (int i = 0; i < 4; i++) op();
            allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            if (allocated == 0) return;
        }
        Assert.Fail($"{what}: {allocated} bytes allocated over 4 warm calls");
    }

    public static float[] Random(int seed, long n, float scale = 1f)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return a;
    }

    public static double[] ToDouble(float[] a) => Array.ConvertAll(a, x => (double)x);

    /// <summary>Σ(a−r)² / Σr² (ggml's NMSE); r all zero falls back to the plain MSE.</summary>
    public static double Nmse(ReadOnlySpan<double> reference, ReadOnlySpan<float> actual)
    {
        double err = 0, norm = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            double d = actual[i] - reference[i];
            err += d * d;
            norm += reference[i] * reference[i];
        }
        return norm > 0 ? err / norm : err / Math.Max(1, reference.Length);
    }

    /// <summary>Fails on length mismatch, any NaN/Inf in <paramref name="actual"/>, or NMSE above <paramref name="limit"/>.</summary>
    public static void AssertClose(string what, ReadOnlySpan<double> reference, ReadOnlySpan<float> actual, double limit = 1e-7)
    {
        Assert.That(actual.Length, Is.EqualTo(reference.Length), $"{what}: length");
        for (int i = 0; i < actual.Length; i++)
            if (!float.IsFinite(actual[i]))
                Assert.Fail($"{what}: non-finite value {actual[i]} at {i} (reference {reference[i]})");
        double nmse = Nmse(reference, actual);
        Assert.That(nmse, Is.LessThanOrEqualTo(limit), $"{what}: NMSE {nmse:E3} above {limit:E1}");
    }

    /// <summary>
    /// Central finite difference of a scalar function of x, in double: ∂f/∂x_i ≈ (f(x+h e_i) − f(x−h e_i)) / 2h.
    /// Used to prove each double reference's backward formula before the backends are compared with it.
    /// </summary>
    public static double[] FiniteDifference(Func<double[], double> f, double[] x, double h = 1e-6)
    {
        var g = new double[x.Length];
        var xp = (double[])x.Clone();
        for (int i = 0; i < x.Length; i++)
        {
            double keep = xp[i];
            xp[i] = keep + h;
            double fp = f(xp);
            xp[i] = keep - h;
            double fm = f(xp);
            xp[i] = keep;
            g[i] = (fp - fm) / (2 * h);
        }
        return g;
    }

    /// <summary>Max |a−b| / (atol + rtol·|b|) ≤ 1 elementwise, for finite-difference comparisons.</summary>
    public static void AssertAllClose(string what, ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, double rtol = 1e-5, double atol = 1e-7)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), $"{what}: length");
        for (int i = 0; i < actual.Length; i++)
        {
            double tol = atol + rtol * Math.Abs(expected[i]);
            if (!(Math.Abs(actual[i] - expected[i]) <= tol))
                Assert.Fail($"{what}: element {i} is {actual[i]:G9}, expected {expected[i]:G9} (tolerance {tol:E2})");
        }
    }

    /// <summary>Σ_i w_i·y_i with fixed pseudo-random weights: the scalar loss used to turn vector outputs into one
    /// number for finite differences (its gradient with respect to y is w).</summary>
    public static double Project(ReadOnlySpan<double> y, ReadOnlySpan<double> w)
    {
        double s = 0;
        for (int i = 0; i < y.Length; i++) s += y[i] * w[i];
        return s;
    }
}
