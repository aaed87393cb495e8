using VwLmm.Core;

namespace VwLmm.Model.Checkpoints;

/// <summary>
/// A tensor a checkpoint of some config holds; optional ones (tower layers past the select layer, post_layernorm) may be
/// absent. Linear marks the weight matrix of a linear layer: what `--weights bf16` keeps in bf16.
/// </summary>
public sealed record ExpectedTensor(string Name, Shape Shape, bool Required = true, bool Linear = false);

/// <summary>Tensor names and shapes of LLaVA / VW-LMM checkpoints (HF layout), derived from a config.</summary>
public static class HfNames
{
    /// <summary>Where a LLaVA checkpoint embeds the CLIP tower.</summary>
    public const string EmbeddedVisionPrefix = "model.vision_tower.vision_tower.vision_model.";
    /// <summary>Where a standalone HF CLIP directory (CLIPVisionModel or CLIPModel) keeps it.</summary>
    public const string ClipVisionPrefix = "vision_model.";

    /// <summary>What a decoder layer's tensor names start with, before the layer index.</summary>
    public const string DecoderLayerPrefix = "model.layers.";
    /// <summary>What follows the vision prefix in a tower layer's tensor names, before the layer index.</summary>
    public const string VisionLayerInfix = "encoder.layers.";

    public const string EmbedTokens = "model.embed_tokens.weight";
    public const string FinalNorm = "model.norm.weight";
    public const string LmHead = "lm_head.weight";
    public const string VmHead = "vm_head.weight";

    /// <summary>Every tensor of a VW-LMM checkpoint: decoder, heads, projector and (when embedded) the vision tower.</summary>
    public static IReadOnlyList<ExpectedTensor> Expected(VwLmmConfig config, bool embeddedVision = true)
    {
        var list = new List<ExpectedTensor>();
        list.AddRange(LanguageModel(config.Llm));
        list.Add(new(VmHead, new Shape(config.Llm.VocabSize, config.Llm.HiddenSize), Linear: true));
        list.AddRange(Projector(config));
        if (embeddedVision) list.AddRange(VisionTower(config, EmbeddedVisionPrefix));
        return list;
    }

    /// <summary>Llama decoder: embeddings, layers, final norm and the (untied) LM head.</summary>
    public static IReadOnlyList<ExpectedTensor> LanguageModel(LlmConfig l)
    {
        int d = l.HiddenSize, kv = l.NumKeyValueHeads * l.HeadDim, f = l.IntermediateSize;
        var list = new List<ExpectedTensor> { new(EmbedTokens, new Shape(l.VocabSize, d)) };
        for (int i = 0; i < l.NumHiddenLayers; i++)
        {
            string p = $"{DecoderLayerPrefix}{i}.";
            list.Add(new(p + "self_attn.q_proj.weight", new Shape(d, d), Linear: true));
            list.Add(new(p + "self_attn.k_proj.weight", new Shape(kv, d), Linear: true));
            list.Add(new(p + "self_attn.v_proj.weight", new Shape(kv, d), Linear: true));
            list.Add(new(p + "self_attn.o_proj.weight", new Shape(d, d), Linear: true));
            list.Add(new(p + "mlp.gate_proj.weight", new Shape(f, d), Linear: true));
            list.Add(new(p + "mlp.up_proj.weight", new Shape(f, d), Linear: true));
            list.Add(new(p + "mlp.down_proj.weight", new Shape(d, f), Linear: true));
            list.Add(new(p + "input_layernorm.weight", new Shape(d)));
            list.Add(new(p + "post_attention_layernorm.weight", new Shape(d)));
        }
        list.Add(new(FinalNorm, new Shape(d)));
        list.Add(new(LmHead, new Shape(l.VocabSize, d), Linear: true));
        return list;
    }

    /// <summary>mlp2x_gelu: <c>model.mm_projector.{0,2}</c> (index 1 is the GELU); linear: <c>model.mm_projector</c>.</summary>
    public static IReadOnlyList<ExpectedTensor> Projector(VwLmmConfig c)
    {
        int m = c.MmHiddenSize, d = c.Llm.HiddenSize;
        return c.ProjectorType switch
        {
            ProjectorType.Linear =>
            [
                new("model.mm_projector.weight", new Shape(d, m), Linear: true),
                new("model.mm_projector.bias", new Shape(d)),
            ],
            ProjectorType.Mlp2xGelu =>
            [
                new("model.mm_projector.0.weight", new Shape(d, m), Linear: true),
                new("model.mm_projector.0.bias", new Shape(d)),
                new("model.mm_projector.2.weight", new Shape(d, d), Linear: true),
                new("model.mm_projector.2.bias", new Shape(d)),
            ],
            _ => throw new ArgumentOutOfRangeException(nameof(c)),
        };
    }

    /// <summary>CLIP vision transformer under <paramref name="prefix"/>; layers at or past the select layer and post_layernorm are optional (never run).</summary>
    public static IReadOnlyList<ExpectedTensor> VisionTower(VwLmmConfig c, string prefix)
    {
        var v = c.Vision;
        int w = v.HiddenSize, used = c.VisionLayersUsed;
        var list = new List<ExpectedTensor>
        {
            new(prefix + "embeddings.class_embedding", new Shape(w)),
            new(prefix + "embeddings.patch_embedding.weight", new Shape(w, v.NumChannels, v.PatchSize, v.PatchSize)),
            new(prefix + "embeddings.position_embedding.weight", new Shape(v.NumPatches + 1, w)),
            new(prefix + "pre_layrnorm.weight", new Shape(w)),
            new(prefix + "pre_layrnorm.bias", new Shape(w)),
        };
        for (int i = 0; i < v.NumHiddenLayers; i++)
        {
            string p = $"{prefix}{VisionLayerInfix}{i}.";
            bool required = i < used;
            foreach (string proj in (string[])["q_proj", "k_proj", "v_proj", "out_proj"])
            {
                list.Add(new($"{p}self_attn.{proj}.weight", new Shape(w, w), required, Linear: true));
                list.Add(new($"{p}self_attn.{proj}.bias", new Shape(w), required));
            }
            list.Add(new(p + "layer_norm1.weight", new Shape(w), required));
            list.Add(new(p + "layer_norm1.bias", new Shape(w), required));
            list.Add(new(p + "mlp.fc1.weight", new Shape(v.IntermediateSize, w), required, Linear: true));
            list.Add(new(p + "mlp.fc1.bias", new Shape(v.IntermediateSize), required));
            list.Add(new(p + "mlp.fc2.weight", new Shape(w, v.IntermediateSize), required, Linear: true));
            list.Add(new(p + "mlp.fc2.bias", new Shape(w), required));
            list.Add(new(p + "layer_norm2.weight", new Shape(w), required));
            list.Add(new(p + "layer_norm2.bias", new Shape(w), required));
        }
        list.Add(new(prefix + "post_layernorm.weight", new Shape(w), false));
        list.Add(new(prefix + "post_layernorm.bias", new Shape(w), false));
        return list;
    }

    /// <summary>Buffers older transformers versions saved alongside the weights; they carry nothing we load.</summary>
    public static bool IsSavedBuffer(string name) =>
        name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal) || name.EndsWith("embeddings.position_ids", StringComparison.Ordinal);

    /// <summary>The parts of a full HF CLIPModel that are not the vision transformer.</summary>
    public static bool IsClipNonVision(string name) =>
        name.StartsWith("text_model.", StringComparison.Ordinal) || name is "text_projection.weight" or "visual_projection.weight" or "logit_scale";

    /// <summary>The module a tensor belongs to: vision_tower, mm_projector, embed_tokens, layers, norm, lm_head, vm_head, or its first name segment.</summary>
    public static string ModuleOf(string name)
    {
        if (name.StartsWith("model.vision_tower.", StringComparison.Ordinal) || name.StartsWith(ClipVisionPrefix, StringComparison.Ordinal))
            return "vision_tower";
        string rest = name.StartsWith("model.", StringComparison.Ordinal) ? name["model.".Length..] : name;
        int dot = rest.IndexOf('.');
        return dot < 0 ? rest : rest[..dot];
    }
}
