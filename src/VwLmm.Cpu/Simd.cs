using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
    /// <summary>Count bf16 values, each widened exactly to the float with its bits in the high half.</summary>
    static abstract TSelf LoadBf16(ushort* p);
    /// <summary>p[0], p[stride], p[2·stride], …: one float from each of Count rows (stride·Count below 2³¹).</summary>
    static abstract TSelf LoadStrided(float* p, int stride);
    void Store(float* p);
    static abstract TSelf operator +(TSelf a, TSelf b);
    static abstract TSelf operator -(TSelf a, TSelf b);
    static abstract TSelf operator *(TSelf a, TSelf b);
    static abstract TSelf operator /(TSelf a, TSelf b);
    /// <summary>a·b + c with one rounding.</summary>
    static abstract TSelf Fma(TSelf a, TSelf b, TSelf c);
    static abstract TSelf Sqrt(TSelf a);
    /// <summary>Rounds to the nearest integer, ties to even.</summary>
    static abstract TSelf Round(TSelf a);
    /// <summary>a·2ⁿ for integral n in [−252, 254], in two power-of-two steps so that only the result can leave the normal range.</summary>
    static abstract TSelf ScaleB(TSelf a, TSelf n);
    static abstract TSelf Abs(TSelf a);
    static abstract (TSelf Sin, TSelf Cos) SinCos(TSelf a);
    static abstract TSelf Min(TSelf a, TSelf b);
    /// <summary>Lane-wise maximum; NaN propagates.</summary>
    static abstract TSelf Max(TSelf a, TSelf b);
    static abstract TSelf CopySign(TSelf magnitude, TSelf sign);
    /// <summary>Lanes where a &lt; b take ifTrue, the others ifFalse.</summary>
    static abstract TSelf SelectLess(TSelf a, TSelf b, TSelf ifTrue, TSelf ifFalse);
    static abstract float Sum(TSelf a);
    /// <summary>The largest lane; NaN propagates.</summary>
    static abstract float MaxAcross(TSelf a);
}

internal readonly unsafe struct V512(Vector512<float> v) : IVec<V512>
{
    private readonly Vector512<float> _v = v;
    public static int Count => Vector512<float>.Count;
    public static V512 Zero => new(Vector512<float>.Zero);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Create(float value) => new(Vector512.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Load(float* p) => new(Vector512.Load(p));
    // One zero-extending load (vpmovzxwd) and a shift; V512 runs only where Vector512 is accelerated, which on x64
    // means AVX-512F, and the portable widening of a 256-bit vector costs an extract and an insert more.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 LoadBf16(ushort* p) => new(Vector512.ShiftLeft(Avx512F.ConvertToVector512UInt32(Vector256.Load(p)), 16).AsSingle());
    // Two AVX2 gathers (.NET exposes no 512-bit one); V512 runs only where AVX-512F, hence AVX2, is.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 LoadStrided(float* p, int stride)
    {
        var index = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * stride;
        return new(Vector512.Create(Avx2.GatherVector256(p, index, sizeof(float)), Avx2.GatherVector256(p + 8L * stride, index, sizeof(float))));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* p) => _v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator +(V512 a, V512 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator -(V512 a, V512 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator *(V512 a, V512 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator /(V512 a, V512 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Fma(V512 a, V512 b, V512 c) => new(Vector512.FusedMultiplyAdd(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Sqrt(V512 a) => new(Vector512.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Round(V512 a) => new(Vector512.Round(a._v));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 ScaleB(V512 a, V512 n)
    {
        var e = Vector512.ConvertToInt32(n._v);
        var h = Vector512.ShiftRightArithmetic(e, 1);
        var bias = Vector512.Create(127);
        return new(a._v * Vector512.ShiftLeft(h + bias, 23).AsSingle() * Vector512.ShiftLeft(e - h + bias, 23).AsSingle());
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Abs(V512 a) => new(Vector512.Abs(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (V512 Sin, V512 Cos) SinCos(V512 a)
    {
        var (s, c) = Vector512.SinCos(a._v);
        return (new(s), new(c));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Min(V512 a, V512 b) => new(Vector512.Min(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Max(V512 a, V512 b) => new(Vector512.Max(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 CopySign(V512 m, V512 s) => new(Vector512.CopySign(m._v, s._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 SelectLess(V512 a, V512 b, V512 t, V512 f) => new(Vector512.ConditionalSelect(Vector512.LessThan(a._v, b._v), t._v, f._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(V512 a) => Vector512.Sum(a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(V512 a) => V256.MaxAcross(new V256(Vector256.Max(a._v.GetLower(), a._v.GetUpper())));
}

internal readonly unsafe struct V256(Vector256<float> v) : IVec<V256>
{
    private readonly Vector256<float> _v = v;
    public static int Count => Vector256<float>.Count;
    public static V256 Zero => new(Vector256<float>.Zero);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Create(float value) => new(Vector256.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Load(float* p) => new(Vector256.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 LoadBf16(ushort* p)
    {
        var h = Vector128.Load(p);
        var u = Avx2.IsSupported ? Avx2.ConvertToVector256Int32(h).AsUInt32() : Vector256.Create(Vector128.WidenLower(h), Vector128.WidenUpper(h));
        return new(Vector256.ShiftLeft(u, 16).AsSingle());
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 LoadStrided(float* p, int stride) => Avx2.IsSupported
        ? new(Avx2.GatherVector256(p, Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * stride, sizeof(float)))
        : new(Vector256.Create(p[0], p[stride], p[2 * stride], p[3 * stride], p[4 * stride], p[5 * stride], p[6 * stride], p[7 * stride]));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* p) => _v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator +(V256 a, V256 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator -(V256 a, V256 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator *(V256 a, V256 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator /(V256 a, V256 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Fma(V256 a, V256 b, V256 c) => new(Vector256.FusedMultiplyAdd(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Sqrt(V256 a) => new(Vector256.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Round(V256 a) => new(Vector256.Round(a._v));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 ScaleB(V256 a, V256 n)
    {
        var e = Vector256.ConvertToInt32(n._v);
        var h = Vector256.ShiftRightArithmetic(e, 1);
        var bias = Vector256.Create(127);
        return new(a._v * Vector256.ShiftLeft(h + bias, 23).AsSingle() * Vector256.ShiftLeft(e - h + bias, 23).AsSingle());
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Abs(V256 a) => new(Vector256.Abs(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (V256 Sin, V256 Cos) SinCos(V256 a)
    {
        var (s, c) = Vector256.SinCos(a._v);
        return (new(s), new(c));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Min(V256 a, V256 b) => new(Vector256.Min(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Max(V256 a, V256 b) => new(Vector256.Max(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 CopySign(V256 m, V256 s) => new(Vector256.CopySign(m._v, s._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 SelectLess(V256 a, V256 b, V256 t, V256 f) => new(Vector256.ConditionalSelect(Vector256.LessThan(a._v, b._v), t._v, f._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(V256 a) => Vector256.Sum(a._v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(V256 a)
    {
        var m = Vector128.Max(a._v.GetLower(), a._v.GetUpper());
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        return MathF.Max(m.GetElement(0), m.GetElement(1));
    }
}

/// <summary>
/// The element type a row of floats is stored in: f32 itself, or bf16 (a weight matrix stored for inference) widened
/// exactly as it loads. Row kernels generic over it run one accumulation order for both, so a bf16 row gives the bits
/// its f32 widening gives.
/// </summary>
internal unsafe interface IFloatStorage<TSelf> where TSelf : unmanaged, IFloatStorage<TSelf>
{
    /// <summary>TV.Count elements from p, as floats.</summary>
    static abstract TV Load<TV>(TSelf* p) where TV : unmanaged, IVec<TV>;
    static abstract float ToSingle(TSelf x);
}

/// <summary>An f32 element: loads as itself.</summary>
internal readonly unsafe struct F32(float value) : IFloatStorage<F32>
{
    private readonly float _value = value;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static TV Load<TV>(F32* p) where TV : unmanaged, IVec<TV> => TV.Load((float*)p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float ToSingle(F32 x) => x._value;
}

/// <summary>A bf16 element: the high 16 bits of an f32, so widening (bits &lt;&lt; 16) is exact, NaN, ±∞, ±0 and subnormals included.</summary>
internal readonly unsafe struct BF16(ushort bits) : IFloatStorage<BF16>
{
    private readonly ushort _bits = bits;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static TV Load<TV>(BF16* p) where TV : unmanaged, IVec<TV> => TV.LoadBf16((ushort*)p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float ToSingle(BF16 x) => BitConverter.Int32BitsToSingle(x._bits << 16);
}

/// <summary>A range job whose kernels are generic over the vector width.</summary>
internal interface ISimdJob
{
    void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>;
}

/// <summary>Runs an <see cref="ISimdJob"/> at the widest accelerated width: the one place that picks V512 or V256.</summary>
internal struct WidestSimd<TJob>(TJob job) : IRangeJob where TJob : struct, ISimdJob
{
    private TJob _job = job;

    public void Execute(int start, int end)
    {
        if (Vector512.IsHardwareAccelerated) _job.Execute<V512>(start, end);
        else _job.Execute<V256>(start, end);
    }
}
