namespace VwLmm.Core;

/// <summary>
/// Bump allocator over one backend buffer for a step's activations and their gradients. <see cref="Reset"/> frees
/// everything at once and bumps the generation so that stale views are caught. Allocations are 256-byte aligned
/// (coalesced loads on the GPU, whole cache lines on the CPU). The <see cref="Tensor"/> handles it gives out — its
/// allocations and views of them — are recycled after a reset, so a step that repeats the previous one's allocations
/// allocates no managed memory. The price is that a handle kept across a reset reads as freed only until it is handed
/// out again; a checked arena (<see cref="RecycleHandles"/> false) gives every allocation a new handle instead, so any
/// use of a stale one throws, and fills every uninitialised F32 allocation with NaN, so an op that reads memory it
/// was meant to overwrite first (an output it accumulates into, a gradient it takes as zeroed) shows in its result.
/// </summary>
public sealed class Arena : IDisposable
{
    private const long Align = 256;
    private readonly IBackend _backend;
    private readonly DeviceBuffer _buffer;
    private readonly List<Tensor> _handles = new();
    private int _handlesInUse;
    private long _used;

    /// <param name="recycleHandles">null takes <see cref="RecycleHandlesByDefault"/>.</param>
    public Arena(IBackend backend, long capacityBytes, bool? recycleHandles = null)
    {
        _backend = backend;
        _buffer = backend.Allocate(capacityBytes);
        RecycleHandles = recycleHandles ?? RecycleHandlesByDefault;
    }

    /// <summary>
    /// The mode of arenas built without an explicit choice: recycling, unless the process starts with
    /// VWLMM_ARENA_CHECKS=1 (or the test suite, which runs checked, turns it off).
    /// </summary>
    public static bool RecycleHandlesByDefault { get; internal set; } = Environment.GetEnvironmentVariable("VWLMM_ARENA_CHECKS") != "1";

    /// <summary>
    /// Whether handles are reused after a reset (no managed allocation per step) or made anew (a handle kept across a
    /// reset can never alias a later tensor, so using it always throws).
    /// </summary>
    public bool RecycleHandles { get; }

    public long Capacity => _buffer.Bytes;
    public long Used => _used;
    public long HighWater { get; private set; }
    public int Generation { get; private set; }

    /// <summary>Allocates uninitialised memory (NaN in a checked arena, for F32).</summary>
    public Tensor Allocate(Shape shape, DType dtype = DType.F32)
    {
        var t = Reserve(shape, dtype);
        if (!RecycleHandles && dtype == DType.F32) _backend.Fill(t, float.NaN);
        return t;
    }

    private Tensor Reserve(Shape shape, DType dtype)
    {
        long bytes = shape.Numel * dtype.Size();
        long start = (_used + Align - 1) / Align * Align;
        if (start + bytes > _buffer.Bytes)
            throw new OutOfMemoryException($"arena: {shape} {dtype} needs {bytes} bytes, {_buffer.Bytes - start} of {_buffer.Bytes} left");
        _used = start + bytes;
        HighWater = Math.Max(HighWater, _used);
        return Handle(_buffer, start, shape, dtype);
    }

    public Tensor Allocate(params ReadOnlySpan<int> dims) => Allocate(new Shape(dims));

    /// <summary>A handle of this generation onto <paramref name="buffer"/> (arena memory or a persistent tensor's).</summary>
    internal Tensor Handle(DeviceBuffer buffer, long byteOffset, Shape shape, DType dtype)
    {
        if (!RecycleHandles) return new Tensor(_backend, buffer, byteOffset, shape, dtype, this, Generation);
        if (_handlesInUse == _handles.Count) _handles.Add(new Tensor(_backend, buffer, byteOffset, shape, dtype, this, Generation));
        var t = _handles[_handlesInUse++];
        t.Rebind(buffer, byteOffset, shape, dtype, this, Generation);
        return t;
    }

    /// <summary>
    /// A view of any tensor (a parameter, say) that lives until the next reset: unlike <see cref="Tensor.View"/> of a
    /// persistent tensor it reuses a recycled handle.
    /// </summary>
    public Tensor View(Tensor of, long elementOffset, Shape shape)
    {
        if (!of.IsAlive) throw new InvalidOperationException($"arena: cannot view {of.Shape} tensor, it was freed (arena reset or buffer disposed)");
        if (elementOffset < 0 || elementOffset + shape.Numel > of.Numel)
            throw new ArgumentException($"view of {shape} at element {elementOffset} exceeds tensor {of.Shape}");
        return Handle(of.Buffer, of.ByteOffset + elementOffset * of.DType.Size(), shape, of.DType);
    }

    /// <summary>Allocates and zero-fills (gradient buffers: every backward op accumulates); 4-byte dtypes, which
    /// <see cref="IBackend.Fill"/> writes.</summary>
    public Tensor Zeros(Shape shape, DType dtype = DType.F32)
    {
        if (dtype.Size() != 4) throw new ArgumentException($"Zeros fills 4-byte elements, not {dtype}", nameof(dtype));
        var t = Reserve(shape, dtype);
        _backend.Fill(t, 0f);
        return t;
    }

    public void Reset()
    {
        _used = 0;
        _handlesInUse = 0;
        Generation++;
    }

    public void Dispose() => _buffer.Dispose();
}
