using System.Runtime.Intrinsics;

namespace VwLmm.Core;

/// <summary>Bit-exact conversions between f32 and the 16-bit storage formats (IEEE binary16, bfloat16).</summary>
public static class FloatConversions
{
    /// <summary>bfloat16 bits → f32: bf16 is the upper half of an f32, so this is exact for every value, NaNs included.</summary>
    public static float Bf16ToFloat(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>
    /// f32 → bfloat16 bits, round to nearest even (PyTorch's rounding). NaN becomes the quiet NaN 0x7FC0 with its sign kept:
    /// plain rounding could carry a NaN payload into infinity, and PyTorch itself is not consistent here (0x7FC0 scalar, 0xFFFF vectorised).
    /// </summary>
    public static ushort FloatToBf16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) & 0x8000 | 0x7FC0);
        uint roundingBias = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + roundingBias) >> 16);
    }

    /// <summary>IEEE binary16 bits → f32 (exact: subnormals, ±0, ±inf and NaN handled by <see cref="Half"/>).</summary>
    public static float F16ToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>src [n] bf16 bits → dst [n] f32.</summary>
    public static void Bf16ToFloat(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        if (dst.Length != src.Length) throw new ArgumentException($"bf16 conversion: {src.Length} inputs, {dst.Length} outputs");
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Span<uint> outBits = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(dst);
            for (; i + Vector256<ushort>.Count <= src.Length; i += Vector256<ushort>.Count)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Create(src.Slice(i, Vector256<ushort>.Count)));
                (lo << 16).CopyTo(outBits.Slice(i));
                (hi << 16).CopyTo(outBits.Slice(i + Vector256<uint>.Count));
            }
        }
        for (; i < src.Length; i++) dst[i] = Bf16ToFloat(src[i]);
    }

    /// <summary>src [n] f16 bits → dst [n] f32.</summary>
    public static void F16ToFloat(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        if (dst.Length != src.Length) throw new ArgumentException($"f16 conversion: {src.Length} inputs, {dst.Length} outputs");
        for (int i = 0; i < src.Length; i++) dst[i] = F16ToFloat(src[i]);
    }

    /// <summary>src [n] f32 → dst [n] bf16 bits (round to nearest even).</summary>
    public static void FloatToBf16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        if (dst.Length != src.Length) throw new ArgumentException($"bf16 conversion: {src.Length} inputs, {dst.Length} outputs");
        for (int i = 0; i < src.Length; i++) dst[i] = FloatToBf16(src[i]);
    }
}
