namespace VwLmm.Core;

/// <summary>
/// Bump allocator over one backend buffer for a step's activations and their gradients. <see cref="Reset"/> frees
/// everything at once and bumps the generation so that stale views are caught. Allocations are 256-byte aligned
/// (coalesced loads on the GPU, whole cache lines on the CPU).
/// </summary>
public sealed class Arena : IDisposable
{
    private const long Align = 256;
    private readonly IBackend _backend;
    private readonly DeviceBuffer _buffer;
    private long _used;

    public Arena(IBackend backend, long capacityBytes)
    {
        _backend = backend;
        _buffer = backend.Allocate(capacityBytes);
    }

    public long Capacity => _buffer.Bytes;
    public long Used => _used;
    public long HighWater { get; private set; }
    public int Generation { get; private set; }

    /// <summary>Allocates uninitialised memory.</summary>
    public Tensor Allocate(Shape shape, DType dtype = DType.F32)
    {
        long bytes = shape.Numel * dtype.Size();
        long start = (_used + Align - 1) / Align * Align;
        if (start + bytes > _buffer.Bytes)
            throw new OutOfMemoryException($"arena: {shape} {dtype} needs {bytes} bytes, {_buffer.Bytes - start} of {_buffer.Bytes} left");
        _used = start + bytes;
        HighWater = Math.Max(HighWater, _used);
        return new Tensor(_backend, _buffer, start, shape, dtype, this, Generation);
    }

    public Tensor Allocate(params int[] dims) => Allocate(new Shape(dims));

    /// <summary>Allocates and zero-fills (gradient buffers: every backward op accumulates).</summary>
    public Tensor Zeros(Shape shape, DType dtype = DType.F32)
    {
        var t = Allocate(shape, dtype);
        _backend.Fill(t, 0f);
        return t;
    }

    public void Reset()
    {
        _used = 0;
        Generation++;
    }

    public void Dispose() => _buffer.Dispose();
}
