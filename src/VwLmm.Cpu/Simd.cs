using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace VwLmm.Cpu;

/// <summary>
/// A float vector of the machine's width. Kernels are written once, generic over this interface, and instantiated for
/// <see cref="V512"/> when AVX-512 is accelerated, else <see cref="V256"/> (the BCL's ISimdVector is not public).
/// The JIT specialises each struct instantiation, so the wrappers compile to bare vector instructions.
/// </summary>
internal unsafe interface IVec<TSelf> where TSelf : unmanaged, IVec<TSelf>
{
    static abstract int Count { get; }
    static abstract TSelf Zero { get; }
    static abstract TSelf Create(float value);
    static abstract TSelf Load(float* p);
    void Store(float* p);
    static abstract TSelf operator +(TSelf a, TSelf b);
    static abstract TSelf operator -(TSelf a, TSelf b);
    static abstract TSelf operator *(TSelf a, TSelf b);
    static abstract TSelf operator /(TSelf a, TSelf b);
    /// <summary>a·b + c with one rounding.</summary>
    static abstract TSelf Fma(TSelf a, TSelf b, TSelf c);
    static abstract TSelf Sqrt(TSelf a);
    static abstract TSelf Exp(TSelf a);
    static abstract TSelf Abs(TSelf a);
    static abstract TSelf Min(TSelf a, TSelf b);
    static abstract TSelf CopySign(TSelf magnitude, TSelf sign);
    /// <summary>Lanes where a &lt; b take ifTrue, the others ifFalse.</summary>
    static abstract TSelf SelectLess(TSelf a, TSelf b, TSelf ifTrue, TSelf ifFalse);
    static abstract float Sum(TSelf a);
}

internal readonly unsafe struct V512(Vector512<float> v) : IVec<V512>
{
    private readonly Vector512<float> _v = v;
    public static int Count => Vector512<float>.Count;
    public static V512 Zero => new(Vector512<float>.Zero);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Create(float value) => new(Vector512.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Load(float* p) => new(Vector512.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* p) => _v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator +(V512 a, V512 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator -(V512 a, V512 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator *(V512 a, V512 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator /(V512 a, V512 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Fma(V512 a, V512 b, V512 c) => new(Vector512.FusedMultiplyAdd(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Sqrt(V512 a) => new(Vector512.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Exp(V512 a) => new(Vector512.Exp(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Abs(V512 a) => new(Vector512.Abs(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Min(V512 a, V512 b) => new(Vector512.Min(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 CopySign(V512 m, V512 s) => new(Vector512.CopySign(m._v, s._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 SelectLess(V512 a, V512 b, V512 t, V512 f) => new(Vector512.ConditionalSelect(Vector512.LessThan(a._v, b._v), t._v, f._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(V512 a) => Vector512.Sum(a._v);
}

internal readonly unsafe struct V256(Vector256<float> v) : IVec<V256>
{
    private readonly Vector256<float> _v = v;
    public static int Count => Vector256<float>.Count;
    public static V256 Zero => new(Vector256<float>.Zero);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Create(float value) => new(Vector256.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Load(float* p) => new(Vector256.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* p) => _v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator +(V256 a, V256 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator -(V256 a, V256 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator *(V256 a, V256 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator /(V256 a, V256 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Fma(V256 a, V256 b, V256 c) => new(Vector256.FusedMultiplyAdd(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Sqrt(V256 a) => new(Vector256.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Exp(V256 a) => new(Vector256.Exp(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Abs(V256 a) => new(Vector256.Abs(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Min(V256 a, V256 b) => new(Vector256.Min(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 CopySign(V256 m, V256 s) => new(Vector256.CopySign(m._v, s._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 SelectLess(V256 a, V256 b, V256 t, V256 f) => new(Vector256.ConditionalSelect(Vector256.LessThan(a._v, b._v), t._v, f._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(V256 a) => Vector256.Sum(a._v);
}

/// <summary>Vector math shared by the CPU kernels.</summary>
internal static unsafe class VecMath
{
    /// <summary>
    /// erf(x) in float, max error 1.2 ulp / 7e-8 absolute. Two branch-free pieces, blended per lane:
    /// |x| &lt; 0.921875: x + x·P(x²) (degree-5 minimax of erf(x)/x − 1);
    /// otherwise: 1 − exp(Q(|x|)) with Q a degree-8 minimax of log(erfc(t)) on [0.921875, 3.925], beyond which erf
    /// rounds to ±1 in float. Coefficients fitted in double (Lawson's iteration) and rounded to float.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Erf<TV>(TV x) where TV : unmanaged, IVec<TV>
    {
        TV t = TV.Abs(x);
        TV s = x * x;
        TV p = TV.Create(-6.01408072e-4f);
        p = TV.Fma(p, s, TV.Create(4.99813585e-3f));
        p = TV.Fma(p, s, TV.Create(-2.67703235e-2f));
        p = TV.Fma(p, s, TV.Create(1.12819299e-1f));
        p = TV.Fma(p, s, TV.Create(-3.76125067e-1f));
        p = TV.Fma(p, s, TV.Create(1.28379151e-1f));
        TV small = TV.Fma(p, x, x);

        TV u = TV.Min(t, TV.Create(3.925f));
        TV q = TV.Create(1.63080608e-6f);
        q = TV.Fma(q, u, TV.Create(-4.58965660e-5f));
        q = TV.Fma(q, u, TV.Create(5.95135731e-4f));
        q = TV.Fma(q, u, TV.Create(-4.75030718e-3f));
        q = TV.Fma(q, u, TV.Create(2.63905358e-2f));
        q = TV.Fma(q, u, TV.Create(-1.10018753e-1f));
        q = TV.Fma(q, u, TV.Create(-6.31899178e-1f));
        q = TV.Fma(q, u, TV.Create(-1.13018596f));
        q = TV.Fma(q, u, TV.Create(3.07277776e-4f));
        TV large = TV.CopySign(TV.Create(1f) - TV.Exp(q), x);

        return TV.SelectLess(t, TV.Create(0.921875f), small, large);
    }

    /// <summary>σ(x) = 1/(1+e^−x); saturates cleanly to 0 and 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Sigmoid<TV>(TV x) where TV : unmanaged, IVec<TV>
    {
        TV one = TV.Create(1f);
        return one / (one + TV.Exp(TV.Zero - x));
    }

    /// <summary>Σ x[0..n).</summary>
    public static float Sum<TV>(float* x, int n) where TV : unmanaged, IVec<TV>
    {
        TV acc = TV.Zero;
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count) acc += TV.Load(x + i);
        float tail = 0;
        for (; i < n; i++) tail += x[i];
        return TV.Sum(acc) + tail;
    }

    /// <summary>Σ (x[i] − mu)² over [0..n).</summary>
    public static float SumSquaredDeviation<TV>(float* x, float mu, int n) where TV : unmanaged, IVec<TV>
    {
        TV acc = TV.Zero, vmu = TV.Create(mu);
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count)
        {
            TV d = TV.Load(x + i) - vmu;
            acc = TV.Fma(d, d, acc);
        }
        float tail = 0;
        for (; i < n; i++) tail = MathF.FusedMultiplyAdd(x[i] - mu, x[i] - mu, tail);
        return TV.Sum(acc) + tail;
    }

    /// <summary>dst[0..n) += src[0..n).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void AddInto<TV>(float* dst, float* src, int n) where TV : unmanaged, IVec<TV>
    {
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count) (TV.Load(dst + i) + TV.Load(src + i)).Store(dst + i);
        for (; i < n; i++) dst[i] += src[i];
    }

    /// <summary>Runs <see cref="AddInto{TV}"/> at the widest accelerated width.</summary>
    public static void AddInto(float* dst, float* src, int n)
    {
        if (Vector512.IsHardwareAccelerated) AddInto<V512>(dst, src, n);
        else AddInto<V256>(dst, src, n);
    }
}
