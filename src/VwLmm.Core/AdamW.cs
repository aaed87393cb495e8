namespace VwLmm.Core;

/// <summary>
/// AdamW with decoupled weight decay and global gradient-norm clipping. The norm is reduced per parameter on the
/// device (SumSquares into one slot each) and summed on the host in parameter order, so it is deterministic; the clip
/// factor is folded into the fused update's gradScale instead of rescaling gradients in a separate pass.
/// Weight decay applies to matrices only (rank ≥ 2), not to norms and biases.
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly IBackend _backend;
    private readonly Parameter[] _params;
    private readonly DeviceBuffer _normBuffer;
    private readonly Tensor _norms;
    private readonly float[] _normsHost;

    public AdamW(IBackend backend, IEnumerable<Parameter> parameters, float beta1 = 0.9f, float beta2 = 0.999f,
                 float eps = 1e-8f, float weightDecay = 0f)
    {
        _backend = backend;
        _params = parameters.ToArray();
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        WeightDecay = weightDecay;
        int slots = Math.Max(1, _params.Length);
        _normBuffer = backend.Allocate(slots * 4L);
        _norms = Tensor.FromBuffer(backend, _normBuffer, new Shape(slots), DType.F32);
        _normsHost = new float[slots];
    }

    public float Beta1 { get; }
    public float Beta2 { get; }
    public float Eps { get; }
    public float WeightDecay { get; }
    /// <summary>Number of updates applied so far (restored on resume).</summary>
    public int StepCount { get; set; }

    /// <summary>√Σ‖g‖² over trainable parameters.</summary>
    public double GradNorm()
    {
        _backend.Fill(_norms, 0f);
        for (int i = 0; i < _params.Length; i++)
            if (_params[i].Trainable) _backend.SumSquares(_norms, i, _params[i].Grad!, _params[i].Numel);
        _backend.Download<float>(_norms, _normsHost);
        double s = 0;
        for (int i = 0; i < _params.Length; i++) s += _normsHost[i];
        return Math.Sqrt(s);
    }

    /// <summary>One update of every trainable parameter; gradients are clipped to maxNorm (≤ 0: no clipping). Returns the pre-clip norm.</summary>
    public double Step(float lr, float maxNorm = 0f, float gradScale = 1f)
    {
        double norm = GradNorm() * gradScale;
        float scale = gradScale;
        if (maxNorm > 0 && norm > maxNorm) scale = (float)(gradScale * maxNorm / norm);
        StepCount++;
        foreach (var p in _params)
        {
            if (!p.Trainable) continue;
            var (m, v) = p.Moments();
            float wd = p.Shape.Rank >= 2 ? WeightDecay : 0f;
            _backend.AdamW(p.Value, p.Grad!, m, v, p.Numel, lr, Beta1, Beta2, Eps, wd, StepCount, scale);
        }
        return norm;
    }

    public void ZeroGrad()
    {
        foreach (var p in _params)
            if (p.Trainable) _backend.Fill(p.Grad!, 0f);
    }

    public void Dispose() => _normBuffer.Dispose();
}
