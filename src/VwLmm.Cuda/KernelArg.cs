namespace VwLmm.Cuda;

/// <summary>How a launcher passes one kernel argument. <see cref="Pointer"/> is an <c>nint</c> local (launchers keep
/// device addresses, and only those, in nint); the others are the C# types int/uint, long and float.</summary>
public enum KernelArgKind : byte { Pointer, Int32, Int64, Float32 }

/// <summary>
/// One kernel argument as cuLaunchKernel takes it (the address of its value) plus the C# type it came from, so what
/// launchers pack can be checked against the kernels' signatures. Launchers write
/// <c>ReadOnlySpan&lt;KernelArg&gt; args = [&amp;ptr, &amp;n, &amp;eps];</c> with locals of the matching types.
/// </summary>
internal readonly unsafe struct KernelArg
{
    private KernelArg(void* address, KernelArgKind kind)
    {
        Address = address;
        Kind = kind;
    }

    public void* Address { get; }
    public KernelArgKind Kind { get; }

    public static implicit operator KernelArg(nint* p) => new(p, KernelArgKind.Pointer);
    public static implicit operator KernelArg(int* p) => new(p, KernelArgKind.Int32);
    public static implicit operator KernelArg(uint* p) => new(p, KernelArgKind.Int32);
    public static implicit operator KernelArg(long* p) => new(p, KernelArgKind.Int64);
    public static implicit operator KernelArg(float* p) => new(p, KernelArgKind.Float32);
}
