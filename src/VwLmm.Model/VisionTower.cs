using VwLmm.Core;
using VwLmm.Model.Checkpoints;

namespace VwLmm.Model;

/// <summary>
/// The CLIP vision transformer as HF's CLIPVisionModel computes it, up to LLaVA's select layer: stride-P patch
/// embedding (no bias), class token, learned positions, pre_layrnorm, pre-LN blocks (q/k/v/out with bias, fc1/fc2
/// with quick_gelu or gelu). hidden_states[k] is the output of block k (0 = after pre_layrnorm), so select layer −2 runs
/// all but the last block and the blocks after it are never computed. CLS is dropped for the "patch" feature.
/// </summary>
public sealed class VisionTower
{
    // q, k and v, one shape, run as one stack of products on the block's input (one fork, not three).
    private sealed record Block(
        Parameter Ln1W, Parameter Ln1B, ParameterStack QkvW, ParameterStack QkvB,
        Parameter Ow, Parameter Ob, Parameter Ln2W, Parameter Ln2B, Parameter Fc1W, Parameter Fc1B, Parameter Fc2W, Parameter Fc2B);

    private readonly VwLmmConfig _config;
    private readonly Parameter _patch, _cls, _pos, _preLnW, _preLnB;
    private readonly Block[] _blocks;
    private readonly string[] _rangeNames;
    private int[] _clsMap = [], _dropClsMap = [];

    public VisionTower(ParameterStore store, VwLmmConfig config, string prefix = HfNames.EmbeddedVisionPrefix)
    {
        _config = config;
        var v = config.Vision;
        int c = v.HiddenSize;
        _cls = store.Add(prefix + "embeddings.class_embedding", c);
        _patch = store.Add(prefix + "embeddings.patch_embedding.weight", c, v.NumChannels, v.PatchSize, v.PatchSize);
        _pos = store.Add(prefix + "embeddings.position_embedding.weight", v.NumPatches + 1, c);
        _preLnW = store.Add(prefix + "pre_layrnorm.weight", c);
        _preLnB = store.Add(prefix + "pre_layrnorm.bias", c);
        _blocks = new Block[config.VisionLayersUsed];
        _rangeNames = Enumerable.Range(0, _blocks.Length).Select(i => $"vision.layer{i}").ToArray();
        for (int i = 0; i < _blocks.Length; i++)
        {
            string p = $"{prefix}{HfNames.VisionLayerInfix}{i}.";
            var ln1 = (store.Add(p + "layer_norm1.weight", c), store.Add(p + "layer_norm1.bias", c));
            string[] qkv = [p + "self_attn.q_proj.", p + "self_attn.k_proj.", p + "self_attn.v_proj."];
            var (w, b) = store.AddLinearStack([.. qkv.Select(m => m + "weight")], [.. qkv.Select(m => m + "bias")], c, c);
            _blocks[i] = new Block(ln1.Item1, ln1.Item2, w, b,
                store.Add(p + "self_attn.out_proj.weight", c, c), store.Add(p + "self_attn.out_proj.bias", c),
                store.Add(p + "layer_norm2.weight", c), store.Add(p + "layer_norm2.bias", c),
                store.Add(p + "mlp.fc1.weight", v.IntermediateSize, c), store.Add(p + "mlp.fc1.bias", v.IntermediateSize),
                store.Add(p + "mlp.fc2.weight", c, v.IntermediateSize), store.Add(p + "mlp.fc2.bias", c));
        }
    }

    /// <summary>Feature rows per image: patches, plus CLS for the cls_patch feature.</summary>
    public int TokensPerImage => _config.ImageTokens;

    /// <summary>pixels [NI,3,S,S] (CLIP-normalised) → features [NI·TokensPerImage, C].</summary>
    public Tensor Forward(Tape tape, Tensor pixels)
    {
        var v = _config.Vision;
        int ni = pixels.Shape[0], np = v.NumPatches, t = np + 1, c = v.HiddenSize, h = v.NumAttentionHeads;
        float eps = (float)v.LayerNormEps;
        var act = v.HiddenAct == VisionHiddenAct.QuickGelu ? Activation.QuickGelu : Activation.Gelu;

        var patches = Ops.Reshape(tape, Ops.PatchEmbed(tape, pixels, _patch.Value), ni * np, c);
        var x = Ops.Gather(tape, patches, Ops.Reshape(tape, _cls.Value, 1, c), ClsMap(ni, np));
        x = Ops.AddRows(tape, x, _pos.Value);
        x = Ops.LayerNorm(tape, x, _preLnW.Value, _preLnB.Value, eps);
        for (int i = 0; i < _blocks.Length; i++)
        {
            var b = _blocks[i];
            using var range = Profiler.Range(tape.Backend, _rangeNames[i]);
            var a = Ops.LayerNorm(tape, x, b.Ln1W.Value, b.Ln1B.Value, eps);
            var qkv = Ops.LinearStack(tape, a, b.QkvW.Value, b.QkvB.Value);
            var q = Ops.Reshape(tape, Ops.Select(tape, qkv, 0), ni, t, h, c / h);
            var k = Ops.Reshape(tape, Ops.Select(tape, qkv, 1), ni, t, h, c / h);
            var vv = Ops.Reshape(tape, Ops.Select(tape, qkv, 2), ni, t, h, c / h);
            var o = Ops.Reshape(tape, Ops.Attention(tape, q, k, vv, default, causal: false), ni * t, c);
            x = Ops.Linear(tape, o, b.Ow.Value, b.Ob.Value, residual: x);
            var m = Ops.LayerNorm(tape, x, b.Ln2W.Value, b.Ln2B.Value, eps);
            m = Ops.Activation(tape, Ops.Linear(tape, m, b.Fc1W.Value, b.Fc1B.Value), act);
            x = Ops.Linear(tape, m, b.Fc2W.Value, b.Fc2B.Value, residual: x);
        }
        return _config.MmVisionSelectFeature == VisionSelectFeature.Patch ? Ops.Gather(tape, x, null, DropClsMap(ni, t)) : x;
    }

    // Row t = 0 of each image takes the class embedding (srcB row 0); the rest take the image's patches in order.
    private int[] ClsMap(int ni, int np)
    {
        if (_clsMap.Length != ni * (np + 1))
        {
            _clsMap = new int[ni * (np + 1)];
            for (int i = 0; i < ni; i++)
                for (int t = 0; t <= np; t++)
                    _clsMap[i * (np + 1) + t] = t == 0 ? -2 : i * np + t - 1;
        }
        return _clsMap;
    }

    private int[] DropClsMap(int ni, int t)
    {
        if (_dropClsMap.Length != ni * (t - 1))
        {
            _dropClsMap = new int[ni * (t - 1)];
            for (int i = 0; i < ni; i++)
                for (int j = 1; j < t; j++)
                    _dropClsMap[i * (t - 1) + j - 1] = i * t + j;
        }
        return _dropClsMap;
    }
}
