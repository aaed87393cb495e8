using VwLmm.Core;

namespace VwLmm.Model.Training;

/// <summary>
/// A stage run as branches (<see cref="StageConfig.Branches"/>): its trainable weights, their AdamW moments and moving
/// average as they were at the fork, which every branch after the first starts from, and the sum of the final weights
/// of the branches run so far, whose mean the stage ends with. Owns the buffers (five copies of the trainable weights
/// at most). All copies and sums are backend ops in a fixed order, so the mean has the same bits every run.
/// </summary>
internal sealed class StageBranches : IDisposable
{
    /// <summary>Checkpoint suffixes: the fork's weights, moments and average, and the sum of the finished branches.</summary>
    public const string ForkSuffix = ".fork", SumSuffix = ".branch_sum";

    private readonly IBackend _backend;
    private readonly Parameter[] _params;
    private readonly List<DeviceBuffer> _buffers = [];
    private readonly Tensor[] _weights, _m, _v, _sum;
    private readonly Tensor[]? _average;

    /// <summary>Buffers for <paramref name="trainable"/>'s fork (and its average's, when the stage keeps one) and sum.</summary>
    public StageBranches(IBackend backend, IEnumerable<Parameter> trainable, bool average)
    {
        _backend = backend;
        _params = trainable.ToArray();
        _weights = _params.Select(New).ToArray();
        _m = _params.Select(New).ToArray();
        _v = _params.Select(New).ToArray();
        _sum = _params.Select(New).ToArray();
        _average = average ? _params.Select(New).ToArray() : null;
    }

    private Tensor New(Parameter p)
    {
        if (p.Value.DType != DType.F32) throw new ArgumentException($"{p.Name}: a stage with branches needs F32 weights, not {p.Value.DType}");
        var buffer = _backend.Allocate(Math.Max(1L, p.Numel) * sizeof(float));
        _buffers.Add(buffer);
        return Tensor.FromBuffer(_backend, buffer, p.Shape, DType.F32);
    }

    /// <summary>Records the weights, moments and average (the trainer's, over the same parameters) as the fork.</summary>
    public void Fork(ParameterAverage? average)
    {
        for (int i = 0; i < _params.Length; i++)
        {
            var (m, v) = _params[i].Moments();
            Copy(_weights[i], _params[i].Value, i);
            Copy(_m[i], m, i);
            Copy(_v[i], v, i);
            if (_average is not null) Copy(_average[i], average!.Average(i), i);
        }
    }

    /// <summary>Sets the weights, moments and average back to the fork's, for the next branch.</summary>
    public void Restart(ParameterAverage? average)
    {
        for (int i = 0; i < _params.Length; i++)
        {
            var (m, v) = _params[i].Moments();
            Copy(_params[i].Value, _weights[i], i);
            Copy(m, _m[i], i);
            Copy(v, _v[i], i);
            if (_average is not null) Copy(average!.Average(i), _average[i], i);
        }
    }

    /// <summary>Adds the weights a branch ended with to the sum (the first branch's weights become it).</summary>
    public void Add(int branch)
    {
        for (int i = 0; i < _params.Length; i++)
            if (branch == 0) Copy(_sum[i], _params[i].Value, i);
            else _backend.Axpy(_sum[i], _params[i].Value, _params[i].Numel, 1f);
    }

    /// <summary>Sets the weights to the sum times 1/branches: the mean of the branches' final weights.</summary>
    public void SetMean(int branches)
    {
        for (int i = 0; i < _params.Length; i++)
        {
            Copy(_params[i].Value, _sum[i], i);
            _backend.Scale(_params[i].Value, _params[i].Numel, 1f / branches);
        }
    }

    /// <summary>
    /// The tensors a checkpoint keeps, by name: the fork's always, the sum once a branch has finished
    /// (<paramref name="finished"/> &gt; 0).
    /// </summary>
    public IEnumerable<(string Name, Tensor Value)> Saved(int finished)
    {
        var suffixes = SavedSuffixes(_average is not null, finished);
        for (int i = 0; i < _params.Length; i++)
        {
            var values = new List<Tensor> { _weights[i], _m[i], _v[i] };
            if (_average is not null) values.Add(_average[i]);
            if (finished > 0) values.Add(_sum[i]);
            for (int k = 0; k < suffixes.Count; k++) yield return (_params[i].Name + suffixes[k], values[k]);
        }
    }

    /// <summary>
    /// What <see cref="Saved"/> appends to each parameter's name, in its order; every such tensor has the parameter's
    /// shape. Also what a resume checks the checkpoint against, before any buffer is made.
    /// </summary>
    public static IReadOnlyList<string> SavedSuffixes(bool average, int finished)
    {
        var suffixes = new List<string> { ForkSuffix, ForkSuffix + ".exp_avg", ForkSuffix + ".exp_avg_sq" };
        if (average) suffixes.Add(ForkSuffix + ".ema");
        if (finished > 0) suffixes.Add(SumSuffix);
        return suffixes;
    }

    private void Copy(Tensor dst, Tensor src, int i) => _backend.Copy(dst, src, _params[i].Numel);

    public void Dispose()
    {
        foreach (var b in _buffers) b.Dispose();
    }
}
