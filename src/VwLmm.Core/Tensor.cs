using System.Diagnostics.CodeAnalysis;

namespace VwLmm.Core;

/// <summary>
/// A typed, shaped view into a <see cref="DeviceBuffer"/>. Views made by an <see cref="Arena"/> carry the arena's
/// generation and become invalid when it is reset; using one afterwards throws, naming the op. The arena recycles
/// its handle objects (a steady-state step allocates none): a handle kept across a reset reads as freed until the
/// arena hands it out again, and from then on it is a different tensor. Under a checked arena
/// (<see cref="Arena.RecycleHandles"/> false) it stays freed for good.
/// </summary>
public sealed class Tensor
{
    internal Tensor(IBackend backend, DeviceBuffer buffer, long byteOffset, Shape shape, DType dtype, Arena? arena, int generation)
    {
        Backend = backend;
        Rebind(buffer, byteOffset, shape, dtype, arena, generation);
    }

    private Arena? _arena;
    private int _generation;

    /// <summary>Points a recycled arena handle at a new allocation.</summary>
    [MemberNotNull(nameof(Buffer))]
    internal void Rebind(DeviceBuffer buffer, long byteOffset, Shape shape, DType dtype, Arena? arena, int generation)
    {
        Buffer = buffer;
        ByteOffset = byteOffset;
        Shape = shape;
        DType = dtype;
        _arena = arena;
        _generation = generation;
    }

    public IBackend Backend { get; }
    public DeviceBuffer Buffer { get; private set; }
    public long ByteOffset { get; private set; }
    public Shape Shape { get; private set; }
    public DType DType { get; private set; }
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
    /// <remarks>A view of an arena tensor is an arena handle of the same generation; any other view is a new handle.</remarks>
    public Tensor View(long elementOffset, Shape shape)
    {
        if (elementOffset < 0 || elementOffset + shape.Numel > Numel)
            throw new ArgumentException($"view of {shape} at element {elementOffset} exceeds tensor {Shape}");
        long offset = ByteOffset + elementOffset * DType.Size();
        return _arena is not null && _generation == _arena.Generation
            ? _arena.Handle(Buffer, offset, shape, DType)
            : new Tensor(Backend, Buffer, offset, shape, DType, _arena, _generation);
    }

    /// <summary>The same elements with another shape of equal size.</summary>
    public Tensor Reshape(params ReadOnlySpan<int> dims) => Reshape(new Shape(dims));

    /// <summary>The same elements with another shape of equal size.</summary>
    public Tensor Reshape(Shape shape)
    {
        if (shape.Numel != Numel) throw new ArgumentException($"cannot reshape {Shape} to {shape}");
        return View(0, shape);
    }

    /// <summary>The elements as f32 on the host; a BF16 tensor (weights stored for inference) is widened exactly.</summary>
    public float[] ToArray()
    {
        Check.Alive("ToArray", "tensor", this);
        var a = new float[Numel];
        if (DType == DType.BF16)
        {
            var bits = new ushort[Numel];
            Backend.Download<ushort>(this, bits);
            FloatConversions.Bf16ToFloat(bits, a);
            return a;
        }
        if (DType != DType.F32) throw new InvalidOperationException($"ToArray: tensor is {DType}, expected F32 or BF16");
        Backend.Download<float>(this, a);
        return a;
    }

    public int[] ToIntArray()
    {
        Check.Alive("ToIntArray", "tensor", this);
        if (DType != DType.I32) throw new InvalidOperationException($"ToIntArray: tensor is {DType}, expected I32");
        var a = new int[Numel];
        Backend.Download<int>(this, a);
        return a;
    }

    public override string ToString() => $"Tensor{Shape} {DType} on {Backend.Name}";
}
