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
    private readonly int[] _lengths;
    private int[] _attendLengths = [];

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
    /// Writes k, v [B,T,Hkv,D] of layer <paramref name="layer"/> at slots start[b]… and attends q [B,T,H,D] over the
    /// cache: query row t of sample b sees slots ≤ start[b]+t (and &lt; start[b]+keyLengths[b]) → o [B,T,H,D].
    /// </summary>
    internal Tensor Attend(Tape tape, int layer, Tensor q, Tensor k, Tensor v, ReadOnlySpan<int> start, ReadOnlySpan<int> keyLengths)
    {
        int t = q.Shape[1], row = Hkv * D;
        for (int b = 0; b < B; b++)
        {
            if (start[b] + t > Capacity)
                throw new InvalidOperationException($"kv cache: sample {b} needs {start[b] + t} positions, capacity is {Capacity}");
            long dst = ((long)b * Capacity + start[b]) * row, src = (long)b * t * row;
            var rows = new Shape(t * row);
            _backend.Copy(tape.Arena.View(_k[layer], dst, rows), tape.Arena.View(k, src, rows), rows.Numel);
            _backend.Copy(tape.Arena.View(_v[layer], dst, rows), tape.Arena.View(v, src, rows), rows.Numel);
        }
        if (_attendLengths.Length != B) _attendLengths = new int[B];
        int tk = 0;
        for (int b = 0; b < B; b++)
        {
            _attendLengths[b] = start[b] + keyLengths[b];
            tk = Math.Max(tk, start[b] + t);
        }
        return Ops.AttentionCached(tape, q, _k[layer], _v[layer], tk, start, _attendLengths);
    }

    public void Dispose()
    {
        foreach (var buf in _buffers) buf.Dispose();
    }
}
