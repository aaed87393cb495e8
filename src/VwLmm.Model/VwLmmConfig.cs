using System.Text.Json;
using VwLmm.Core;
using VwLmm.Model.Checkpoints;

namespace VwLmm.Model;

public enum VisionHiddenAct { QuickGelu, Gelu }
public enum ProjectorType { Mlp2xGelu, Linear }
public enum VisionSelectFeature { Patch, ClsPatch }
public enum ImageAspectRatio { Pad, Square }
public enum KlDirection { Forward, Reverse }
public enum VmHeadInit { Random, LmHead, EmbedTokens }

/// <summary>CLIP vision tower hyper-parameters (HF CLIPVisionConfig keys; property defaults are HF's defaults).</summary>
public sealed record VisionConfig
{
    public int ImageSize { get; init; } = 224;
    public int PatchSize { get; init; } = 32;
    public int HiddenSize { get; init; } = 768;
    public int IntermediateSize { get; init; } = 3072;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 12;
    public double LayerNormEps { get; init; } = 1e-5;
    public VisionHiddenAct HiddenAct { get; init; } = VisionHiddenAct.QuickGelu;
    public int NumChannels { get; init; } = 3;

    /// <summary>Patches per image, (image_size / patch_size)².</summary>
    public int NumPatches => ImageSize / PatchSize * (ImageSize / PatchSize);
    public int HeadDim => HiddenSize / NumAttentionHeads;
}

/// <summary>Llama decoder hyper-parameters (HF LlamaConfig keys).</summary>
public sealed record LlmConfig
{
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000;
    public required int VocabSize { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 2048;

    public int HeadDim => HiddenSize / NumAttentionHeads;
}

/// <summary>
/// A VW-LMM model: CLIP tower → projector → Llama decoder with LM head and VM head, plus the VW-LMM training switches.
/// Reads and writes the HF/LLaVA <c>config.json</c> (unknown keys tolerated; known keys range-checked, errors name the key).
/// </summary>
public sealed record VwLmmConfig
{
    public const string FileName = "config.json";

    public required VisionConfig Vision { get; init; }
    public required LlmConfig Llm { get; init; }
    public ProjectorType ProjectorType { get; init; } = ProjectorType.Mlp2xGelu;
    /// <summary>Index into the tower's hidden states (embeddings, layer 1, …, layer L); negative counts from the end.</summary>
    public int MmVisionSelectLayer { get; init; } = -2;
    public VisionSelectFeature MmVisionSelectFeature { get; init; } = VisionSelectFeature.Patch;
    public ImageAspectRatio ImageAspectRatio { get; init; } = ImageAspectRatio.Pad;
    /// <summary>A local CLIP directory or an HF model name; empty when the tower is only embedded.</summary>
    public string MmVisionTower { get; init; } = "";
    /// <summary>λ, the weight of the visual-modelling loss (0 = plain LLaVA).</summary>
    public double VmLossWeight { get; init; } = 1;
    public bool VmDetachTarget { get; init; }
    public KlDirection VmKlDirection { get; init; } = KlDirection.Forward;
    public VmHeadInit VmHeadInit { get; init; } = VmHeadInit.Random;
    public bool UsePif { get; init; }
    /// <summary>
    /// The conversation template the model was trained with (our key conversation_template; LLaVA leaves the choice to
    /// its inference scripts' --conv-mode), the default of chat, eval and forward; when absent, mistral for a Mistral
    /// model_type and otherwise null (not recorded).
    /// </summary>
    public string? ConversationTemplate { get; init; }

    /// <summary>Width of the projector input, the tower's hidden size.</summary>
    public int MmHiddenSize => Vision.HiddenSize;

    /// <summary>The select layer as a non-negative index into hidden states = number of encoder layers that must run.</summary>
    public int VisionLayersUsed => MmVisionSelectLayer < 0 ? Vision.NumHiddenLayers + 1 + MmVisionSelectLayer : MmVisionSelectLayer;

    /// <summary>Image rows spliced into the sequence per image: patches, plus CLS for cls_patch.</summary>
    public int ImageTokens => Vision.NumPatches + (MmVisionSelectFeature == VisionSelectFeature.ClsPatch ? 1 : 0);

    /// <summary>
    /// The most layers a decoder or vision tower may have: far past any published model (the largest LLaMA has 126),
    /// so a larger count is a damaged config.json, which would otherwise cost minutes of listing the tensors it expects
    /// before the checkpoint is refused.
    /// </summary>
    public const int MaxLayers = 1024;

    /// <summary>Throws ArgumentException naming the first out-of-range key.</summary>
    public void Validate()
    {
        string? problem = FindProblem();
        if (problem is not null) throw new ArgumentException($"config: {problem}");
    }

    /// <summary>Total parameter count (every tensor of <see cref="HfNames.Expected"/>, vision tower and VM head included).</summary>
    public long ParameterCount() => HfNames.Expected(this).Sum(t => t.Shape.Numel);

    // ---- config.json ----

    /// <summary>Reads <paramref name="path"/> (a config.json or the directory holding it).</summary>
    public static VwLmmConfig Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, FileName) : path;
        return FromJson(File.ReadAllText(InputFile.Existing(file, "config")), file, Path.GetDirectoryName(Path.GetFullPath(file))!);
    }

    /// <summary>Parses config.json text; <paramref name="source"/> names it in errors, <paramref name="baseDirectory"/> resolves a relative mm_vision_tower.</summary>
    public static VwLmmConfig FromJson(string json, string source, string baseDirectory)
    {
        using var doc = ParseObject(json, source);
        var c = new JsonFields(source, doc.RootElement, "");

        string? modelType = c.String("model_type");
        if (modelType is not null && !SupportedModelTypes.Contains(modelType))
            throw c.Fail("model_type", $"'{modelType}' is not a Llama-family LLaVA model ({string.Join(", ", SupportedModelTypes)})");
        c.RequireAbsentOrEqual("hidden_act", "silu");
        c.RequireAbsentOrEqual("tie_word_embeddings", false);
        c.RequireAbsentOrEqual("mm_use_im_start_end", false);
        c.RequireAbsentOrEqual("mm_use_im_patch_token", false);
        c.RequireAbsentOrEqual("attention_bias", false);
        c.RequireAbsentOrEqual("mlp_bias", false);
        c.RequireNull("rope_scaling");

        var llm = new LlmConfig
        {
            HiddenSize = c.RequiredInt("hidden_size"),
            IntermediateSize = c.RequiredInt("intermediate_size"),
            NumHiddenLayers = c.RequiredInt("num_hidden_layers"),
            NumAttentionHeads = c.RequiredInt("num_attention_heads"),
            NumKeyValueHeads = c.Int("num_key_value_heads") ?? c.RequiredInt("num_attention_heads"),
            VocabSize = c.RequiredInt("vocab_size"),
        };
        llm = llm with
        {
            RmsNormEps = c.Double("rms_norm_eps") ?? llm.RmsNormEps,
            RopeTheta = c.Double("rope_theta") ?? llm.RopeTheta,
            MaxPositionEmbeddings = c.Int("max_position_embeddings") ?? llm.MaxPositionEmbeddings,
        };
        if (c.Int("head_dim") is { } headDim && headDim * llm.NumAttentionHeads != llm.HiddenSize)
            throw c.Fail("head_dim", $"{headDim} is not hidden_size / num_attention_heads ({llm.HiddenSize} / {llm.NumAttentionHeads}); only that head size is supported");
        int? slidingWindow = c.Int("sliding_window");
        if (slidingWindow < llm.MaxPositionEmbeddings)
            throw c.Fail("sliding_window", $"{slidingWindow} is shorter than max_position_embeddings {llm.MaxPositionEmbeddings}; sliding-window attention is not supported");

        string tower = c.String("mm_vision_tower") ?? "";
        var vision = ResolveVision(c, doc.RootElement, source, tower, baseDirectory);
        int? mmHidden = c.Int("mm_hidden_size");
        if (mmHidden is not null && mmHidden != vision.HiddenSize)
            throw c.Fail("mm_hidden_size", $"{mmHidden} differs from the vision tower's hidden_size {vision.HiddenSize}");

        var architectures = c.Strings("architectures") ?? [];
        bool Architecture(string part) => architectures.Any(a => a.Contains(part, StringComparison.Ordinal));
        // VW-LMM's Mistral model keeps model_type "llava": its architecture names the backbone.
        bool mistral = modelType is "llava_mistral" or "vw_mistral" or "mistral" || Architecture("Mistral");

        var config = new VwLmmConfig
        {
            Vision = vision,
            Llm = llm,
            // LLaVA's builder falls back to a linear projector when the key is absent.
            ProjectorType = c.Enum("mm_projector_type", ProjectorNames) ?? ProjectorType.Linear,
            MmVisionSelectLayer = c.Int("mm_vision_select_layer", allowNegative: true) ?? -2,
            MmVisionSelectFeature = c.Enum("mm_vision_select_feature", SelectFeatureNames) ?? VisionSelectFeature.Patch,
            // LLaVA's default when the key is absent is 'square' (plain resize).
            ImageAspectRatio = c.Enum("image_aspect_ratio", AspectNames) ?? ImageAspectRatio.Square,
            MmVisionTower = tower,
            VmLossWeight = c.Double("vm_loss_weight", allowZero: true) ?? 1,
            VmDetachTarget = c.Bool("vm_detach_target") ?? false,
            VmKlDirection = c.Enum("vm_kl_direction", KlNames) ?? KlDirection.Forward,
            VmHeadInit = c.Enum("vm_head_init", VmInitNames) ?? VmHeadInit.Random,
            UsePif = c.Bool("use_pif") ?? Architecture("Pif"),
            // A Mistral backbone was trained on Mistral's [INST] template (METHOD §1.5), whatever else the config says.
            ConversationTemplate = c.String("conversation_template") ?? (mistral ? "mistral" : null),
        };
        string? problem = config.FindProblem();
        if (problem is not null) throw new InvalidDataException($"{source}: {problem}");
        return config;
    }

    /// <summary>Reads the vision hyper-parameters of a local HF CLIP directory (CLIPVisionConfig, or CLIPConfig with "vision_config").</summary>
    public static VisionConfig LoadClipVision(string directory)
    {
        string file = Path.Combine(directory, FileName);
        using var doc = ParseObject(File.ReadAllText(InputFile.Existing(file, "CLIP config")), file);
        var root = doc.RootElement;
        bool full = root.TryGetProperty("vision_config", out var vc);
        if (full && vc.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{file}: key 'vision_config': must be an object");
        var vision = ParseVision(new JsonFields(file, full ? vc : root, full ? "vision_config." : ""));
        CheckPreprocessing(Path.Combine(directory, PreprocessorFileName), vision.ImageSize);
        return vision;
    }

    /// <summary>The image processor's settings beside a local CLIP tower, which LLaVA preprocesses with.</summary>
    public const string PreprocessorFileName = "preprocessor_config.json";

    /// <summary>
    /// Refuses a tower whose preprocessor_config.json asks for other preprocessing than ours (OpenAI CLIP's mean and
    /// std, which also give LLaVA's pad colour; the short side resized to image_size and cropped to it): its images would
    /// reach the tower in other numbers than it was trained on.
    /// </summary>
    private static void CheckPreprocessing(string file, int imageSize)
    {
        if (!File.Exists(file)) return;
        using var doc = ParseObject(File.ReadAllText(file), file);
        var p = new JsonFields(file, doc.RootElement, "");
        var openAi = new VwLmm.Data.Images.ClipPreprocessorOptions();
        p.RequireAbsentOrClose("image_mean", openAi.Mean);
        p.RequireAbsentOrClose("image_std", openAi.Std);
        p.RequireAbsentOrSize("crop_size", "height", imageSize);
        p.RequireAbsentOrSize("crop_size", "width", imageSize);
        p.RequireAbsentOrSize("size", "shortest_edge", imageSize);
    }

    /// <summary>The tower's local directory (absolute, or relative to <paramref name="baseDirectory"/>), or null when mm_vision_tower is not one.</summary>
    public string? LocalVisionTowerDirectory(string baseDirectory) => LocalDirectory(MmVisionTower, baseDirectory);

    /// <summary>Writes config.json atomically; the vision hyper-parameters go under "vision_config" so the file stands alone.</summary>
    public void Save(string path)
    {
        Validate();
        AtomicFile.WriteAllText(Directory.Exists(path) ? Path.Combine(path, FileName) : path, ToJson());
    }

    /// <summary>The config.json text (indented).</summary>
    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartArray("architectures");
            w.WriteStringValue(UsePif ? "vwPifLlamaForCausalLM" : "vwLlamaForCausalLM");
            w.WriteEndArray();
            w.WriteString("model_type", "llava_llama");
            w.WriteNumber("hidden_size", Llm.HiddenSize);
            w.WriteNumber("intermediate_size", Llm.IntermediateSize);
            w.WriteNumber("num_hidden_layers", Llm.NumHiddenLayers);
            w.WriteNumber("num_attention_heads", Llm.NumAttentionHeads);
            w.WriteNumber("num_key_value_heads", Llm.NumKeyValueHeads);
            w.WriteString("hidden_act", "silu");
            w.WriteNumber("rms_norm_eps", Llm.RmsNormEps);
            w.WriteNumber("rope_theta", Llm.RopeTheta);
            w.WriteNumber("vocab_size", Llm.VocabSize);
            w.WriteNumber("max_position_embeddings", Llm.MaxPositionEmbeddings);
            w.WriteBoolean("tie_word_embeddings", false);
            w.WriteString("torch_dtype", "float32");
            w.WriteNumber("mm_hidden_size", MmHiddenSize);
            w.WriteString("mm_projector_type", ProjectorNames[ProjectorType]);
            w.WriteNumber("mm_vision_select_layer", MmVisionSelectLayer);
            w.WriteString("mm_vision_select_feature", SelectFeatureNames[MmVisionSelectFeature]);
            w.WriteString("mm_vision_tower", MmVisionTower);
            w.WriteString("image_aspect_ratio", AspectNames[ImageAspectRatio]);
            w.WriteBoolean("use_mm_proj", true);
            w.WriteBoolean("mm_use_im_start_end", false);
            w.WriteBoolean("mm_use_im_patch_token", false);
            w.WriteStartObject("vision_config");
            w.WriteString("model_type", "clip_vision_model");
            w.WriteNumber("image_size", Vision.ImageSize);
            w.WriteNumber("patch_size", Vision.PatchSize);
            w.WriteNumber("hidden_size", Vision.HiddenSize);
            w.WriteNumber("intermediate_size", Vision.IntermediateSize);
            w.WriteNumber("num_hidden_layers", Vision.NumHiddenLayers);
            w.WriteNumber("num_attention_heads", Vision.NumAttentionHeads);
            w.WriteNumber("layer_norm_eps", Vision.LayerNormEps);
            w.WriteString("hidden_act", ActNames[Vision.HiddenAct]);
            w.WriteNumber("num_channels", Vision.NumChannels);
            w.WriteEndObject();
            w.WriteNumber("vm_loss_weight", VmLossWeight);
            w.WriteBoolean("vm_detach_target", VmDetachTarget);
            w.WriteString("vm_kl_direction", KlNames[VmKlDirection]);
            w.WriteString("vm_head_init", VmInitNames[VmHeadInit]);
            w.WriteBoolean("use_pif", UsePif);
            if (ConversationTemplate is not null) w.WriteString("conversation_template", ConversationTemplate);
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    // ---- presets ----

    public static class Presets
    {
        /// <summary>Unit-test size: every code path, milliseconds per step.</summary>
        public static VwLmmConfig Tiny => new()
        {
            Vision = new VisionConfig { ImageSize = 32, PatchSize = 8, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 2 },
            Llm = new LlmConfig { HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, RmsNormEps = 1e-5, VocabSize = 64, MaxPositionEmbeddings = 64 },
        };

        /// <summary>The ShapesGrid toy world (METHOD §7): 8×8 patch grid, small word vocabulary.</summary>
        public static VwLmmConfig ShapesGrid => new()
        {
            Vision = new VisionConfig { ImageSize = 64, PatchSize = 8, HiddenSize = 128, IntermediateSize = 512, NumHiddenLayers = 4, NumAttentionHeads = 4 },
            Llm = new LlmConfig { HiddenSize = 256, IntermediateSize = 688, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 4, RmsNormEps = 1e-5, VocabSize = 512, MaxPositionEmbeddings = 128 },
        };

        /// <summary>The benchmark model (~6 M parameters).</summary>
        public static VwLmmConfig Bench5M => new()
        {
            Vision = new VisionConfig { ImageSize = 64, PatchSize = 8, HiddenSize = 128, IntermediateSize = 512, NumHiddenLayers = 4, NumAttentionHeads = 4 },
            Llm = new LlmConfig { HiddenSize = 256, IntermediateSize = 768, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 4, RmsNormEps = 1e-5, VocabSize = 2048, MaxPositionEmbeddings = 256 },
        };

        /// <summary>VW-LMM-Vicuna-7B: CLIP ViT-L/14-336 + Vicuna-7B v1.5.</summary>
        public static VwLmmConfig Llava7B => new()
        {
            Vision = ClipVitL14_336,
            Llm = new LlmConfig { HiddenSize = 4096, IntermediateSize = 11008, NumHiddenLayers = 32, NumAttentionHeads = 32, NumKeyValueHeads = 32, RmsNormEps = 1e-5, VocabSize = 32000, MaxPositionEmbeddings = 4096 },
            MmVisionTower = "openai/clip-vit-large-patch14-336",
        };

        public static IReadOnlyList<string> Names { get; } = ["tiny", "shapesgrid", "bench-5m", "llava-7b"];

        /// <summary>The preset called <paramref name="name"/> (one of <see cref="Names"/>).</summary>
        public static VwLmmConfig Get(string name) => name switch
        {
            "tiny" => Tiny,
            "shapesgrid" => ShapesGrid,
            "bench-5m" => Bench5M,
            "llava-7b" => Llava7B,
            _ => throw new ArgumentException($"unknown model preset '{name}' (known: {string.Join(", ", Names)})"),
        };
    }

    // ---- internals ----

    private static readonly VisionConfig ClipVitL14_336 = new()
    {
        ImageSize = 336, PatchSize = 14, HiddenSize = 1024, IntermediateSize = 4096, NumHiddenLayers = 24, NumAttentionHeads = 16,
    };

    /// <summary>Towers LLaVA configs name without embedding their hyper-parameters.</summary>
    private static readonly Dictionary<string, VisionConfig> KnownTowers = new(StringComparer.Ordinal)
    {
        ["openai/clip-vit-large-patch14-336"] = ClipVitL14_336,
        ["openai/clip-vit-large-patch14"] = ClipVitL14_336 with { ImageSize = 224 },
    };

    private static readonly string[] SupportedModelTypes = ["llava", "llava_llama", "llava_mistral", "vw_llama", "vw_mistral", "llama", "mistral"];
    private static readonly Dictionary<ProjectorType, string> ProjectorNames = new() { [ProjectorType.Mlp2xGelu] = "mlp2x_gelu", [ProjectorType.Linear] = "linear" };
    private static readonly Dictionary<VisionSelectFeature, string> SelectFeatureNames = new() { [VisionSelectFeature.Patch] = "patch", [VisionSelectFeature.ClsPatch] = "cls_patch" };
    private static readonly Dictionary<ImageAspectRatio, string> AspectNames = new() { [ImageAspectRatio.Pad] = "pad", [ImageAspectRatio.Square] = "square" };
    private static readonly Dictionary<KlDirection, string> KlNames = new() { [KlDirection.Forward] = "forward", [KlDirection.Reverse] = "reverse" };
    private static readonly Dictionary<VmHeadInit, string> VmInitNames = new() { [VmHeadInit.Random] = "random", [VmHeadInit.LmHead] = "lm_head", [VmHeadInit.EmbedTokens] = "embed_tokens" };
    private static readonly Dictionary<VisionHiddenAct, string> ActNames = new() { [VisionHiddenAct.QuickGelu] = "quick_gelu", [VisionHiddenAct.Gelu] = "gelu" };

    private string? FindProblem()
    {
        var v = Vision;
        var l = Llm;
        static string? Positive(string key, long value) => value > 0 ? null : $"key '{key}': must be positive, got {value}";
        static string? PositiveFinite(string key, double value) => value > 0 && double.IsFinite(value) ? null : $"key '{key}': must be a positive finite number, got {value}";
        static string? Layers(string key, int value) => value > MaxLayers ? $"key '{key}': {value} layers is more than the {MaxLayers} this engine accepts" : null;
        return Positive("vision_config.image_size", v.ImageSize)
            ?? Positive("vision_config.patch_size", v.PatchSize)
            ?? (v.ImageSize % v.PatchSize != 0 ? $"key 'vision_config.image_size': {v.ImageSize} is not a multiple of patch_size {v.PatchSize}" : null)
            ?? Positive("vision_config.hidden_size", v.HiddenSize)
            ?? Positive("vision_config.intermediate_size", v.IntermediateSize)
            ?? Positive("vision_config.num_hidden_layers", v.NumHiddenLayers)
            ?? Layers("vision_config.num_hidden_layers", v.NumHiddenLayers)
            ?? Positive("vision_config.num_attention_heads", v.NumAttentionHeads)
            ?? (v.HiddenSize % v.NumAttentionHeads != 0 ? $"key 'vision_config.num_attention_heads': {v.NumAttentionHeads} does not divide hidden_size {v.HiddenSize}" : null)
            ?? PositiveFinite("vision_config.layer_norm_eps", v.LayerNormEps)
            ?? Positive("vision_config.num_channels", v.NumChannels)
            ?? Positive("hidden_size", l.HiddenSize)
            ?? Positive("intermediate_size", l.IntermediateSize)
            ?? Positive("num_hidden_layers", l.NumHiddenLayers)
            ?? Layers("num_hidden_layers", l.NumHiddenLayers)
            ?? Positive("num_attention_heads", l.NumAttentionHeads)
            ?? Positive("num_key_value_heads", l.NumKeyValueHeads)
            ?? (l.HiddenSize % l.NumAttentionHeads != 0 ? $"key 'num_attention_heads': {l.NumAttentionHeads} does not divide hidden_size {l.HiddenSize}" : null)
            ?? (l.NumAttentionHeads % l.NumKeyValueHeads != 0 ? $"key 'num_key_value_heads': {l.NumKeyValueHeads} does not divide num_attention_heads {l.NumAttentionHeads}" : null)
            ?? (l.HeadDim % 2 != 0 ? $"key 'hidden_size': head dimension {l.HeadDim} must be even for RoPE" : null)
            ?? PositiveFinite("rms_norm_eps", l.RmsNormEps)
            ?? PositiveFinite("rope_theta", l.RopeTheta)
            ?? Positive("vocab_size", l.VocabSize)
            ?? Positive("max_position_embeddings", l.MaxPositionEmbeddings)
            ?? (MmVisionSelectLayer < -(v.NumHiddenLayers + 1) || MmVisionSelectLayer > v.NumHiddenLayers
                ? $"key 'mm_vision_select_layer': {MmVisionSelectLayer} is outside [-{v.NumHiddenLayers + 1}, {v.NumHiddenLayers}] for a {v.NumHiddenLayers}-layer tower" : null)
            ?? (!(VmLossWeight >= 0 && double.IsFinite(VmLossWeight)) ? $"key 'vm_loss_weight': must be a non-negative finite number, got {VmLossWeight}" : null)
            ?? (ConversationTemplate is { } t && !Data.Conversations.ConversationTemplate.Names.Contains(t)
                ? $"key 'conversation_template': unknown template '{t}' (known: {string.Join(", ", Data.Conversations.ConversationTemplate.Names)})" : null)
            ?? OversizedTensor();
    }

    /// <summary>
    /// The first key that makes a tensor hold more than <see cref="int.MaxValue"/> elements, the most one tensor may
    /// hold (kernels and host copies index with 32-bit integers); each tensor is named by the key that sizes it last.
    /// </summary>
    private string? OversizedTensor()
    {
        var v = Vision;
        var l = Llm;
        // In doubles: four sizes of up to 2³¹ multiply past a long.
        double grid = v.ImageSize / v.PatchSize, w = v.HiddenSize, d = l.HiddenSize;
        (string Key, string Tensor, double Numel)[] sizes =
        [
            ("vision_config.num_channels", "patch_embedding", w * v.NumChannels * v.PatchSize * v.PatchSize),
            ("vision_config.image_size", "position_embedding", (grid * grid + 1) * w),
            ("vision_config.hidden_size", "self_attn.q_proj", w * w),
            ("vision_config.intermediate_size", "mlp.fc1", v.IntermediateSize * w),
            ("hidden_size", "self_attn.q_proj", d * d),
            ("hidden_size", "mm_projector", d * w),
            ("intermediate_size", "mlp.gate_proj", l.IntermediateSize * d),
            ("vocab_size", "lm_head", l.VocabSize * d),
        ];
        foreach (var (key, tensor, numel) in sizes)
            if (numel > int.MaxValue)
                return $"key '{key}': {tensor} would hold {numel:N0} elements, more than the {int.MaxValue:N0} one tensor may hold";
        return null;
    }

    private static VisionConfig ResolveVision(JsonFields c, JsonElement root, string source, string tower, string baseDirectory)
    {
        if (root.TryGetProperty("vision_config", out var vc) && vc.ValueKind != JsonValueKind.Null)
        {
            if (vc.ValueKind != JsonValueKind.Object) throw c.Fail("vision_config", "must be an object");
            return ParseVision(new JsonFields(source, vc, "vision_config."));
        }
        if (LocalDirectory(tower, baseDirectory) is { } dir) return LoadClipVision(dir);
        if (KnownTowers.TryGetValue(tower, out var known)) return known;
        throw c.Fail(tower.Length == 0 ? "vision_config" : "mm_vision_tower", tower.Length == 0
            ? "missing, and there is no mm_vision_tower to read the tower's hyper-parameters from"
            : $"'{tower}' is neither a local CLIP directory nor a known tower, and there is no vision_config");
    }

    private static VisionConfig ParseVision(JsonFields v)
    {
        var d = new VisionConfig();
        return new VisionConfig
        {
            ImageSize = v.Int("image_size") ?? d.ImageSize,
            PatchSize = v.Int("patch_size") ?? d.PatchSize,
            HiddenSize = v.Int("hidden_size") ?? d.HiddenSize,
            IntermediateSize = v.Int("intermediate_size") ?? d.IntermediateSize,
            NumHiddenLayers = v.Int("num_hidden_layers") ?? d.NumHiddenLayers,
            NumAttentionHeads = v.Int("num_attention_heads") ?? d.NumAttentionHeads,
            LayerNormEps = v.Double("layer_norm_eps") ?? d.LayerNormEps,
            HiddenAct = v.Enum("hidden_act", ActNames) ?? d.HiddenAct,
            NumChannels = v.Int("num_channels") ?? d.NumChannels,
        };
    }

    private static string? LocalDirectory(string tower, string baseDirectory)
    {
        if (tower.Length == 0) return null;
        string candidate = Path.IsPathRooted(tower) ? tower : Path.Combine(baseDirectory, tower);
        return Directory.Exists(candidate) ? candidate : null;
    }

    private static JsonDocument ParseObject(string json, string source)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = false }); }
        catch (JsonException e) { throw new InvalidDataException($"{source}: not valid JSON: {e.Message}"); }
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            doc.Dispose();
            throw new InvalidDataException($"{source}: root is not a JSON object");
        }
        try
        {
            RejectRepeatedKeys(doc.RootElement, source, "");
        }
        catch
        {
            doc.Dispose();
            throw;
        }
        return doc;
    }

    /// <summary>
    /// Throws on the first object, at any depth, that gives a key twice (<see cref="JsonKeys.FirstRepeated"/>): HF's
    /// json.load keeps the last, and a file that says two things is not worth a guess. <paramref name="path"/> is the
    /// dotted path of <paramref name="e"/> with a trailing dot ("" at the root).
    /// </summary>
    private static void RejectRepeatedKeys(JsonElement e, string source, string path)
    {
        if (e.ValueKind == JsonValueKind.Object)
        {
            if (JsonKeys.FirstRepeated(e) is { } key) throw new InvalidDataException($"{source}: key '{path}{key}': is given twice");
            foreach (var p in e.EnumerateObject()) RejectRepeatedKeys(p.Value, source, $"{path}{p.Name}.");
        }
        else if (e.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var item in e.EnumerateArray()) RejectRepeatedKeys(item, source, $"{path[..^1]}[{i++}].");
        }
    }

    /// <summary>Typed access to one JSON object's keys; every error is one line naming the file and the key.</summary>
    private sealed class JsonFields(string source, JsonElement obj, string prefix)
    {
        public InvalidDataException Fail(string key, string what) => new($"{source}: key '{prefix}{key}': {what}");

        private JsonElement? Get(string key) =>
            obj.TryGetProperty(key, out var e) && e.ValueKind != JsonValueKind.Null ? e : null;

        public int? Int(string key, bool allowNegative = false)
        {
            if (Get(key) is not { } e) return null;
            int v = JsonInt.Read(e, out string problem) ?? throw Fail(key, problem);
            if (!allowNegative && v <= 0) throw Fail(key, $"must be positive, got {v}");
            return v;
        }

        public int RequiredInt(string key) => Int(key) ?? throw Fail(key, "is missing");

        public double? Double(string key, bool allowZero = false)
        {
            if (Get(key) is not { } e) return null;
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out double v) || !double.IsFinite(v))
                throw Fail(key, $"must be a number, got {e.GetRawText()}");
            if (v < 0 || (v == 0 && !allowZero)) throw Fail(key, $"must be {(allowZero ? "non-negative" : "positive")}, got {e.GetRawText()}");
            return v;
        }

        public bool? Bool(string key)
        {
            if (Get(key) is not { } e) return null;
            return e.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Fail(key, $"must be true or false, got {e.GetRawText()}"),
            };
        }

        public string? String(string key)
        {
            if (Get(key) is not { } e) return null;
            if (e.ValueKind != JsonValueKind.String) throw Fail(key, $"must be a string, got {e.GetRawText()}");
            // An escaped lone surrogate ("\udc00") parses, and fails only here.
            try { return e.GetString(); }
            catch (InvalidOperationException x) { throw Fail(key, $"is not valid Unicode: {x.Message}"); }
        }

        public IReadOnlyList<string>? Strings(string key)
        {
            if (Get(key) is not { } e) return null;
            if (e.ValueKind != JsonValueKind.Array || e.EnumerateArray().Any(a => a.ValueKind != JsonValueKind.String))
                throw Fail(key, $"must be a list of strings, got {e.GetRawText()}");
            try { return [.. e.EnumerateArray().Select(a => a.GetString()!)]; }
            catch (InvalidOperationException x) { throw Fail(key, $"is not valid Unicode: {x.Message}"); }
        }

        public T? Enum<T>(string key, Dictionary<T, string> names) where T : struct
        {
            if (String(key) is not { } s) return null;
            foreach (var (value, name) in names)
                if (name == s) return value;
            throw Fail(key, $"'{s}' is not supported (expected {string.Join(" | ", names.Values)})");
        }

        public void RequireAbsentOrEqual(string key, string expected)
        {
            if (String(key) is { } s && s != expected) throw Fail(key, $"'{s}' is not supported (only '{expected}')");
        }

        /// <summary>A number list that is absent or equals <paramref name="expected"/> to float precision.</summary>
        public void RequireAbsentOrClose(string key, IReadOnlyList<double> expected)
        {
            if (Get(key) is not { } e) return;
            if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() != expected.Count
                || e.EnumerateArray().Select((x, i) => x.ValueKind == JsonValueKind.Number && Math.Abs(x.GetDouble() - expected[i]) <= 1e-7).Contains(false))
                throw Fail(key, $"{e.GetRawText()} is not supported (only OpenAI CLIP's [{string.Join(", ", expected)}])");
        }

        /// <summary>An image size given as a number or as an object's <paramref name="field"/> that is absent or <paramref name="expected"/>.</summary>
        public void RequireAbsentOrSize(string key, string field, int expected)
        {
            if (Get(key) is not { } e) return;
            var value = e.ValueKind == JsonValueKind.Object ? (e.TryGetProperty(field, out var f) ? f : (JsonElement?)null) : e;
            if (value is { } v && !(v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n) && n == expected))
                throw Fail(key, $"{e.GetRawText()} is not supported (the tower's image_size is {expected})");
        }

        public void RequireAbsentOrEqual(string key, bool expected)
        {
            if (Bool(key) is { } b && b != expected) throw Fail(key, $"{(b ? "true" : "false")} is not supported");
        }

        public void RequireNull(string key)
        {
            if (Get(key) is { } e) throw Fail(key, $"{e.GetRawText()} is not supported (must be null)");
        }
    }
}
