namespace VwLmm.Core;

/// <summary>
/// A persistent, named model weight with its gradient and AdamW moments (allocated on first need). Frozen
/// parameters have no gradient buffer and ops record no weight-gradient work for them. A linear layer's weight may be
/// stored as BF16 for inference (half the bytes a decoded token reads); such a parameter cannot be trained.
/// </summary>
public sealed class Parameter : IDisposable
{
    private readonly List<DeviceBuffer> _owned = new();

    public Parameter(IBackend backend, string name, Shape shape, DType dtype = DType.F32)
    {
        Name = name;
        Value = Alloc(backend, shape, CheckStorage(name, dtype));
        Zero(backend, Value.Buffer);
    }

    /// <summary>Member <paramref name="index"/> of <paramref name="stack"/>: value and gradient are slices of the stack's.</summary>
    internal Parameter(string name, ParameterStack stack, int index)
    {
        Name = name;
        Stack = stack;
        _index = index;
        Value = stack.Value.View(index * stack.Each.Numel, stack.Each);
    }

    private readonly int _index;

    public string Name { get; }

    /// <summary>The stack whose buffers hold this parameter, or null when it has its own.</summary>
    public ParameterStack? Stack { get; }
    public Tensor Value { get; }
    public Shape Shape => Value.Shape;
    public long Numel => Value.Numel;
    public Tensor? Grad { get; private set; }
    public Tensor? ExpAvg { get; private set; }
    public Tensor? ExpAvgSq { get; private set; }

    /// <summary>Whether the optimiser updates this parameter; setting it allocates the gradient on first use.</summary>
    public bool Trainable
    {
        get => _trainable;
        set
        {
            if (value && Value.DType != DType.F32)
                throw new InvalidOperationException($"{Name} is stored as {Value.DType} for inference; training needs F32 weights");
            _trainable = value;
            if (value && Grad is null)
            {
                Grad = Stack is null ? Alloc(Value.Backend, Shape) : Stack.GradSlice(_index);
                Value.Backend.Fill(Grad, 0f);
            }
        }
    }
    private bool _trainable;

    /// <summary>AdamW moments, zero-initialised on first call.</summary>
    public (Tensor m, Tensor v) Moments()
    {
        if (ExpAvg is null || ExpAvgSq is null)
        {
            ExpAvg = Alloc(Value.Backend, Shape);
            ExpAvgSq = Alloc(Value.Backend, Shape);
            Value.Backend.Fill(ExpAvg, 0f);
            Value.Backend.Fill(ExpAvgSq, 0f);
        }
        return (ExpAvg, ExpAvgSq);
    }

    /// <summary>Sets the value from f32 host data [Numel], rounded to nearest even when stored as BF16.</summary>
    public void SetValues(ReadOnlySpan<float> values)
    {
        if (values.Length != Numel) throw new ArgumentException($"{Name}: {values.Length} values for {Shape}");
        if (Value.DType == DType.F32)
        {
            Value.Backend.Upload(Value, values);
            return;
        }
        var bits = new ushort[values.Length];
        FloatConversions.FloatToBf16(values, bits);
        Value.Backend.Upload<ushort>(Value, bits);
    }

    private Tensor Alloc(IBackend backend, Shape shape, DType dtype = DType.F32)
    {
        var buf = Allocate(backend, shape, dtype);
        _owned.Add(buf);
        return Tensor.FromBuffer(backend, buf, shape, dtype);
    }

    internal static DType CheckStorage(string name, DType dtype) =>
        dtype is DType.F32 or DType.BF16 ? dtype : throw new ArgumentException($"{name}: parameters are stored as F32 or BF16, not {dtype}");

    /// <summary>Storage for <paramref name="shape"/>, rounded up to whole floats so <see cref="Zero"/> can fill it as F32.</summary>
    internal static DeviceBuffer Allocate(IBackend backend, Shape shape, DType dtype) =>
        backend.Allocate((Math.Max(1, shape.Numel) * dtype.Size() + 3) / 4 * 4);

    /// <summary>Zeroes a whole buffer from <see cref="Allocate"/>: the bits of 0 are 0 in F32 and BF16 alike.</summary>
    internal static void Zero(IBackend backend, DeviceBuffer buffer) =>
        backend.Fill(Tensor.FromBuffer(backend, buffer, new Shape(checked((int)(buffer.Bytes / 4))), DType.F32), 0f);

    public override string ToString() => $"{Name} {Shape}";

    public void Dispose()
    {
        foreach (var b in _owned) b.Dispose();
        _owned.Clear();
    }
}

/// <summary>
/// G parameters of one shape whose values (and gradients) lie back to back in one buffer, so that an op can take them
/// as one [G, ...] tensor — <see cref="Ops.LinearStack"/> runs the linear layers that read the same input (q/k/v,
/// gate/up) as one batched product. The members stay ordinary named parameters for checkpoints and the optimiser.
/// </summary>
public sealed class ParameterStack : IDisposable
{
    private readonly DeviceBuffer _value;
    private DeviceBuffer? _grad;
    private readonly Parameter[] _members;

    public ParameterStack(IBackend backend, IReadOnlyList<string> names, Shape each, DType dtype = DType.F32)
    {
        if (names.Count < 1) throw new ArgumentException("a parameter stack needs at least one member", nameof(names));
        Each = each;
        var shape = new Shape([names.Count, .. each.Dims]);
        dtype = Parameter.CheckStorage(names[0], dtype);
        _value = Parameter.Allocate(backend, shape, dtype);
        Value = Tensor.FromBuffer(backend, _value, shape, dtype);
        Parameter.Zero(backend, _value);
        _members = new Parameter[names.Count];
        for (int i = 0; i < _members.Length; i++) _members[i] = new Parameter(names[i], this, i);
    }

    /// <summary>The shape of one member.</summary>
    public Shape Each { get; }

    /// <summary>[G, ...Each], every member's value in order.</summary>
    public Tensor Value { get; }

    /// <summary>[G, ...Each], every member's gradient in order; null until a member becomes trainable.</summary>
    public Tensor? Grad { get; private set; }

    public IReadOnlyList<Parameter> Members => _members;

    /// <summary>Member i's slice of the gradient, allocating the stack's gradient on first need.</summary>
    internal Tensor GradSlice(int i)
    {
        if (Grad is null)
        {
            _grad = Value.Backend.Allocate(Math.Max(1, Value.Numel) * 4);
            Grad = Tensor.FromBuffer(Value.Backend, _grad, Value.Shape, DType.F32);
            Value.Backend.Fill(Grad, 0f);
        }
        return Grad.View(i * Each.Numel, Each);
    }

    public void Dispose()
    {
        foreach (var m in _members) m.Dispose();
        _value.Dispose();
        _grad?.Dispose();
    }
}
