namespace VwLmm.Core;

/// <summary>
/// An exponential moving average of parameters (Polyak averaging), kept on the backend beside them: it starts as a
/// copy of their values and each <see cref="Update"/> (after an optimiser step) makes it a ← d·a + (1 − d)·θ, as a
/// <see cref="IBackend.Scale"/> then an <see cref="IBackend.Axpy"/>: ops every backend has, tested against double
/// references, so the average needs no kernel of its own.
/// A stage with ema_decay ends with the average instead of the last step's weights: the weights keep moving at the end
/// of a schedule, and what the model answers about inputs it never trained on moves with them (docs/RESULTS.md,
/// session 25). Owns the averages' buffers.
/// </summary>
public sealed class ParameterAverage : IDisposable
{
    private readonly IBackend _backend;
    private readonly Parameter[] _params;
    private readonly DeviceBuffer[] _buffers;
    private readonly Tensor[] _averages;

    /// <summary>Averages of <paramref name="parameters"/> (stored as F32), each starting as a copy of its value.</summary>
    public ParameterAverage(IBackend backend, IEnumerable<Parameter> parameters, float decay)
    {
        if (!(decay is > 0f and < 1f)) throw new ArgumentOutOfRangeException(nameof(decay), decay, "the decay of a moving average must be in (0, 1)");
        _backend = backend;
        _params = parameters.ToArray();
        foreach (var p in _params)
            if (p.Value.DType != DType.F32) throw new ArgumentException($"{p.Name}: a moving average needs F32 weights, not {p.Value.DType}");
        Decay = decay;
        _buffers = new DeviceBuffer[_params.Length];
        _averages = new Tensor[_params.Length];
        for (int i = 0; i < _params.Length; i++)
        {
            _buffers[i] = Parameter.Allocate(backend, _params[i].Shape, DType.F32);
            _averages[i] = Tensor.FromBuffer(backend, _buffers[i], _params[i].Shape, DType.F32);
            backend.Copy(_averages[i], _params[i].Value, _params[i].Numel);
        }
    }

    public float Decay { get; }

    /// <summary>The averaged parameters, in the order given.</summary>
    public IReadOnlyList<Parameter> Parameters => _params;

    /// <summary>Parameter i's average [its shape].</summary>
    public Tensor Average(int i) => _averages[i];

    /// <summary>a ← d·a + (1 − d)·θ for every parameter.</summary>
    public void Update()
    {
        float keep = Decay, take = 1f - Decay;
        for (int i = 0; i < _params.Length; i++)
        {
            long n = _params[i].Numel;
            _backend.Scale(_averages[i], n, keep);
            _backend.Axpy(_averages[i], _params[i].Value, n, take);
        }
    }

    /// <summary>Sets every parameter to its average.</summary>
    public void CopyToParameters()
    {
        for (int i = 0; i < _params.Length; i++) _backend.Copy(_params[i].Value, _averages[i], _params[i].Numel);
    }

    public void Dispose()
    {
        foreach (var b in _buffers) b.Dispose();
    }
}
