namespace VwLmm.Core;

/// <summary>
/// Execution context of one step: the backend, the arena that holds the step's activations and activation
/// gradients, and — when recording — the list of backward closures. Ops (see <see cref="Ops"/>) append a closure
/// only when one of their inputs requires a gradient; <see cref="Backward"/> runs them in reverse. Every backward op
/// accumulates (+=) into zero-initialised gradient buffers, so fan-out (residual streams, shared weights) needs no
/// special case. Parameter gradients live in the parameters and persist across steps until zeroed.
/// </summary>
public sealed class Tape
{
    private readonly List<Action> _backward = new();
    // Tensors that require a gradient, mapped to their gradient buffer (null until first requested).
    private readonly Dictionary<Tensor, Tensor?> _grads = new(ReferenceEqualityComparer.Instance);
    // Views created by Reshape share the gradient of their base tensor.
    private readonly Dictionary<Tensor, Tensor> _aliases = new(ReferenceEqualityComparer.Instance);

    public Tape(IBackend backend, Arena arena, bool record)
    {
        Backend = backend;
        Arena = arena;
        IsRecording = record;
    }

    public IBackend Backend { get; }
    public Arena Arena { get; }
    public bool IsRecording { get; }
    public int RecordedOps => _backward.Count;

    /// <summary>Makes the parameter's gradient visible to ops (trainable parameters only).</summary>
    public void Track(Parameter p)
    {
        if (IsRecording && p.Trainable) _grads[p.Value] = p.Grad;
    }

    public void Track(IEnumerable<Parameter> ps)
    {
        foreach (var p in ps) Track(p);
    }

    public bool RequiresGrad(Tensor t) => IsRecording && _grads.ContainsKey(Resolve(t));

    /// <summary>Marks an op output as requiring a gradient.</summary>
    internal void MarkRequiresGrad(Tensor t) => _grads.TryAdd(t, null);

    internal void Alias(Tensor view, Tensor of) => _aliases[view] = Resolve(of);

    private Tensor Resolve(Tensor t) => _aliases.TryGetValue(t, out var b) ? b : t;

    /// <summary>The gradient buffer of a tensor that requires grad, zero-filled in the arena on first request.</summary>
    public Tensor Grad(Tensor t)
    {
        var key = Resolve(t);
        if (!_grads.TryGetValue(key, out var g))
            throw new InvalidOperationException($"tape: {t.Shape} tensor does not require a gradient");
        if (g is null)
        {
            g = Arena.Zeros(key.Shape);
            _grads[key] = g;
        }
        return ReferenceEquals(key, t) ? g : g.Reshape(t.Shape.Dims.ToArray());
    }

    /// <summary>The gradient if the tensor requires one, else null (the op then skips that output's work).</summary>
    public Tensor? GradOrNull(Tensor? t) => t is not null && RequiresGrad(t) ? Grad(t) : null;

    /// <summary>Whether any gradient has flowed into t yet (ops whose outputs received none can be skipped).</summary>
    internal bool HasGrad(Tensor t) => _grads.TryGetValue(Resolve(t), out var g) && g is not null;

    internal void Record(Action backward)
    {
        if (!IsRecording) throw new InvalidOperationException("tape: recording a backward op on a non-recording tape");
        _backward.Add(backward);
    }

    /// <summary>Runs the recorded backward closures in reverse order, then forgets them.</summary>
    public void Backward()
    {
        using var range = Profiler.Range(Backend, "backward");
        for (int i = _backward.Count - 1; i >= 0; i--) _backward[i]();
        Clear();
    }

    /// <summary>Forgets recorded ops and activation gradients (call before resetting the arena).</summary>
    public void Clear()
    {
        _backward.Clear();
        _grads.Clear();
        _aliases.Clear();
    }
}
