using VwLmm.Core;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;

namespace VwLmm.Model;

/// <summary>Decoding settings. Temperature 0 is greedy; TopK 0 and TopP 1 disable those filters.</summary>
public sealed record SamplingOptions
{
    public int MaxNewTokens { get; init; } = 128;
    public float Temperature { get; init; }
    public int TopK { get; init; }
    public float TopP { get; init; } = 1f;
    public ulong Seed { get; init; } = 1;
    /// <summary>Generation of a sample stops after any of these ids (EOS by default, set by the caller).</summary>
    public IReadOnlyCollection<int> StopIds { get; init; } = [];
}

/// <summary>
/// Batched generation with a KV cache: one prefill over the right-padded prompts (images spliced exactly as in
/// training), then one decode step per new token for every unfinished sample. The tape and its arena are reset every
/// step, so memory is the cache plus one step's activations, and a decode step allocates no managed memory. The KV
/// cache lives as long as the generator and is reused by later calls that fit in it; <see cref="Continue"/> also
/// reuses its rows. A decode step reads its token ids, positions and cache slots from device memory, uploaded in one
/// copy per token, so on a backend that records steps (<see cref="IStepCapture"/>: CUDA graphs) the second decode
/// step is recorded and every later token replays it: one launch where the decoder makes about fifty.
/// </summary>
public sealed class Generator : IDisposable
{
    private readonly VwLmmModel _model;
    private readonly Tape _tape;
    private KvCache? _cache;
    // What the cache rows of a one-prompt call hold: its prompt ids and the generated ids fed back, and its images;
    // valid only when that call finished (one that threw may have overwritten rows); any other call leaves nothing.
    private readonly List<int> _cachedIds = [];
    private float[] _cachedPixels = [];
    private bool _remembered;
    // A decode step's inputs, I32 [4·B]: token ids, positions, cache rows, attended lengths. Outside the arena, which
    // every step resets, and at one address for as long as a recorded step reads it.
    private DeviceBuffer? _stepBuffer;

    public Generator(VwLmmModel model, long arenaBytes = 256L << 20) : this(model, new Arena(model.Backend, arenaBytes)) { }

    /// <summary>Generates in the given arena, which the generator then owns.</summary>
    internal Generator(VwLmmModel model, Arena arena)
    {
        _model = model;
        _tape = new Tape(model.Backend, arena, record: false);
    }

    /// <summary>
    /// prompts (ids with −200 where the image goes; labels unused) and pixels [ImageCount,3,S,S] in prompt order (null
    /// without images) → the new tokens of each prompt, stop id included when one was produced. onToken(sample, id)
    /// sees each of them as soon as it is chosen, before the next decode step runs.
    /// </summary>
    public int[][] Generate(IReadOnlyList<TokenizedConversation> prompts, ReadOnlySpan<float> pixels, SamplingOptions options,
                            Action<int, int>? onToken = null) => Run(prompts, pixels, options, onToken, reuse: false);

    /// <summary>
    /// One prompt (as <see cref="Generate"/>) that may extend the previous one-prompt call's prompt and answer, as the
    /// next turn of a conversation does: the cache rows of their longest common prefix are kept (images in it must
    /// have the same pixels) and only the rest is prefilled. The tokens are those of a full prefill up to rounding: the
    /// kept rows were computed in other products (the answer's one row at a time). → the new tokens.
    /// </summary>
    public int[] Continue(TokenizedConversation prompt, ReadOnlySpan<float> pixels, SamplingOptions options, Action<int, int>? onToken = null) =>
        Run([prompt], pixels, options, onToken, reuse: true)[0];

    /// <summary>Cache positions the last call kept instead of prefilling them (0 unless <see cref="Continue"/> found a shared prefix).</summary>
    public int ReusedPositions { get; private set; }

    /// <summary>Whether decoding records one step and replays it where the backend can (default true); false runs every
    /// step's ops, for comparing the two.</summary>
    public bool UseGraphs { get; set; } = true;

    private int[][] Run(IReadOnlyList<TokenizedConversation> prompts, ReadOnlySpan<float> pixels, SamplingOptions options,
                        Action<int, int>? onToken, bool reuse)
    {
        var cfg = _model.Config;
        var be = _model.Backend;
        var dec = _model.Decoder;
        int v = cfg.Llm.VocabSize;
        var builder = new BatchBuilder(_model.Vision.TokensPerImage, int.MaxValue, v);
        int b = prompts.Count;
        int spliced = prompts.Max(builder.SplicedLength);
        int capacity = spliced + options.MaxNewTokens;
        if (capacity > cfg.Llm.MaxPositionEmbeddings)
            throw new ArgumentException($"prompt of {spliced} positions + {options.MaxNewTokens} new tokens exceeds the context of {cfg.Llm.MaxPositionEmbeddings}");
        // The prompt's first keep ids (start cache positions, imagesKept images) are in the cache already.
        var (keep, imagesKept) = reuse && _remembered && b == 1 ? SharedPrefix(prompts[0].InputIds, pixels) : (0, 0);
        int start = keep == 0 ? 0 : keep + imagesKept * (_model.Vision.TokensPerImage - 1);
        ReusedPositions = start;
        _remembered = false;
        var cache = Cache(b, capacity, start);
        var batch = builder.Build(keep == 0 ? prompts : [new TokenizedConversation(prompts[0].InputIds[keep..], prompts[0].Labels[keep..])]);
        var rng = new Rng(options.Seed);
        var outputs = new List<int>[b];
        var done = new bool[b];
        for (int i = 0; i < b; i++) outputs[i] = new List<int>(options.MaxNewTokens);
        var logitsHost = new float[b * v];
        var last = new int[b];

        // Prefill: every sample starts at slot 0, or a continued prompt after its kept rows; logits only at each
        // sample's last prompt position.
        var tape = _tape;
        tape.Reset();
        using (Profiler.Range(be, "generate.prefill"))
        {
            Tensor? imageRows = null;
            if (batch.ImageCount > 0)
            {
                int s = cfg.Vision.ImageSize;
                var px = Ops.Input(tape, pixels[(imagesKept * ImageFloats)..], batch.ImageCount, cfg.Vision.NumChannels, s, s);
                Tensor? vmLogits = null;
                imageRows = _model.DecoderImageRows(tape, _model.EncodeImages(tape, px), ref vmLogits);
            }
            var inputs = Ops.Gather(tape, dec.EmbedTokens.Value, imageRows, batch.Map);
            var promptPositions = start == 0 ? batch.Positions : Array.ConvertAll(batch.Positions, t => t + start);
            var slots = cache.Place(tape, batch.L, cache.Lengths, batch.KeyLengths);
            var hidden = dec.Forward(tape, inputs, b, batch.L, Ops.Indices(tape, "positions", promptPositions, 0, int.MaxValue), cache, slots);
            for (int i = 0; i < b; i++) last[i] = i * batch.L + batch.KeyLengths[i] - 1;
            be.Download<float>(dec.Logits(tape, Ops.Gather(tape, hidden, null, last)), logitsHost);
            cache.Advance(batch.KeyLengths);
        }

        var ones = new int[b];
        Array.Fill(ones, 1);
        var scratch = new SamplingScratch(v);
        var stepHost = new int[4 * b];
        var step = StepInputs(b);
        var capture = UseGraphs ? be as IStepCapture : null;
        ICapturedStep? recorded = null;
        Tensor? logits = null;
        try
        {
            for (int token = 0; token < options.MaxNewTokens; token++)
            {
                for (int i = 0; i < b; i++)
                {
                    int next = Sample(logitsHost.AsSpan(i * v, v), options, rng, scratch);
                    stepHost[i] = next;
                    if (done[i]) continue;
                    outputs[i].Add(next);
                    onToken?.Invoke(i, next);
                    if (options.StopIds.Contains(next)) done[i] = true;
                }
                if (Array.TrueForAll(done, d => d) || token == options.MaxNewTokens - 1) break;
                using var range = Profiler.Range(be, "generate.decode");
                int tk = cache.DecodeSlots(stepHost.AsSpan(b, b), stepHost.AsSpan(2 * b, b), stepHost.AsSpan(3 * b, b));
                be.Upload<int>(step.All, stepHost);
                if (recorded is not null) recorded.Replay();
                // The first decode step runs eagerly, so that every scratch buffer the step needs has grown before
                // the second is recorded; the recording attends over the whole cache, the lengths masking what is unused.
                else if (capture is not null && token > 0)
                {
                    recorded = capture.Capture(() => logits = DecodeStep(step, b, cache, cache.Capacity));
                    recorded.Replay();
                }
                else logits = DecodeStep(step, b, cache, tk);
                be.Download<float>(logits!, logitsHost);
                cache.Advance(ones);
            }
        }
        finally
        {
            recorded?.Dispose();
        }
        if (b == 1) Remember(prompts[0], pixels, outputs[0]);
        return Array.ConvertAll(outputs, o => o.ToArray());
    }

    /// <summary>A decode step's inputs on the device: All I32 [4·B] is uploaded at once; the others are its quarters.</summary>
    private sealed record DecodeInputs(Tensor All, Tensor Ids, Tensor Positions, Tensor Rows, Tensor AttendLengths);

    private DecodeInputs StepInputs(int b)
    {
        if (_stepBuffer is null || _stepBuffer.Bytes < 4L * b * sizeof(int))
        {
            _stepBuffer?.Dispose();
            _stepBuffer = _model.Backend.Allocate(4L * b * sizeof(int));
        }
        var all = Tensor.FromBuffer(_model.Backend, _stepBuffer, new Shape(4 * b), DType.I32);
        var quarter = new Shape(b);
        return new DecodeInputs(all, all.View(0, quarter), all.View(b, quarter), all.View(2L * b, quarter), all.View(3L * b, quarter));
    }

    /// <summary>One decode step from <paramref name="step"/>'s inputs → the next token's logits [B, V]; the attention
    /// spans the first tk cache slots.</summary>
    private Tensor DecodeStep(DecodeInputs step, int b, KvCache cache, int tk)
    {
        var tape = _tape;
        var dec = _model.Decoder;
        tape.Reset();
        var x = Ops.Gather(tape, dec.EmbedTokens.Value, null, step.Ids, b);
        var h = dec.Forward(tape, x, b, 1, step.Positions, cache, new KvCache.Slots(step.Rows, step.AttendLengths, tk));
        return dec.Logits(tape, h);
    }

    private int ImageFloats => _model.Config.Vision.NumChannels * _model.Config.Vision.ImageSize * _model.Config.Vision.ImageSize;

    /// <summary>
    /// (ids, images) at the start of <paramref name="ids"/> whose cache rows are valid: the common prefix with the cached
    /// ids, cut before the first image whose pixels differ, and before the last id, whose logits the caller needs.
    /// </summary>
    private (int Ids, int Images) SharedPrefix(int[] ids, ReadOnlySpan<float> pixels)
    {
        int n = 0, images = 0, limit = Math.Min(ids.Length - 1, _cachedIds.Count), size = ImageFloats;
        for (; n < limit && ids[n] == _cachedIds[n]; n++)
        {
            if (ids[n] != Llava.ImageTokenIndex) continue;
            int end = (images + 1) * size;
            if (end > pixels.Length || end > _cachedPixels.Length || !pixels[(end - size)..end].SequenceEqual(_cachedPixels.AsSpan(end - size, size))) break;
            images++;
        }
        return (n, images);
    }

    /// <summary>
    /// After a one-prompt call, what its cache rows hold: the prompt and every generated id but the last, which was never
    /// fed back, and the prompt's images (the kept ones among them equal the cached ones, SharedPrefix checked).
    /// </summary>
    private void Remember(TokenizedConversation prompt, ReadOnlySpan<float> pixels, List<int> output)
    {
        _cachedIds.Clear();
        _cachedIds.AddRange(prompt.InputIds);
        _cachedIds.AddRange(output.Take(output.Count - 1));
        if (_cachedPixels.Length != pixels.Length) _cachedPixels = new float[pixels.Length];
        pixels.CopyTo(_cachedPixels);
        _remembered = true;
    }

    /// <summary>Per-vocabulary buffers of the sampler, allocated once per generation rather than per token.</summary>
    public sealed class SamplingScratch(int v) : IComparer<int>
    {
        internal readonly double[] Weights = new double[v];
        internal readonly int[] Order = new int[v];

        /// <summary>Descending weight, ties to the lower id (greedy's rule), so that top-k 1 is greedy.</summary>
        int IComparer<int>.Compare(int a, int b) => Weights[b].CompareTo(Weights[a]) is var c && c != 0 ? c : a.CompareTo(b);
    }

    /// <summary>
    /// Greedy (ties → lowest id) or temperature sampling after top-k, then top-p filtering (as HF's warpers chain them:
    /// top-p keeps the fewest most likely tokens whose share of what top-k kept reaches p).
    /// </summary>
    public static int Sample(ReadOnlySpan<float> logits, SamplingOptions o, Rng rng, SamplingScratch scratch)
    {
        int v = logits.Length;
        if (o.Temperature <= 0) return HostMath.ArgMax(logits);
        double max = double.NegativeInfinity;
        for (int i = 0; i < v; i++) max = Math.Max(max, logits[i]);
        var w = scratch.Weights;
        var order = scratch.Order;
        double sum = 0;
        for (int i = 0; i < v; i++)
        {
            sum += w[i] = Math.Exp((logits[i] - max) / o.Temperature);
            order[i] = i;
        }
        // Without a filter the draw needs no order: a 32,000-word sort per token would cost more than a small model's step.
        if ((o.TopK is 0 || o.TopK >= v) && o.TopP >= 1)
        {
            double x = rng.NextDouble() * sum;
            int last = 0;
            for (int i = 0; i < v; i++)
            {
                if (w[i] == 0) continue;
                last = i;
                if ((x -= w[i]) < 0) return i;
            }
            return last; // rounding left a sliver past the last weight
        }
        Array.Sort(order, 0, v, scratch);
        int keep = o.TopK > 0 ? Math.Min(o.TopK, v) : v;
        double topK = 0;
        for (int r = 0; r < keep; r++) topK += w[order[r]];
        double total = 0;
        for (int r = 0; r < keep; r++)
        {
            total += w[order[r]];
            if (total >= o.TopP * topK) { keep = r + 1; break; }
        }
        double u = rng.NextDouble() * total;
        for (int r = 0; r < keep; r++)
        {
            u -= w[order[r]];
            if (u < 0) return order[r];
        }
        return order[keep - 1];
    }

    /// <summary>
    /// The generator's KV cache for b samples of at least <paramref name="capacity"/> slots, holding nothing but the
    /// first <paramref name="keepRows"/> rows of a one-sample cache: kept from the previous call when it is large enough,
    /// so repeated generations reuse memory whose pages are already mapped. A conversation's cache grows to twice its
    /// size (at most the context) at a time, so that its turns copy their kept rows a few times, not every turn.
    /// </summary>
    private KvCache Cache(int b, int capacity, int keepRows)
    {
        if (_cache is not null && _cache.B == b && _cache.Capacity >= capacity)
        {
            if (keepRows > 0) _cache.Truncate(0, keepRows);
            else _cache.Reset();
            return _cache;
        }
        var c = _model.Config.Llm;
        var grown = keepRows > 0
            ? _cache!.Grown(Math.Min(Math.Max(capacity, 2 * _cache.Capacity), c.MaxPositionEmbeddings), keepRows)
            : new KvCache(_model.Backend, _model.Decoder.LayerCount, b, capacity, c.NumKeyValueHeads, c.HeadDim);
        _cache?.Dispose();
        _cache = grown;
        return _cache;
    }

    public void Dispose()
    {
        _cache?.Dispose();
        _stepBuffer?.Dispose();
        _tape.Arena.Dispose();
    }
}
