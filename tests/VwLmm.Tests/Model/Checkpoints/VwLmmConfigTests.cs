using System.Text.Json.Nodes;
using NUnit.Framework;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using static VwLmm.Tests.Model.Checkpoints.CheckpointFixtures;

namespace VwLmm.Tests.Model.Checkpoints;

public class VwLmmConfigTests
{
    private static VwLmmConfig Parse(string json, string baseDirectory = ".") => VwLmmConfig.FromJson(json, "cfg.json", baseDirectory);

    [TestCaseSource(typeof(VwLmmConfig.Presets), nameof(VwLmmConfig.Presets.Names))]
    public void PresetRoundTripsThroughConfigJson(string name)
    {
        var preset = VwLmmConfig.Presets.Get(name);
        Assert.That(Parse(preset.ToJson()), Is.EqualTo(preset));
    }

    [Test]
    public void NonDefaultOptionsRoundTripThroughAFile()
    {
        var config = VwLmmConfig.Presets.Tiny with
        {
            Vision = VwLmmConfig.Presets.Tiny.Vision with { HiddenAct = VisionHiddenAct.Gelu, LayerNormEps = 1e-6 },
            ProjectorType = ProjectorType.Linear,
            MmVisionSelectLayer = -1,
            MmVisionSelectFeature = VisionSelectFeature.ClsPatch,
            ImageAspectRatio = ImageAspectRatio.Square,
            MmVisionTower = "some/tower",
            VmLossWeight = 0.25,
            VmDetachTarget = true,
            VmKlDirection = KlDirection.Reverse,
            VmHeadInit = VmHeadInit.EmbedTokens,
            UsePif = true,
            ConversationTemplate = "shapes_chat",
        };
        using var dir = new Scratch();
        config.Save(dir.Path);
        Assert.That(VwLmmConfig.Load(dir.Path), Is.EqualTo(config));
        Assert.That(Directory.GetFiles(dir.Path), Is.EqualTo(new[] { dir["config.json"] }));
    }

    [Test]
    public void RealLlava15ConfigLoadsWithUnknownKeysAndHfDefaults()
    {
        var c = VwLmmConfig.Load(File("config_llava_v15_7b.json"));
        var preset = VwLmmConfig.Presets.Llava7B;
        Assert.That(c.Llm, Is.EqualTo(preset.Llm));
        Assert.That(c.Llm.RopeTheta, Is.EqualTo(10000), "absent rope_theta takes the Llama default");
        Assert.That(c.Vision, Is.EqualTo(preset.Vision), "the named tower resolves to CLIP ViT-L/14-336");
        Assert.That(c.ProjectorType, Is.EqualTo(ProjectorType.Mlp2xGelu));
        Assert.That(c.ImageAspectRatio, Is.EqualTo(ImageAspectRatio.Pad));
        Assert.That(c.MmVisionSelectLayer, Is.EqualTo(-2));
        Assert.That(c.VisionLayersUsed, Is.EqualTo(23));
        Assert.That(c.ImageTokens, Is.EqualTo(576));
        Assert.That(c.UsePif, Is.False);
        Assert.That(c.VmLossWeight, Is.EqualTo(1));
        Assert.That(c.ConversationTemplate, Is.Null, "LLaVA records none: chat and eval fall back to vicuna_v1");
    }

    [TestCase("llava_mistral", null, null, "mistral")]
    [TestCase("vw_mistral", null, null, "mistral")]
    [TestCase("vw_mistral", null, "plain", "plain")]
    [TestCase("llava_llama", null, null, null)]
    [TestCase("llava", "vwMistralForCausalLM", null, "mistral")]
    [TestCase("llava", "LlavaLlamaForCausalLM", null, null)]
    public void AMistralModelTypeOrArchitectureImpliesTheMistralTemplateUnlessOneIsRecorded(string modelType, string? architecture, string? recorded, string? expected)
    {
        var json = JsonNode.Parse(VwLmmConfig.Presets.Tiny.ToJson())!.AsObject();
        json["model_type"] = modelType;
        if (architecture is not null) json["architectures"] = new JsonArray(architecture);
        if (recorded is not null) json["conversation_template"] = recorded;
        Assert.That(Parse(json.ToJsonString()).ConversationTemplate, Is.EqualTo(expected));
    }

    /// <summary>METHOD §1.2: Vicuna-7B 6,738,415,616 + CLIP-L/336 303,507,456 + mlp2x projector 20,979,712 + VM head 131,072,000.</summary>
    [Test]
    public void Llava7BParameterCountMatchesTheReleasedCheckpointArithmetic()
    {
        var c = VwLmmConfig.Presets.Llava7B;
        Assert.That(HfNames.LanguageModel(c.Llm).Sum(t => t.Shape.Numel), Is.EqualTo(6_738_415_616L));
        Assert.That(HfNames.VisionTower(c, HfNames.EmbeddedVisionPrefix).Sum(t => t.Shape.Numel), Is.EqualTo(303_507_456L));
        Assert.That(HfNames.Projector(c).Sum(t => t.Shape.Numel), Is.EqualTo(20_979_712L));
        Assert.That(c.ParameterCount(), Is.EqualTo(7_193_974_784L));
    }

    [Test]
    public void PifArchitectureImpliesUsePifWhenTheKeyIsAbsent()
    {
        var json = JsonNode.Parse(VwLmmConfig.Presets.Tiny.ToJson())!.AsObject();
        json.Remove("use_pif");
        json["architectures"] = new JsonArray("vwPifLlamaForCausalLM");
        Assert.That(Parse(json.ToJsonString()).UsePif, Is.True);
    }

    [TestCase("hidden_size", "-3", "key 'hidden_size': must be positive")]
    [TestCase("vocab_size", "64.5", "key 'vocab_size': must be an integer, got 64.5")]
    [TestCase("vocab_size", "\"64\"", "key 'vocab_size': must be an integer, got \"64\"")]
    [TestCase("intermediate_size", "4294967296", "key 'intermediate_size': must be an integer that fits 32 bits, got 4294967296")]
    [TestCase("num_key_value_heads", "3", "key 'num_key_value_heads': 3 does not divide num_attention_heads 4")]
    [TestCase("num_attention_heads", "3", "key 'num_attention_heads': 3 does not divide hidden_size 32")]
    [TestCase("rms_norm_eps", "\"abc\"", "key 'rms_norm_eps': must be a number")]
    [TestCase("rope_theta", "0", "key 'rope_theta': must be positive")]
    [TestCase("hidden_act", "\"gelu\"", "key 'hidden_act': 'gelu' is not supported")]
    [TestCase("tie_word_embeddings", "true", "key 'tie_word_embeddings': true is not supported")]
    [TestCase("rope_scaling", "{\"type\":\"linear\",\"factor\":2}", "key 'rope_scaling'")]
    [TestCase("model_type", "\"gpt2\"", "key 'model_type': 'gpt2'")]
    [TestCase("mm_projector_type", "\"mlp3x_gelu\"", "key 'mm_projector_type': 'mlp3x_gelu' is not supported (expected mlp2x_gelu | linear)")]
    [TestCase("mm_vision_select_feature", "\"cls\"", "key 'mm_vision_select_feature'")]
    [TestCase("mm_vision_select_layer", "-4", "key 'mm_vision_select_layer': -4 is outside [-3, 2]")]
    [TestCase("mm_hidden_size", "99", "key 'mm_hidden_size': 99 differs from the vision tower's hidden_size 32")]
    [TestCase("mm_use_im_start_end", "true", "key 'mm_use_im_start_end'")]
    [TestCase("image_aspect_ratio", "\"anyres\"", "key 'image_aspect_ratio'")]
    [TestCase("vm_loss_weight", "-1", "key 'vm_loss_weight': must be non-negative")]
    [TestCase("vm_kl_direction", "\"sideways\"", "key 'vm_kl_direction'")]
    [TestCase("vm_head_init", "\"zeros\"", "key 'vm_head_init'")]
    [TestCase("use_pif", "\"yes\"", "key 'use_pif': must be true or false")]
    [TestCase("head_dim", "16", "key 'head_dim': 16 is not hidden_size / num_attention_heads (32 / 4)")]
    [TestCase("sliding_window", "16", "key 'sliding_window'")]
    [TestCase("conversation_template", "\"alpaca\"", "key 'conversation_template': unknown template 'alpaca'")]
    [TestCase("conversation_template", "3", "key 'conversation_template': must be a string")]
    [TestCase("vision_config", "[]", "key 'vision_config': must be an object")]
    [TestCase("architectures", "\"vwLlamaForCausalLM\"", "key 'architectures': must be a list of strings, got \"vwLlamaForCausalLM\"")]
    [TestCase("architectures", "[1,2]", "key 'architectures': must be a list of strings, got [1,2]")]
    public void BadValueIsRejectedNamingTheKey(string key, string value, string message)
    {
        var json = JsonNode.Parse(VwLmmConfig.Presets.Tiny.ToJson())!.AsObject();
        json[key] = JsonNode.Parse(value);
        var ex = Assert.Throws<InvalidDataException>(() => Parse(json.ToJsonString()));
        Assert.That(ex!.Message, Does.StartWith("cfg.json: ").And.Contain(message));
    }

    /// <summary>As in a train config or a safetensors header, a key given twice is refused, at any depth.</summary>
    [TestCase("\"vocab_size\": 64,", "key 'vocab_size': is given twice")]
    [TestCase("\"patch_size\": 8,", "key 'vision_config.patch_size': is given twice")]
    public void ARepeatedKeyIsRejectedNamingIt(string repeated, string message)
    {
        string json = VwLmmConfig.Presets.Tiny.ToJson();
        Assert.That(json, Does.Contain(repeated));
        var ex = Assert.Throws<InvalidDataException>(() => Parse(json.Replace(repeated, repeated + repeated)));
        Assert.That(ex!.Message, Is.EqualTo("cfg.json: " + message));
    }

    [Test]
    public void AnEscapedLoneSurrogateIsRejectedNamingTheKey()
    {
        // JSON that parses: the escape fails only when the string is read.
        var json = JsonNode.Parse(VwLmmConfig.Presets.Tiny.ToJson())!.AsObject();
        json["mm_vision_tower"] = "SURROGATE";
        var ex = Assert.Throws<InvalidDataException>(() => Parse(json.ToJsonString().Replace("SURROGATE", "\\udc00")));
        Assert.That(ex!.Message, Does.StartWith("cfg.json: key 'mm_vision_tower': is not valid Unicode"));
    }

    [TestCase("hidden_act", "\"relu\"", "key 'vision_config.hidden_act': 'relu' is not supported")]
    [TestCase("num_attention_heads", "3", "key 'vision_config.num_attention_heads': 3 does not divide hidden_size 32")]
    [TestCase("patch_size", "7", "key 'vision_config.image_size': 32 is not a multiple of patch_size 7")]
    [TestCase("layer_norm_eps", "0", "key 'vision_config.layer_norm_eps': must be positive")]
    public void BadVisionValueIsRejectedNamingTheNestedKey(string key, string value, string message)
    {
        var json = JsonNode.Parse(VwLmmConfig.Presets.Tiny.ToJson())!.AsObject();
        json["vision_config"]![key] = JsonNode.Parse(value);
        var ex = Assert.Throws<InvalidDataException>(() => Parse(json.ToJsonString()));
        Assert.That(ex!.Message, Does.Contain(message));
    }

    [Test]
    public void MissingRequiredKeyAndBadJsonAreNamed()
    {
        var json = JsonNode.Parse(VwLmmConfig.Presets.Tiny.ToJson())!.AsObject();
        json.Remove("intermediate_size");
        Assert.That(Assert.Throws<InvalidDataException>(() => Parse(json.ToJsonString()))!.Message,
            Does.Contain("key 'intermediate_size': is missing"));
        Assert.That(Assert.Throws<InvalidDataException>(() => Parse("{\"hidden_size\": 4,"))!.Message, Does.StartWith("cfg.json: not valid JSON"));
        Assert.That(Assert.Throws<InvalidDataException>(() => Parse("[1]"))!.Message, Does.Contain("root is not a JSON object"));
        Assert.Throws<FileNotFoundException>(() => VwLmmConfig.Load(File("no_such_config.json")));
    }

    [TestCase("num_hidden_layers", "1025", "", "key 'num_hidden_layers': 1025 layers is more than the 1024")]
    [TestCase("num_hidden_layers", "1024", "", null)]
    [TestCase("num_hidden_layers", "2", "num_hidden_layers", "key 'vision_config.num_hidden_layers': 2147483647 layers")]
    // 32 × 67,108,864 = 2³¹ elements: one past the limit; one fewer vocabulary entry fits.
    [TestCase("vocab_size", "67108864", "", "key 'vocab_size': lm_head would hold 2,147,483,648 elements, more than the 2,147,483,647")]
    [TestCase("vocab_size", "67108863", "", null)]
    [TestCase("intermediate_size", "67108864", "", "key 'intermediate_size': mlp.gate_proj would hold 2,147,483,648")]
    [TestCase("intermediate_size", "2", "intermediate_size", "key 'vision_config.intermediate_size': mlp.fc1 would hold")]
    [TestCase("intermediate_size", "2", "num_channels", "key 'vision_config.num_channels': patch_embedding would hold")]
    public void SizesPastWhatTheEngineHoldsAreNamed(string key, string value, string visionKey, string? message)
    {
        // The tiny preset: hidden_size 32; a vision key given sets that key of vision_config to 2³¹ − 1.
        var json = JsonNode.Parse(VwLmmConfig.Presets.Tiny.ToJson())!.AsObject();
        json[key] = JsonNode.Parse(value);
        if (visionKey != "") json["vision_config"]![visionKey] = int.MaxValue;
        if (message is null)
        {
            Assert.That(() => Parse(json.ToJsonString()), Throws.Nothing);
            return;
        }
        Assert.That(Assert.Throws<InvalidDataException>(() => Parse(json.ToJsonString()))!.Message, Does.StartWith("cfg.json: " + message));
    }

    [Test]
    public void VisionComesFromALocalClipDirectoryInEitherHfForm()
    {
        using var dir = new Scratch();
        Directory.CreateDirectory(dir["clip_vision"]);
        // A CLIPVisionConfig diff dict as transformers writes it: keys equal to the defaults are omitted.
        System.IO.File.WriteAllText(Path.Combine(dir["clip_vision"], "config.json"), """
            {"architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model", "hidden_size": 48, "image_size": 32,
             "intermediate_size": 96, "num_attention_heads": 4, "num_hidden_layers": 3, "patch_size": 8, "projection_dim": 16}
            """);
        Directory.CreateDirectory(dir["clip_full"]);
        System.IO.File.WriteAllText(Path.Combine(dir["clip_full"], "config.json"), """
            {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 16, "logit_scale_init_value": 2.6592,
             "text_config": {"hidden_size": 24, "num_hidden_layers": 1},
             "vision_config": {"hidden_size": 64, "image_size": 48, "patch_size": 16, "num_hidden_layers": 2,
                               "num_attention_heads": 2, "intermediate_size": 128, "hidden_act": "gelu", "layer_norm_eps": 1e-6}}
            """);

        var json = JsonNode.Parse(VwLmmConfig.Presets.Tiny.ToJson())!.AsObject();
        json.Remove("vision_config");
        json.Remove("mm_hidden_size");
        json["mm_vision_tower"] = "clip_vision";
        var relative = Parse(json.ToJsonString(), dir.Path);
        Assert.That(relative.Vision, Is.EqualTo(new VisionConfig
        {
            ImageSize = 32, PatchSize = 8, HiddenSize = 48, IntermediateSize = 96, NumHiddenLayers = 3, NumAttentionHeads = 4,
            LayerNormEps = 1e-5, HiddenAct = VisionHiddenAct.QuickGelu, NumChannels = 3,
        }));
        Assert.That(relative.LocalVisionTowerDirectory(dir.Path), Is.EqualTo(dir["clip_vision"]));

        json["mm_vision_tower"] = dir["clip_full"];
        var full = Parse(json.ToJsonString(), "/nonexistent");
        Assert.That(full.Vision, Is.EqualTo(new VisionConfig
        {
            ImageSize = 48, PatchSize = 16, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 2,
            LayerNormEps = 1e-6, HiddenAct = VisionHiddenAct.Gelu, NumChannels = 3,
        }));

        // Its image processor, when there is one, must preprocess as we do.
        string processor = Path.Combine(dir["clip_vision"], VwLmmConfig.PreprocessorFileName);
        json["mm_vision_tower"] = "clip_vision";
        System.IO.File.WriteAllText(processor, """
            {"crop_size": {"height": 32, "width": 32}, "size": {"shortest_edge": 32}, "do_center_crop": true,
             "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
            """);
        Assert.That(Parse(json.ToJsonString(), dir.Path).Vision.ImageSize, Is.EqualTo(32));
        System.IO.File.WriteAllText(processor, """{"crop_size": 32, "size": 32, "image_mean": [0.5, 0.5, 0.5]}""");
        Assert.That(Assert.Throws<InvalidDataException>(() => Parse(json.ToJsonString(), dir.Path))!.Message,
            Is.EqualTo($"{processor}: key 'image_mean': [0.5, 0.5, 0.5] is not supported (only OpenAI CLIP's [0.48145466, 0.4578275, 0.40821073])"));
        System.IO.File.WriteAllText(processor, """{"crop_size": {"height": 28, "width": 28}}""");
        Assert.That(Assert.Throws<InvalidDataException>(() => Parse(json.ToJsonString(), dir.Path))!.Message,
            Does.StartWith($"{processor}: key 'crop_size': ").And.EndWith("is not supported (the tower's image_size is 32)"));

        json["mm_vision_tower"] = "someone/unknown-clip";
        Assert.That(Assert.Throws<InvalidDataException>(() => Parse(json.ToJsonString(), dir.Path))!.Message,
            Does.Contain("key 'mm_vision_tower': 'someone/unknown-clip' is neither a local CLIP directory nor a known tower"));
    }

    [Test]
    public void ProgrammaticConfigIsValidatedAndUnknownPresetRejected()
    {
        var bad = VwLmmConfig.Presets.Tiny with { Llm = VwLmmConfig.Presets.Tiny.Llm with { NumKeyValueHeads = 3 } };
        Assert.That(Assert.Throws<ArgumentException>(bad.Validate)!.Message, Does.Contain("num_key_value_heads"));
        Assert.That(Assert.Throws<ArgumentException>(() => VwLmmConfig.Presets.Get("huge"))!.Message, Does.Contain("huge"));
    }

    [Test]
    public void PresetsHaveTheSpecifiedShapes()
    {
        var b = VwLmmConfig.Presets.Bench5M;
        Assert.That((b.Vision.ImageSize, b.Vision.PatchSize, b.Vision.HiddenSize, b.Vision.NumHiddenLayers, b.Vision.IntermediateSize),
            Is.EqualTo((64, 8, 128, 4, 512)));
        Assert.That((b.Llm.HiddenSize, b.Llm.NumHiddenLayers, b.Llm.NumAttentionHeads, b.Llm.IntermediateSize, b.Llm.VocabSize, b.Llm.RopeTheta),
            Is.EqualTo((256, 4, 4, 768, 2048, 10000.0)));
        var s = VwLmmConfig.Presets.ShapesGrid;
        Assert.That((s.Llm.HiddenSize, s.Llm.IntermediateSize, s.Llm.MaxPositionEmbeddings, s.MmHiddenSize), Is.EqualTo((256, 688, 128, 128)));
        foreach (string name in VwLmmConfig.Presets.Names) VwLmmConfig.Presets.Get(name).Validate();
    }
}
