namespace VwLmm.Core;

/// <summary>
/// A persistent, named model weight with its gradient and AdamW moments (allocated on first need). Frozen
/// parameters have no gradient buffer and ops record no weight-gradient work for them.
/// </summary>
public sealed class Parameter : IDisposable
{
    private readonly List<DeviceBuffer> _owned = new();

    public Parameter(IBackend backend, string name, Shape shape)
    {
        Name = name;
        Value = Alloc(backend, shape);
        backend.Fill(Value, 0f);
    }

    public string Name { get; }
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
            _trainable = value;
            if (value && Grad is null)
            {
                Grad = Alloc(Value.Backend, Shape);
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

    private Tensor Alloc(IBackend backend, Shape shape)
    {
        var buf = backend.Allocate(Math.Max(1, shape.Numel) * 4);
        _owned.Add(buf);
        return Tensor.FromBuffer(backend, buf, shape, DType.F32);
    }

    public override string ToString() => $"{Name} {Shape}";

    public void Dispose()
    {
        foreach (var b in _owned) b.Dispose();
        _owned.Clear();
    }
}
