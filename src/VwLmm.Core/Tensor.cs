namespace VwLmm.Core;

/// <summary>
/// A typed, shaped view into a <see cref="DeviceBuffer"/>. Views made by an <see cref="Arena"/> carry the arena's
/// generation and become invalid when it is reset; using one afterwards throws, naming the op.
/// </summary>
public sealed class Tensor
{
    internal Tensor(IBackend backend, DeviceBuffer buffer, long byteOffset, Shape shape, DType dtype, Arena? arena, int generation)
    {
        Backend = backend;
        Buffer = buffer;
        ByteOffset = byteOffset;
        Shape = shape;
        DType = dtype;
        _arena = arena;
        _generation = generation;
    }

    private readonly Arena? _arena;
    private readonly int _generation;

    public IBackend Backend { get; }
    public DeviceBuffer Buffer { get; }
    public long ByteOffset { get; }
    public Shape Shape { get; }
    public DType DType { get; }
    public long Numel => Shape.Numel;
    public long Bytes => Numel * DType.Size();

    /// <summary>Address of the first element (host pointer or device pointer, by backend).</summary>
    public nint Ptr => Buffer.Ptr + (nint)ByteOffset;

    public bool IsAlive => !Buffer.IsDisposed && (_arena is null || _arena.Generation == _generation);

    /// <summary>Wraps a whole buffer (persistent tensors: parameters, gradients, optimizer state).</summary>
    public static Tensor FromBuffer(IBackend backend, DeviceBuffer buffer, Shape shape, DType dtype)
    {
        if (shape.Numel * dtype.Size() > buffer.Bytes)
            throw new ArgumentException($"shape {shape} of {dtype} needs {shape.Numel * dtype.Size()} bytes, buffer has {buffer.Bytes}");
        return new Tensor(backend, buffer, 0, shape, dtype, null, 0);
    }

    /// <summary>A view of <paramref name="shape"/> starting <paramref name="elementOffset"/> elements into this tensor.</summary>
    public Tensor View(long elementOffset, Shape shape)
    {
        if (elementOffset < 0 || elementOffset + shape.Numel > Numel)
            throw new ArgumentException($"view of {shape} at element {elementOffset} exceeds tensor {Shape}");
        return new Tensor(Backend, Buffer, ByteOffset + elementOffset * DType.Size(), shape, DType, _arena, _generation);
    }

    /// <summary>The same elements with another shape of equal size.</summary>
    public Tensor Reshape(params int[] dims)
    {
        var s = new Shape(dims);
        if (s.Numel != Numel) throw new ArgumentException($"cannot reshape {Shape} to {s}");
        return new Tensor(Backend, Buffer, ByteOffset, s, DType, _arena, _generation);
    }

    public float[] ToArray()
    {
        if (DType != DType.F32) throw new InvalidOperationException($"ToArray: tensor is {DType}, expected F32");
        var a = new float[Numel];
        Backend.Download<float>(this, a);
        return a;
    }

    public int[] ToIntArray()
    {
        if (DType != DType.I32) throw new InvalidOperationException($"ToIntArray: tensor is {DType}, expected I32");
        var a = new int[Numel];
        Backend.Download<int>(this, a);
        return a;
    }

    public override string ToString() => $"Tensor{Shape} {DType} on {Backend.Name}";
}
