using VwLmm.Core;

namespace VwLmm.Model;

/// <summary>
/// Per-layer key/value cache for generation: K and V of layer i are [B, S, Hkv, D] (S = capacity), persistent for a
/// session. Sample b's rows fill slots [0, Length[b]). Prefill writes a whole right-padded prompt (slots beyond the
/// sample's length hold padding keys that are masked and later overwritten); each decode step writes one row per
/// sample at slot Length[b], so samples of different lengths decode together.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly IBackend _backend;
    private readonly DeviceBuffer[] _buffers;
    private readonly Tensor[] _k, _v;
    private readonly int[] _lengths, _attendLengths;
    private int[] _rows = [];

    public KvCache(IBackend backend, int layers, int batch, int capacity, int kvHeads, int headDim)
    {
        _backend = backend;
        B = batch;
        Capacity = capacity;
        Hkv = kvHeads;
        D = headDim;
        _buffers = new DeviceBuffer[2 * layers];
        _k = new Tensor[layers];
        _v = new Tensor[layers];
        var shape = new Shape(batch, capacity, kvHeads, headDim);
        for (int i = 0; i < layers; i++)
        {
            _buffers[2 * i] = backend.Allocate(shape.Numel * 4);
            _buffers[2 * i + 1] = backend.Allocate(shape.Numel * 4);
            _k[i] = Tensor.FromBuffer(backend, _buffers[2 * i], shape, DType.F32);
            _v[i] = Tensor.FromBuffer(backend, _buffers[2 * i + 1], shape, DType.F32);
        }
        _lengths = new int[batch];
        _attendLengths = new int[batch];
    }

    public int B { get; }
    public int Capacity { get; }
    public int Hkv { get; }
    public int D { get; }
    /// <summary>Valid rows per sample.</summary>
    public ReadOnlySpan<int> Lengths => _lengths;

    public void Reset() => Array.Clear(_lengths);

    /// <summary>
    /// A one-sample cache of <paramref name="capacity"/> slots holding this one's first <paramref name="rows"/> rows:
    /// how a conversation's cache grows without prefilling what it already holds.
    /// </summary>
    internal KvCache Grown(int capacity, int rows)
    {
        if (B != 1 || rows > _lengths[0] || capacity < rows) throw new ArgumentException($"kv cache: cannot keep {rows} of {_lengths[0]} rows of a batch of {B} in {capacity} slots");
        var grown = new KvCache(_backend, _k.Length, 1, capacity, Hkv, D);
        var shape = new Shape(rows * Hkv * D);
        for (int i = 0; i < _k.Length; i++)
        {
            _backend.Copy(grown._k[i].View(0, shape), _k[i].View(0, shape), shape.Numel);
            _backend.Copy(grown._v[i].View(0, shape), _v[i].View(0, shape), shape.Numel);
        }
        grown._lengths[0] = rows;
        return grown;
    }

    /// <summary>Sample b keeps its first <paramref name="rows"/> rows.</summary>
    public void Truncate(int b, int rows)
    {
        if ((uint)rows > (uint)_lengths[b]) throw new ArgumentOutOfRangeException(nameof(rows), rows, $"kv cache: sample {b} holds {_lengths[b]} rows");
        _lengths[b] = rows;
    }

    /// <summary>After every layer has attended, commits the step: sample b grew by added[b] rows.</summary>
    public void Advance(ReadOnlySpan<int> added)
    {
        for (int b = 0; b < B; b++)
        {
            if (_lengths[b] + added[b] > Capacity)
                throw new InvalidOperationException($"kv cache: sample {b} needs {_lengths[b] + added[b]} positions, capacity is {Capacity}");
            _lengths[b] += added[b];
        }
    }

    /// <summary>
    /// Where a step's keys and values go and what its queries see, in device memory: Rows I32 [B·T] (the cache row,
    /// b·Capacity + slot, of each new row), AttendLengths I32 [B] (slots sample b's queries see), and Tk, the slots in
    /// use (at least every attended length, and every slot written).
    /// </summary>
    public readonly record struct Slots(Tensor Rows, Tensor AttendLengths, int Tk);

    /// <summary>
    /// The slots of a T-row step (a prefill, or the rest of a continued prompt): sample b's rows go to slots start[b]…
    /// and its queries see slots &lt; start[b] + keyLengths[b]; several rows per sample need one start for the batch
    /// (they attend causally). Checked on the host, then uploaded.
    /// </summary>
    public Slots Place(Tape tape, int t, ReadOnlySpan<int> start, ReadOnlySpan<int> keyLengths)
    {
        const string op = "KvCache.Place";
        if (start.Length != B || keyLengths.Length != B)
            throw new ArgumentException($"{op}: {start.Length} starts and {keyLengths.Length} key lengths for a batch of {B}");
        if (_rows.Length < B * t) _rows = new int[B * t];
        int tk = 0;
        for (int b = 0; b < B; b++)
        {
            if (start[b] < 0 || start[b] + t > Capacity)
                throw new InvalidOperationException($"kv cache: sample {b} needs {start[b] + t} positions, capacity is {Capacity}");
            if ((uint)keyLengths[b] > (uint)t) throw new ArgumentOutOfRangeException(nameof(keyLengths), $"{op}: keyLengths[{b}] = {keyLengths[b]} is outside [0, {t}]");
            if (t > 1 && start[b] != start[0])
                throw new ArgumentException($"{op}: a multi-token step needs one start for the batch (sample {b} starts at {start[b]}, sample 0 at {start[0]})");
            for (int i = 0; i < t; i++) _rows[b * t + i] = b * Capacity + start[b] + i;
            _attendLengths[b] = start[b] + keyLengths[b];
            tk = Math.Max(tk, start[b] + t);
        }
        return new Slots(Ops.Indices(tape, "cache rows", _rows.AsSpan(0, B * t), 0, B * Capacity),
                         Ops.Indices(tape, "attended lengths", _attendLengths, 0, tk + 1), tk);
    }

    /// <summary>
    /// A one-token step's inputs on the host, to upload: each sample's position (its next slot), the cache row it
    /// writes and the slots it sees. → the slots in use after the step.
    /// </summary>
    public int DecodeSlots(Span<int> positions, Span<int> rows, Span<int> attendLengths)
    {
        int tk = 0;
        for (int b = 0; b < B; b++)
        {
            int slot = _lengths[b];
            if (slot + 1 > Capacity) throw new InvalidOperationException($"kv cache: sample {b} needs {slot + 1} positions, capacity is {Capacity}");
            positions[b] = slot;
            rows[b] = b * Capacity + slot;
            attendLengths[b] = slot + 1;
            tk = Math.Max(tk, slot + 1);
        }
        return tk;
    }

    /// <summary>
    /// Writes k, v [B,T,Hkv,D] of layer <paramref name="layer"/> to the cache rows <paramref name="slots"/> names and
    /// attends q [B,T,H,D] over the cache → o [B,T,H,D]. Reads the slots on the device only, so a recorded step replays.
    /// </summary>
    internal Tensor Attend(Tape tape, int layer, Tensor q, Tensor k, Tensor v, in Slots slots)
    {
        int rows = q.Shape[0] * q.Shape[1], row = Hkv * D;
        if (q.Shape[0] != B || slots.Rows.Numel < rows)
            throw new ArgumentException($"kv cache: a step of {q.Shape} for a batch of {B} with {slots.Rows.Numel} slot rows");
        _backend.ScatterRows(_k[layer], k, slots.Rows, rows, row);
        _backend.ScatterRows(_v[layer], v, slots.Rows, rows, row);
        return Ops.AttentionCached(tape, q, _k[layer], _v[layer], slots.Tk, slots.AttendLengths);
    }

    public void Dispose()
    {
        foreach (var buf in _buffers) buf.Dispose();
    }
}
