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
    private sealed record Layer(Parameter InNorm, Parameter Q, Parameter K, Parameter V, Parameter O, Parameter PostNorm,
                                Parameter Gate, Parameter Up, Parameter Down);

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
            string p = $"model.layers.{i}.";
            _layers[i] = new Layer(
                store.Add(p + "input_layernorm.weight", d),
                store.Add(p + "self_attn.q_proj.weight", d, d), store.Add(p + "self_attn.k_proj.weight", kv, d),
                store.Add(p + "self_attn.v_proj.weight", kv, d), store.Add(p + "self_attn.o_proj.weight", d, d),
                store.Add(p + "post_attention_layernorm.weight", d),
                store.Add(p + "mlp.gate_proj.weight", f, d), store.Add(p + "mlp.up_proj.weight", f, d),
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
    /// x [B·L, d] spliced input embeddings → final-normed hidden states [B·L, d]. positions [B·L], keyLengths [B].
    /// With a cache, keys/values of row (b,t) go to cache slot cacheStart[b]+t and attention reads slots
    /// [0, cacheStart[b]+keyLengths… ) — see <see cref="KvCache"/>; without one, causal self-attention over the batch.
    /// </summary>
    public Tensor Forward(Tape tape, Tensor x, int b, int l, ReadOnlySpan<int> positions, ReadOnlySpan<int> keyLengths,
                          KvCache? cache = null, ReadOnlySpan<int> cacheStart = default)
    {
        int h = _c.NumAttentionHeads, hkv = _c.NumKeyValueHeads, hd = _c.HeadDim, d = _c.HiddenSize;
        float eps = (float)_c.RmsNormEps, theta = (float)_c.RopeTheta;
        for (int i = 0; i < _layers.Length; i++)
        {
            var ly = _layers[i];
            using var range = Profiler.Range(tape.Backend, _rangeNames[i]);
            var a = Ops.RmsNorm(tape, x, ly.InNorm.Value, eps);
            var q = Ops.Rope(tape, Ops.Reshape(tape, Ops.Linear(tape, a, ly.Q.Value), b, l, h, hd), positions, theta);
            var k = Ops.Rope(tape, Ops.Reshape(tape, Ops.Linear(tape, a, ly.K.Value), b, l, hkv, hd), positions, theta);
            var v = Ops.Reshape(tape, Ops.Linear(tape, a, ly.V.Value), b, l, hkv, hd);
            Tensor o = cache is null
                ? Ops.Attention(tape, q, k, v, keyLengths, causal: true)
                : cache.Attend(tape, i, q, k, v, cacheStart, keyLengths);
            x = Ops.Add(tape, x, Ops.Linear(tape, Ops.Reshape(tape, o, b * l, d), ly.O.Value));
            var m = Ops.RmsNorm(tape, x, ly.PostNorm.Value, eps);
            var g = Ops.SwiGlu(tape, Ops.Linear(tape, m, ly.Gate.Value), Ops.Linear(tape, m, ly.Up.Value));
            x = Ops.Add(tape, x, Ops.Linear(tape, g, ly.Down.Value));
        }
        return Ops.RmsNorm(tape, x, FinalNorm.Value, eps);
    }

    /// <summary>hidden [N, d] → next-token logits [N, V] (fp32).</summary>
    public Tensor Logits(Tape tape, Tensor hidden) => Ops.Linear(tape, hidden, LmHead.Value);
}
