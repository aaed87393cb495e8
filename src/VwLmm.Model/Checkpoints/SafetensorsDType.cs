using VwLmm.Core;

namespace VwLmm.Model.Checkpoints;

/// <summary>The safetensors dtypes this engine reads. Floats convert to f32 on read; integers are read as i64.</summary>
public enum SafetensorsDType { F32, F16, BF16, I32, I64 }

/// <summary>One tensor of a safetensors header: <paramref name="Offset"/> is relative to the start of the data buffer.</summary>
public sealed record SafetensorsTensorInfo(string Name, SafetensorsDType DType, Shape Shape, long Offset, long ByteLength);

public static class SafetensorsDTypeExtensions
{
    public static int Size(this SafetensorsDType t) => t switch
    {
        SafetensorsDType.F16 or SafetensorsDType.BF16 => 2,
        SafetensorsDType.F32 or SafetensorsDType.I32 => 4,
        SafetensorsDType.I64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    public static bool IsFloat(this SafetensorsDType t) => t is SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16;

    /// <summary>The header spelling ("F32", "BF16", …).</summary>
    public static string ToHeaderName(this SafetensorsDType t) => t.ToString();

    internal static bool TryParse(string s, out SafetensorsDType t)
    {
        switch (s)
        {
            case "F32": t = SafetensorsDType.F32; return true;
            case "F16": t = SafetensorsDType.F16; return true;
            case "BF16": t = SafetensorsDType.BF16; return true;
            case "I32": t = SafetensorsDType.I32; return true;
            case "I64": t = SafetensorsDType.I64; return true;
            default: t = default; return false;
        }
    }
}
