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
    /// <summary>A Count×Count block of floats at src (row pitch lds) written transposed at dst (row pitch ldd).</summary>
    static abstract void Transpose(float* src, long lds, float* dst, long ldd);
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* p) => _v.Store(p);

    // In four rounds of sixteen shuffles, each pairing rows 1, 2, 4 then 8 apart: 4-byte interleaves within 128-bit
    // lanes, then 8-byte ones, then two rounds of 128-bit lane selections. A gather of the same columns costs 16 cache
    // lines a vector, and packing a transposed weight by gathers took a fifth of a 128-row product's time.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose(float* src, long lds, float* dst, long ldd)
    {
        // Sixteen named registers, not an indexed array: stackalloc would keep the JIT from inlining this or from
        // holding the rows in registers.
        var (t0, t1) = Interleave(src, lds);
        var (t2, t3) = Interleave(src + 2 * lds, lds);
        var (t4, t5) = Interleave(src + 4 * lds, lds);
        var (t6, t7) = Interleave(src + 6 * lds, lds);
        var (t8, t9) = Interleave(src + 8 * lds, lds);
        var (ta, tb) = Interleave(src + 10 * lds, lds);
        var (tc, td) = Interleave(src + 12 * lds, lds);
        var (te, tf) = Interleave(src + 14 * lds, lds);
        // Each u holds one column c + 4L of four rows in lane L.
        var (u0, u1) = Pairs(t0, t2);
        var (u2, u3) = Pairs(t1, t3);
        var (u4, u5) = Pairs(t4, t6);
        var (u6, u7) = Pairs(t5, t7);
        var (u8, u9) = Pairs(t8, ta);
        var (ua, ub) = Pairs(t9, tb);
        var (uc, ud) = Pairs(tc, te);
        var (ue, uf) = Pairs(td, tf);
        Columns(u0, u4, u8, uc, dst, ldd);
        Columns(u1, u5, u9, ud, dst + ldd, ldd);
        Columns(u2, u6, ua, ue, dst + 2 * ldd, ldd);
        Columns(u3, u7, ub, uf, dst + 3 * ldd, ldd);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float>, Vector512<float>) Interleave(float* src, long lds)
    {
        Vector512<float> x = Vector512.Load(src), y = Vector512.Load(src + lds);
        return (Avx512F.UnpackLow(x, y), Avx512F.UnpackHigh(x, y));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float>, Vector512<float>) Pairs(Vector512<float> x, Vector512<float> y) =>
        (Avx512F.UnpackLow(x.AsDouble(), y.AsDouble()).AsSingle(), Avx512F.UnpackHigh(x.AsDouble(), y.AsDouble()).AsSingle());

    // Columns c, c+4, c+8, c+12 (rows dst, dst + 4·ldd, …) from the four row groups' vectors for column c.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Columns(Vector512<float> g0, Vector512<float> g1, Vector512<float> g2, Vector512<float> g3, float* dst, long ldd)
    {
        Vector512<float> v0 = Avx512F.Shuffle4x128(g0, g1, 0x88), v1 = Avx512F.Shuffle4x128(g0, g1, 0xDD);
        Vector512<float> w0 = Avx512F.Shuffle4x128(g2, g3, 0x88), w1 = Avx512F.Shuffle4x128(g2, g3, 0xDD);
        Avx512F.Shuffle4x128(v0, w0, 0x88).Store(dst);
        Avx512F.Shuffle4x128(v1, w1, 0x88).Store(dst + 4 * ldd);
        Avx512F.Shuffle4x128(v0, w0, 0xDD).Store(dst + 8 * ldd);
        Avx512F.Shuffle4x128(v1, w1, 0xDD).Store(dst + 12 * ldd);
    }
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* p) => _v.Store(p);

    // Three rounds of eight shuffles, as V512's: 4-byte interleaves, 8-byte selections, then 128-bit lane pairs.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose(float* src, long lds, float* dst, long ldd)
    {
        if (!Avx.IsSupported)
        {
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 8; j++) dst[j * ldd + i] = src[i * lds + j];
            return;
        }
        Vector256<float> r0 = Vector256.Load(src), r1 = Vector256.Load(src + lds), r2 = Vector256.Load(src + 2 * lds),
                         r3 = Vector256.Load(src + 3 * lds), r4 = Vector256.Load(src + 4 * lds), r5 = Vector256.Load(src + 5 * lds),
                         r6 = Vector256.Load(src + 6 * lds), r7 = Vector256.Load(src + 7 * lds);
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3),
                         t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
        // Each u holds column c of four rows in its low lane and column c + 4 in its high one.
        Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE), u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE),
                         u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE), u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Permute2x128(u0, u4, 0x20).Store(dst);
        Avx.Permute2x128(u1, u5, 0x20).Store(dst + ldd);
        Avx.Permute2x128(u2, u6, 0x20).Store(dst + 2 * ldd);
        Avx.Permute2x128(u3, u7, 0x20).Store(dst + 3 * ldd);
        Avx.Permute2x128(u0, u4, 0x31).Store(dst + 4 * ldd);
        Avx.Permute2x128(u1, u5, 0x31).Store(dst + 5 * ldd);
        Avx.Permute2x128(u2, u6, 0x31).Store(dst + 6 * ldd);
        Avx.Permute2x128(u3, u7, 0x31).Store(dst + 7 * ldd);
    }
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
