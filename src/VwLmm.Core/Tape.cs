using System.Runtime.InteropServices;

namespace VwLmm.Core;

/// <summary>Backward of one recorded op: reads the node's operands and accumulates into their gradients.</summary>
internal delegate void BackwardFn(Tape tape, in TapeNode node);

/// <summary>
/// One recorded op: its backward function (a static method), the output whose gradient drives it, and the operands
/// and sizes the backward needs, named per op by the function that reads them. A struct kept in the tape's list, so
/// recording allocates nothing where a closure per op would allocate the closure and its delegate.
/// </summary>
internal struct TapeNode
{
    public BackwardFn Backward;
    public Tensor Output;
    public Tensor? X0, X1, X2, X3, X4, X5;
    public int I0, I1, I2, I3, I4, I5;
    public float F0;
    public bool Flag;
}

/// <summary>
/// Execution context of one step: the backend, the arena that holds the step's activations and activation
/// gradients, and — when recording — the list of recorded ops. Ops (see <see cref="Ops"/>) record a node only when
/// one of their inputs requires a gradient; <see cref="Backward"/> runs them in reverse, skipping ops whose output
/// received no gradient. Every backward op accumulates (+=) into zero-initialised gradient buffers, so fan-out
/// (residual streams, shared weights) needs no special case; the first op to reach a gradient, or a part of one through
/// a view, may store into it instead, sparing the zero fill (<see cref="GradOrNull(Tensor?, out bool)"/>). Parameter gradients live in the
/// parameters and persist across steps until zeroed. A tape is reused step after step through <see cref="Reset"/>,
/// which keeps its storage.
/// </summary>
public sealed class Tape
{
    private readonly List<TapeNode> _nodes = new();
    // Tensors that require a gradient, mapped to their gradient buffer (null until first requested).
    private readonly Dictionary<Tensor, Tensor?> _grads = new(ReferenceEqualityComparer.Instance);
    // Views created by Reshape and Select share the gradient of their base tensor, at the same offset.
    private readonly Dictionary<Tensor, Tensor> _aliases = new(ReferenceEqualityComparer.Instance);
    // Element ranges [Start, End) of a base's gradient that ops stored into through views while the rest of the buffer
    // is uninitialised; no base is listed once its ranges cover it or anything else reaches it (the gaps are zeroed).
    private readonly List<(Tensor Base, long Start, long End)> _stored = new();
    private float[] _hostScratch = [];
    // The last few index uploads of arena generation _indexGeneration, for Indices: their host values and tensor. A new
    // generation empties the slots and fills them from the first again, so a step that repeats the last one's uploads
    // finds every slot's host array long enough already (no managed allocation).
    private readonly (int[] Host, int Length, Tensor? Tensor)[] _indexUploads = new (int[], int, Tensor?)[4];
    private int _nextIndexUpload, _indexGeneration;

    public Tape(IBackend backend, Arena arena, bool record)
    {
        Backend = backend;
        Arena = arena;
        IsRecording = record;
    }

    public IBackend Backend { get; }
    public Arena Arena { get; }
    public bool IsRecording { get; }
    public int RecordedOps => _nodes.Count;

    /// <summary>
    /// Makes the parameter's gradient visible to ops (trainable parameters only), and that of its stack, whose
    /// gradient holds the member's.
    /// </summary>
    public void Track(Parameter p)
    {
        if (!IsRecording || !p.Trainable) return;
        _grads[p.Value] = p.Grad;
        if (p.Stack is { } stack) _grads[stack.Value] = stack.Grad;
    }

    public void Track(IReadOnlyList<Parameter> ps)
    {
        for (int i = 0; i < ps.Count; i++) Track(ps[i]);
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
        else ZeroGaps(key, g);
        return ViewOf(g, key, t);
    }

    // t's part of its base key's gradient g.
    private Tensor ViewOf(Tensor g, Tensor key, Tensor t) =>
        ReferenceEquals(key, t) ? g : Arena.View(g, Offset(key, t), t.Shape);

    private static long Offset(Tensor key, Tensor t) => (t.ByteOffset - key.ByteOffset) / t.DType.Size();

    /// <summary>The gradient if the tensor requires one, else null (the op then skips that output's work).</summary>
    public Tensor? GradOrNull(Tensor? t) => t is not null && RequiresGrad(t) ? Grad(t) : null;

    /// <summary>
    /// <see cref="GradOrNull(Tensor?)"/> for an op that writes every element of t's gradient: when nothing has flowed
    /// into those elements yet, a buffer left uninitialised and <paramref name="overwrite"/> true, so the op stores its
    /// result where it would add it to zeros. That spares the fill and the read of the zeros, and changes no bit but a
    /// zero's sign (0 + −0 is +0). A view may be stored into while its base's other elements are untouched, so that
    /// the q, k and v of one projection each store their part; the parts no op stored are zeroed when anything else
    /// reaches the base. Otherwise the accumulating buffer and false.
    /// </summary>
    internal Tensor? GradOrNull(Tensor? t, out bool overwrite)
    {
        overwrite = false;
        if (t is null || !RequiresGrad(t)) return null;
        if (t.Numel == 0) return Grad(t);
        var key = Resolve(t);
        var g = _grads[key];
        long start = Offset(key, t), end = start + t.Numel;
        if (g is null)
        {
            g = Arena.Allocate(key.Shape);
            _grads[key] = g;
        }
        else if (!StoredApart(key, start, end)) return Grad(t);
        overwrite = true;
        if (end - start < key.Numel) MarkStored(key, start, end);
        return ViewOf(g, key, t);
    }

    /// <summary>Whether a and b both require gradients and share elements of one: a backward that writes both in one call must then add to each.</summary>
    internal bool GradientsOverlap(Tensor? a, Tensor? b)
    {
        if (a is null || b is null || !RequiresGrad(a) || !RequiresGrad(b)) return false;
        Tensor ka = Resolve(a), kb = Resolve(b);
        if (!ReferenceEquals(ka, kb)) return false;
        long sa = Offset(ka, a), sb = Offset(kb, b);
        return sa < sb + b.Numel && sb < sa + a.Numel;
    }

    // Whether the base has ranges stored through views and [start, end) meets none of them.
    private bool StoredApart(Tensor key, long start, long end)
    {
        bool any = false;
        foreach (var (b, s, e) in _stored)
        {
            if (!ReferenceEquals(b, key)) continue;
            if (s < end && start < e) return false;
            any = true;
        }
        return any;
    }

    // Lists [start, end) as stored; once the base's ranges (disjoint by StoredApart) cover it, it is whole.
    private void MarkStored(Tensor key, long start, long end)
    {
        _stored.Add((key, start, end));
        long covered = 0;
        foreach (var (b, s, e) in _stored)
            if (ReferenceEquals(b, key)) covered += e - s;
        if (covered == key.Numel) Forget(key);
    }

    // Zero-fills the elements of g no view stored into, when some did: g is then an ordinary accumulating gradient.
    private void ZeroGaps(Tensor key, Tensor g)
    {
        long at = 0;
        bool any = false;
        while (true)
        {
            // The stored ranges are few (a projection's q, k, v), so the next one is found by a scan.
            long next = key.Numel, nextEnd = key.Numel;
            foreach (var (b, s, e) in _stored)
                if (ReferenceEquals(b, key) && s >= at && s < next) (next, nextEnd) = (s, e);
            if (!any && next == key.Numel) return;
            any = true;
            if (next > at) Backend.Fill(Arena.View(g, at, new Shape(checked((int)(next - at)))), 0f);
            if (next == key.Numel) break;
            at = nextEnd;
        }
        Forget(key);
    }

    private void Forget(Tensor key)
    {
        int kept = 0;
        for (int i = 0; i < _stored.Count; i++)
            if (!ReferenceEquals(_stored[i].Base, key)) _stored[kept++] = _stored[i];
        _stored.RemoveRange(kept, _stored.Count - kept);
    }

    /// <summary>Whether any gradient has flowed into t yet (ops whose outputs received none can be skipped).</summary>
    internal bool HasGrad(Tensor t) => _grads.TryGetValue(Resolve(t), out var g) && g is not null;

    internal void Record(in TapeNode node)
    {
        if (!IsRecording) throw new InvalidOperationException("tape: recording a backward op on a non-recording tape");
        _nodes.Add(node);
    }

    /// <summary>A host buffer of at least n floats, reused by every call (loss rows read back for the host sum).</summary>
    internal Span<float> HostScratch(int n)
    {
        if (_hostScratch.Length < n) _hostScratch = new float[n];
        return _hostScratch.AsSpan(0, n);
    }

    /// <summary>
    /// Host indices → an I32 tensor [max(1, n)] in the arena. Indices equal to those of one of the last four uploads
    /// of this arena generation give that tensor again: a decoder layer's q and k take the same positions, and every
    /// layer the same key lengths, so a decoded token makes 3 uploads where it made 13 — on a GPU each is a
    /// host-to-device copy the host waits for. Ops only read index tensors, so sharing one is safe.
    /// </summary>
    internal Tensor Indices(ReadOnlySpan<int> host)
    {
        if (_indexGeneration != Arena.Generation)
        {
            foreach (ref var u in _indexUploads.AsSpan()) u.Tensor = null;
            (_indexGeneration, _nextIndexUpload) = (Arena.Generation, 0);
        }
        foreach (var (values, length, tensor) in _indexUploads)
            if (tensor is not null && host.SequenceEqual(values.AsSpan(0, length)))
                return tensor;
        var t = Arena.Allocate(new Shape(Math.Max(1, host.Length)), DType.I32);
        if (host.Length > 0) Backend.Upload(t, host);
        ref var slot = ref _indexUploads[_nextIndexUpload];
        _nextIndexUpload = (_nextIndexUpload + 1) % _indexUploads.Length;
        if (slot.Host is null || slot.Host.Length < host.Length) slot.Host = new int[Math.Max(16, host.Length)];
        host.CopyTo(slot.Host);
        slot = (slot.Host, host.Length, t);
        return t;
    }

    /// <summary>Runs the recorded ops' backward in reverse order, then forgets them.</summary>
    public void Backward()
    {
        using var range = Profiler.Range(Backend, "backward");
        for (int i = _nodes.Count - 1; i >= 0; i--)
        {
            ref readonly var node = ref CollectionsMarshal.AsSpan(_nodes)[i];
            if (HasGrad(node.Output)) node.Backward(this, node);
        }
        Clear();
    }

    /// <summary>Forgets recorded ops and activation gradients (call before resetting the arena).</summary>
    public void Clear()
    {
        _nodes.Clear();
        _grads.Clear();
        _aliases.Clear();
        _stored.Clear();
    }

    /// <summary>Starts the next step on this tape: forgets recorded ops and gradients and resets the arena.</summary>
    public void Reset()
    {
        Clear();
        Arena.Reset();
    }
}
