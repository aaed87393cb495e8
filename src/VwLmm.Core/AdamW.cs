namespace VwLmm.Core;

/// <summary>
/// AdamW with decoupled weight decay and global gradient-norm clipping. The norm is reduced per parameter on the
/// device (one sum of squares per gradient) and summed on the host in parameter order, so it is deterministic; the clip
/// factor is folded into the fused update's gradScale instead of rescaling gradients in a separate pass.
/// Weight decay applies to matrices only (rank ≥ 2), not to norms and biases. Zeroing, norm and update each visit the
/// trainable parameters in one pass (<see cref="ParameterList"/>), with the arithmetic of the per-tensor ops.
/// The moments belong to the parameters and outlive the optimiser, so that a checkpoint can restore them; an optimiser
/// meant to start afresh on parameters another one already moved calls <see cref="ResetMoments"/>.
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly IBackend _backend;
    private readonly Parameter[] _params;
    private readonly bool[] _listed;
    private readonly DeviceBuffer _normBuffer;
    private readonly Tensor _norms;
    private readonly float[] _normsHost;
    private ParameterList? _list;

    public AdamW(IBackend backend, IEnumerable<Parameter> parameters, float beta1 = 0.9f, float beta2 = 0.999f,
                 float eps = 1e-8f, float weightDecay = 0f)
    {
        _backend = backend;
        _params = parameters.ToArray();
        _listed = new bool[_params.Length];
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
        var list = Trainable();
        _backend.GradientSumsOfSquares(_norms, list);
        _backend.Download<float>(_norms, _normsHost.AsSpan(0, Math.Max(1, list.Count)));
        double s = 0;
        for (int i = 0; i < list.Count; i++) s += _normsHost[i];
        return Math.Sqrt(s);
    }

    /// <summary>One update of every trainable parameter; gradients are clipped to maxNorm (≤ 0: no clipping). Returns the
    /// pre-clip norm. A non-finite norm (a NaN or ∞ in some gradient) updates nothing, so the weights and moments stay
    /// those of the last good step for the caller to keep.</summary>
    public double Step(float lr, float maxNorm = 0f, float gradScale = 1f)
    {
        double norm = GradNorm() * gradScale;
        if (!double.IsFinite(norm)) return norm;
        float scale = gradScale;
        if (maxNorm > 0 && norm > maxNorm) scale = (float)(gradScale * maxNorm / norm);
        StepCount++;
        _backend.AdamW(Trainable(), lr, Beta1, Beta2, Eps, StepCount, scale);
        return norm;
    }

    /// <summary>
    /// The fused update's bias corrections 1/(1 − β₁^step) and 1/(1 − β₂^step), computed in double and shared by every
    /// backend: β^step underflows gracefully and 1 − β^step keeps its digits for β near 1.
    /// </summary>
    public static (float Inv1, float Inv2) BiasCorrections(float beta1, float beta2, int step) =>
        ((float)(1 / (1 - Math.Pow(beta1, step))), (float)(1 / (1 - Math.Pow(beta2, step))));

    public void ZeroGrad() => _backend.ZeroGradients(Trainable());

    /// <summary>Zeroes the moments of the trainable parameters: with <see cref="StepCount"/> 0, Adam's bias correction
    /// assumes zero moments, and moments left by an earlier optimiser would be read as this one's first steps.</summary>
    public void ResetMoments()
    {
        foreach (var p in _params.Where(p => p.Trainable))
        {
            var (m, v) = p.Moments();
            _backend.Fill(m, 0f);
            _backend.Fill(v, 0f);
        }
    }

    /// <summary>The trainable parameters, in order, with their moments (allocated here, zeroed, on first need); rebuilt
    /// only when the trainable set changed since the last call.</summary>
    private ParameterList Trainable()
    {
        bool same = _list is not null;
        for (int i = 0; i < _params.Length && same; i++) same = _listed[i] == _params[i].Trainable;
        if (same) return _list!;
        _list?.Dispose();
        var trainable = _params.Where(p => p.Trainable).ToArray();
        var moments = trainable.Select(p => p.Moments()).ToArray();
        for (int i = 0; i < _params.Length; i++) _listed[i] = _params[i].Trainable;
        _list = new ParameterList([.. trainable.Select(p => p.Value)], [.. trainable.Select(p => p.Grad!)],
                                  [.. moments.Select(m => m.m)], [.. moments.Select(m => m.v)],
                                  [.. trainable.Select(p => p.Shape.Rank >= 2 ? WeightDecay : 0f)]);
        return _list;
    }

    public void Dispose()
    {
        _list?.Dispose();
        _normBuffer.Dispose();
    }
}
