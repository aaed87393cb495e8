using System.Buffers;
using VwLmm.Core;
using VwLmm.Model.Checkpoints;

namespace VwLmm.Model;

/// <summary>
/// HF LLaMA decoder: token embeddings, pre-RMSNorm blocks with rotate-half RoPE attention (GQA) and a SwiGLU MLP,
/// final RMSNorm and an untied LM head. The same blocks serve training (whole sequences, tape recorded) and cached
/// generation (keys/values appended to a <see cref="KvCache"/>).
/// </summary>
public sealed class LlamaDecoder
{
    // q, k and v share a stack when they have one shape (no GQA); otherwise k and v do and q stands alone (Q set).
    // Stacks run the layers that read one input as one batched product: the same bits, and a decoded token's products
    // wake the CPU's second core once per stack instead of once per layer (docs/BENCHMARKS.md, session 16).
    private sealed record Layer(Parameter InNorm, Parameter? Q, ParameterStack Qkv, Parameter O, Parameter PostNorm,
                                ParameterStack GateUp, Parameter Down);

    private readonly LlmConfig _c;
    private readonly Layer[] _layers;
    private readonly string[] _rangeNames;

    public LlamaDecoder(ParameterStore store, LlmConfig c)
    {
        _c = c;
        int d = c.HiddenSize, kv = c.NumKeyValueHeads * c.HeadDim, f = c.IntermediateSize;
        EmbedTokens = store.Add(HfNames.EmbedTokens, c.VocabSize, d);
        _layers = new Layer[c.NumHiddenLayers];
        for (int i = 0; i < _layers.Length; i++)
        {
            string p = $"{HfNames.DecoderLayerPrefix}{i}.";
            var inNorm = store.Add(p + "input_layernorm.weight", d);
            string q = p + "self_attn.q_proj.weight", k = p + "self_attn.k_proj.weight", v = p + "self_attn.v_proj.weight";
            var qAlone = kv == d ? null : store.Add(q, d, d);
            var qkv = qAlone is null ? store.AddStack([q, k, v], d, d) : store.AddStack([k, v], kv, d);
            _layers[i] = new Layer(inNorm, qAlone, qkv, store.Add(p + "self_attn.o_proj.weight", d, d),
                store.Add(p + "post_attention_layernorm.weight", d),
                store.AddStack([p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"], f, d),
                store.Add(p + "mlp.down_proj.weight", d, f));
        }
        _rangeNames = Enumerable.Range(0, _layers.Length).Select(i => $"decoder.layer{i}").ToArray();
        FinalNorm = store.Add(HfNames.FinalNorm, d);
        LmHead = store.Add(HfNames.LmHead, c.VocabSize, d);
    }

    public Parameter EmbedTokens { get; }
    public Parameter FinalNorm { get; }
    public Parameter LmHead { get; }
    public int LayerCount => _layers.Length;

    /// <summary>
    /// Called by the uncached forward with each layer's index, its RoPE-rotated queries [B,L,H,D] and keys [B,L,Hkv,D],
    /// for inspection (<see cref="AttentionProbabilities"/>; `vwlmm forward --attention`); null in training and
    /// generation.
    /// </summary>
    public Action<int, Tensor, Tensor>? AttentionProbe { get; set; }

    /// <summary>
    /// One sample's causal attention weights, what the fused attention op never stores: q [L,H,D] and k [L,Hkv,D] as
    /// <see cref="AttentionProbe"/> sees them (B = 1) → softmax(q·kᵀ/√D) [H,L,L] in double, row t zero past key t.
    /// </summary>
    public static float[] AttentionProbabilities(ReadOnlySpan<float> q, ReadOnlySpan<float> k, int l, int h, int hkv, int hd)
    {
        if (q.Length != l * h * hd || k.Length != l * hkv * hd || hkv == 0 || h % hkv != 0)
            throw new ArgumentException($"AttentionProbabilities: q of {q.Length} and k of {k.Length} floats for L {l}, H {h}, Hkv {hkv}, D {hd}");
        var p = new float[h * l * l];
        var row = new double[l];
        double scale = 1 / Math.Sqrt(hd);
        for (int head = 0; head < h; head++)
        for (int t = 0; t < l; t++)
        {
            var qt = q.Slice((t * h + head) * hd, hd);
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j <= t; j++)
            {
                var kj = k.Slice((j * hkv + head / (h / hkv)) * hd, hd);
                double dot = 0;
                for (int e = 0; e < hd; e++) dot += (double)qt[e] * kj[e];
                row[j] = dot * scale;
                max = Math.Max(max, row[j]);
            }
            for (int j = 0; j <= t; j++) sum += row[j] = Math.Exp(row[j] - max);
            for (int j = 0; j <= t; j++) p[(head * l + t) * l + j] = (float)(row[j] / sum);
        }
        return p;
    }

    /// <summary>
    /// x [B·L, d] spliced input embeddings, positions [B·L], keyLengths [B] → final-normed hidden states [B·L, d] (zero
    /// rows past each sample's key length: the padding is left out of every product but attention), by causal
    /// self-attention over the batch; or, given <paramref name="outputRows"/> (R ascending token rows b·L + t), their
    /// hidden states alone [R, d]. The last layer needs every row's keys and values but nothing else of the rows no one
    /// reads, so its output projection, MLP and the final norm run on the R rows only: the same sums row for row.
    /// An active <paramref name="dropout"/> (training) drops elements of each attention and MLP output before it joins
    /// the residual stream (sites 2i and 2i + 1 of layer i); with output rows, the last layer's masks are drawn over
    /// the R rows, so they differ from those of the whole batch's forward (as random, and as reproducible).
    /// </summary>
    public Tensor Forward(Tape tape, Tensor x, int b, int l, ReadOnlySpan<int> positions, ReadOnlySpan<int> keyLengths,
                          DropoutPlan dropout = default, ReadOnlySpan<int> outputRows = default)
    {
        if (positions.Length != b * l) throw new ArgumentException($"LlamaDecoder.Forward: {positions.Length} positions for {b}×{l} rows");
        var (rows, outputs) = RowMaps(tape, b, l, keyLengths, outputRows);
        return Layers(tape, x, b, l, Ops.Indices(tape, "positions", positions, 0, int.MaxValue), keyLengths, null, default, dropout, rows, outputs);
    }

    /// <summary>
    /// The rows of a right-padded batch that hold tokens: Pack I32 [Count] lists them, Unpack I32 [B·L] gives each row's
    /// place among them or −1 for padding. Every row-wise product then runs on the Count token rows alone, and only
    /// attention, which needs the [B,L] layout, sees the padding (as zero rows its key lengths mask). A struct: the
    /// train step allocates nothing.
    /// </summary>
    private readonly record struct RowPacking(Tensor Pack, Tensor Unpack, int Count);

    /// <summary>
    /// The rows whose hidden states the caller reads: Padded I32 [Count] as rows of [B·L], Packed I32 [Count] as rows of
    /// the <see cref="RowPacking"/> (the same tensor when there is no padding).
    /// </summary>
    private readonly record struct OutputRows(Tensor Padded, Tensor Packed, int Count);

    /// <summary>
    /// The packing of a batch with padding (null when every row holds a token: nothing to gain) and the output rows
    /// (null when none are named), from one pass over the key lengths: an output row's packed place is its Unpack entry.
    /// </summary>
    private static (RowPacking?, OutputRows?) RowMaps(Tape tape, int b, int l, ReadOnlySpan<int> keyLengths, ReadOnlySpan<int> outputRows)
    {
        int count = 0;
        foreach (int n in keyLengths) count += n;
        bool packs = !keyLengths.IsEmpty && count != b * l;
        if (!packs && outputRows.IsEmpty) return (null, null);
        if (!packs) count = b * l;
        int reads = outputRows.Length;
        var maps = ArrayPool<int>.Shared.Rent(count + b * l + reads);
        try
        {
            Span<int> pack = maps.AsSpan(0, count), unpack = maps.AsSpan(count, b * l), places = maps.AsSpan(count + b * l, reads);
            unpack.Fill(-1);
            for (int s = 0, at = 0; s < b; s++)
                for (int t = 0; t < (keyLengths.IsEmpty ? l : keyLengths[s]); t++, at++)
                    unpack[pack[at] = s * l + t] = at;
            RowPacking? packing = packs ? new RowPacking(Ops.Indices(tape, "pack", pack, 0, b * l), Ops.Indices(tape, "unpack", unpack, -1, count), count) : null;
            if (outputRows.IsEmpty) return (packing, null);
            for (int i = 0; i < reads; i++)
            {
                int r = outputRows[i];
                if ((uint)r >= (uint)(b * l) || (i > 0 && r <= outputRows[i - 1]))
                    throw new ArgumentException($"LlamaDecoder.Forward: output row {r} at {i} is not an ascending row of the {b}×{l} batch");
                if ((places[i] = unpack[r]) < 0)
                    throw new ArgumentException($"LlamaDecoder.Forward: output row {r} is padding (sample {r / l} holds {keyLengths[r / l]} tokens)");
            }
            var padded = Ops.Indices(tape, "outputRows", outputRows, 0, b * l);
            return (packing, new OutputRows(padded, packs ? Ops.Indices(tape, "packedOutputRows", places, 0, count) : padded, reads));
        }
        finally
        {
            ArrayPool<int>.Shared.Return(maps);
        }
    }

    /// <summary>
    /// x [B·L, d] → hidden states [B·L, d] attending over <paramref name="cache"/>: keys and values of the rows go to the
    /// cache rows <paramref name="slots"/> names, positions I32 [B·L] on the device. Every index is read on the device,
    /// so a backend may record this step once and replay it (<see cref="IStepCapture"/>).
    /// </summary>
    public Tensor Forward(Tape tape, Tensor x, int b, int l, Tensor positions, KvCache cache, in KvCache.Slots slots) =>
        Layers(tape, x, b, l, positions, default, cache, slots, default);

    private Tensor Layers(Tape tape, Tensor x, int b, int l, Tensor positions, ReadOnlySpan<int> keyLengths, KvCache? cache,
                          in KvCache.Slots slots, DropoutPlan dropout, RowPacking? rows = null, OutputRows? outputs = null)
    {
        int h = _c.NumAttentionHeads, hkv = _c.NumKeyValueHeads, hd = _c.HeadDim, d = _c.HiddenSize;
        float eps = (float)_c.RmsNormEps, theta = (float)_c.RopeTheta;
        // Pack and Unpack are each other's inverse, so each gather's backward is the other gather.
        Tensor Packed(Tensor padded) => rows is not { } r ? padded : Ops.Gather(tape, padded, null, r.Pack, r.Count, inverse: r.Unpack);
        Tensor Padded(Tensor packed) => rows is not { } r ? packed : Ops.Gather(tape, packed, null, r.Unpack, b * l, inverse: r.Pack);
        x = Packed(x);
        for (int i = 0; i < _layers.Length; i++)
        {
            var ly = _layers[i];
            using var range = Profiler.Range(tape.Backend, _rangeNames[i]);
            var a = Ops.RmsNorm(tape, x, ly.InNorm.Value, eps);
            // q alone goes first, so that backward sums dx over v, k, q in the order of three separate layers.
            var qAlone = ly.Q is null ? null : Ops.Linear(tape, a, ly.Q.Value);
            var qkv = Ops.LinearStack(tape, a, ly.Qkv.Value);
            int kAt = qAlone is null ? 1 : 0;
            var q = Ops.Rope(tape, Ops.Reshape(tape, Padded(qAlone ?? Ops.Select(tape, qkv, 0)), b, l, h, hd), positions, theta);
            var k = Ops.Rope(tape, Ops.Reshape(tape, Padded(Ops.Select(tape, qkv, kAt)), b, l, hkv, hd), positions, theta);
            var v = Ops.Reshape(tape, Padded(Ops.Select(tape, qkv, kAt + 1)), b, l, hkv, hd);
            if (cache is null) AttentionProbe?.Invoke(i, q, k);
            Tensor o = cache is null
                ? Ops.Attention(tape, q, k, v, keyLengths, causal: true)
                : cache.Attend(tape, i, q, k, v, slots);
            var attended = Ops.Reshape(tape, o, b * l, d);
            if (i == _layers.Length - 1 && outputs is { } read)
            {
                attended = Ops.Gather(tape, attended, null, read.Padded, read.Count);
                x = Ops.Gather(tape, x, null, read.Packed, read.Count);
            }
            else attended = Packed(attended);
            x = Residual(tape, attended, ly.O.Value, x, dropout, 2 * i);
            var m = Ops.RmsNorm(tape, x, ly.PostNorm.Value, eps);
            var gateUp = Ops.LinearStack(tape, m, ly.GateUp.Value);
            var g = Ops.SwiGlu(tape, Ops.Select(tape, gateUp, 0), Ops.Select(tape, gateUp, 1));
            x = Residual(tape, g, ly.Down.Value, x, dropout, 2 * i + 1);
        }
        var hidden = Ops.RmsNorm(tape, x, FinalNorm.Value, eps);
        return outputs is null ? Padded(hidden) : hidden;
    }

    /// <summary>x + branch·wᵀ: the residual stream added inside the GEMM, unless dropout has to act on the branch alone.</summary>
    private static Tensor Residual(Tape tape, Tensor branch, Tensor w, Tensor x, DropoutPlan dropout, int site) =>
        dropout.IsActive
            ? Ops.Add(tape, x, Ops.Dropout(tape, Ops.Linear(tape, branch, w), dropout.Rate, dropout.SiteSeed(site)))
            : Ops.Linear(tape, branch, w, residual: x);

    /// <summary>hidden [N, d] → next-token logits [N, V] (fp32).</summary>
    public Tensor Logits(Tape tape, Tensor hidden) => Ops.Linear(tape, hidden, LmHead.Value);
}
