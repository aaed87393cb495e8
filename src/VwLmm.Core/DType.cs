namespace VwLmm.Core;

/// <summary>Element type of a tensor. Compute is f32; f16 is a storage format converted on load; bf16 is that too, or the storage of inference-only linear weights (<see cref="IBackend.Gemm"/>); i32 carries ids and maps.</summary>
public enum DType { F32, F16, BF16, I32 }

public static class DTypeExtensions
{
    public static int Size(this DType t) => t switch
    {
        DType.F32 or DType.I32 => 4,
        DType.F16 or DType.BF16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };
}
