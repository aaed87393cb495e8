using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using static VwLmm.Tests.Model.Checkpoints.CheckpointFixtures;

namespace VwLmm.Tests.Model.Checkpoints;

public class HfNamesTests
{
    /// <summary>
    /// The tiny preset written out by hand: V=64, d=32, 4 heads of 8 with 2 KV heads (k/v 16 rows), FFN 64; projector 32→32;
    /// tower 32 px, patch 8 (16 patches + CLS), width 32, MLP 64, 2 layers of which the select layer −2 needs only layer 0.
    /// "?" marks tensors that may be absent.
    /// </summary>
    private static readonly string[] TinyByHand =
    [
        "model.embed_tokens.weight [64,32]",
        "model.layers.0.self_attn.q_proj.weight [32,32]", "model.layers.0.self_attn.k_proj.weight [16,32]",
        "model.layers.0.self_attn.v_proj.weight [16,32]", "model.layers.0.self_attn.o_proj.weight [32,32]",
        "model.layers.0.mlp.gate_proj.weight [64,32]", "model.layers.0.mlp.up_proj.weight [64,32]",
        "model.layers.0.mlp.down_proj.weight [32,64]", "model.layers.0.input_layernorm.weight [32]",
        "model.layers.0.post_attention_layernorm.weight [32]",
        "model.layers.1.self_attn.q_proj.weight [32,32]", "model.layers.1.self_attn.k_proj.weight [16,32]",
        "model.layers.1.self_attn.v_proj.weight [16,32]", "model.layers.1.self_attn.o_proj.weight [32,32]",
        "model.layers.1.mlp.gate_proj.weight [64,32]", "model.layers.1.mlp.up_proj.weight [64,32]",
        "model.layers.1.mlp.down_proj.weight [32,64]", "model.layers.1.input_layernorm.weight [32]",
        "model.layers.1.post_attention_layernorm.weight [32]",
        "model.norm.weight [32]", "lm_head.weight [64,32]", "vm_head.weight [64,32]",
        "model.mm_projector.0.weight [32,32]", "model.mm_projector.0.bias [32]",
        "model.mm_projector.2.weight [32,32]", "model.mm_projector.2.bias [32]",
        "model.vision_tower.vision_tower.vision_model.embeddings.class_embedding [32]",
        "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight [32,3,8,8]",
        "model.vision_tower.vision_tower.vision_model.embeddings.position_embedding.weight [17,32]",
        "model.vision_tower.vision_tower.vision_model.pre_layrnorm.weight [32]",
        "model.vision_tower.vision_tower.vision_model.pre_layrnorm.bias [32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight [32,32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.bias [32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.k_proj.weight [32,32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.k_proj.bias [32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.v_proj.weight [32,32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.v_proj.bias [32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.out_proj.weight [32,32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.out_proj.bias [32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.layer_norm1.weight [32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.layer_norm1.bias [32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight [64,32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.bias [64]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc2.weight [32,64]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc2.bias [32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.layer_norm2.weight [32]",
        "model.vision_tower.vision_tower.vision_model.encoder.layers.0.layer_norm2.bias [32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.self_attn.q_proj.weight [32,32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.self_attn.q_proj.bias [32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.self_attn.k_proj.weight [32,32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.self_attn.k_proj.bias [32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.self_attn.v_proj.weight [32,32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.self_attn.v_proj.bias [32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.self_attn.out_proj.weight [32,32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.self_attn.out_proj.bias [32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.layer_norm1.weight [32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.layer_norm1.bias [32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight [64,32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.mlp.fc1.bias [64]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.mlp.fc2.weight [32,64]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.mlp.fc2.bias [32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.layer_norm2.weight [32]",
        "? model.vision_tower.vision_tower.vision_model.encoder.layers.1.layer_norm2.bias [32]",
        "? model.vision_tower.vision_tower.vision_model.post_layernorm.weight [32]",
        "? model.vision_tower.vision_tower.vision_model.post_layernorm.bias [32]",
    ];

    private static string Describe(ExpectedTensor t) => (t.Required ? "" : "? ") + t.Name + " " + t.Shape;

    private static SafetensorsEntry Zeros(string name, Shape shape) => new(name, shape, new float[shape.Numel]);

    private static void WriteCheckpoint(string dir, IEnumerable<ExpectedTensor> tensors, params SafetensorsEntry[] extra) =>
        SafetensorsWriter.WriteCheckpoint(dir, tensors.Select(t => Zeros(t.Name, t.Shape)).Concat(extra).ToList());

    [Test]
    public void TinyPresetExpectsExactlyTheHandWrittenList() =>
        Assert.That(HfNames.Expected(VwLmmConfig.Presets.Tiny).Select(Describe), Is.EqualTo(TinyByHand));

    [Test]
    public void LinearProjectorAndStandaloneClipUseTheirOwnNames()
    {
        var c = VwLmmConfig.Presets.Tiny with { ProjectorType = ProjectorType.Linear };
        Assert.That(HfNames.Projector(c).Select(Describe), Is.EqualTo(new[] { "model.mm_projector.weight [32,32]", "model.mm_projector.bias [32]" }));
        var clip = HfNames.VisionTower(c, HfNames.ClipVisionPrefix);
        Assert.That(clip[0].Name, Is.EqualTo("vision_model.embeddings.class_embedding"));
        Assert.That(clip.Select(t => t.Name.Replace("vision_model.", "model.vision_tower.vision_tower.vision_model.")),
            Is.EqualTo(HfNames.VisionTower(c, HfNames.EmbeddedVisionPrefix).Select(t => t.Name)));
    }

    [Test]
    public void ValidCheckpointPassesAndReportsItsUnusedTensors()
    {
        using var dir = new Scratch();
        var expected = HfNames.Expected(VwLmmConfig.Presets.Tiny);
        WriteCheckpoint(dir.Path, expected, Zeros("model.layers.0.self_attn.rotary_emb.inv_freq", new Shape(4)));
        using var r = CheckpointReader.Open(dir.Path);
        var unused = CheckpointValidator.Validate(r, expected);
        Assert.That(unused, Has.Count.EqualTo(16 + 2 + 1));
        Assert.That(unused, Does.Contain("model.layers.0.self_attn.rotary_emb.inv_freq"));
        Assert.That(unused, Does.Contain("model.vision_tower.vision_tower.vision_model.post_layernorm.bias"));
    }

    [Test]
    public void OptionalTowerLayersMayBeAbsent()
    {
        using var dir = new Scratch();
        var expected = HfNames.Expected(VwLmmConfig.Presets.Tiny);
        WriteCheckpoint(dir.Path, expected.Where(t => t.Required));
        using var r = CheckpointReader.Open(dir.Path);
        Assert.That(CheckpointValidator.Validate(r, expected), Is.Empty);
    }

    [Test]
    public void EveryMissingTensorIsListedInOneMessage()
    {
        using var dir = new Scratch();
        var expected = HfNames.Expected(VwLmmConfig.Presets.Tiny);
        string[] drop = ["vm_head.weight", "model.layers.1.mlp.up_proj.weight", "model.mm_projector.2.bias"];
        WriteCheckpoint(dir.Path, expected.Where(t => !drop.Contains(t.Name)));
        using var r = CheckpointReader.Open(dir.Path);
        var ex = Assert.Throws<InvalidDataException>(() => CheckpointValidator.Validate(r, expected));
        Assert.That(ex!.Message, Does.StartWith(r.Path + ": 3 missing tensors: ").And.Not.Contain("\n"));
        foreach (string name in drop) Assert.That(ex.Message, Does.Contain(name));
    }

    [Test]
    public void ShapeMismatchAndUnexpectedTensorsAreNamed()
    {
        using var dir = new Scratch();
        var expected = HfNames.Expected(VwLmmConfig.Presets.Tiny);
        WriteCheckpoint(dir.Path,
            expected.Select(t => t.Name == "model.layers.0.self_attn.k_proj.weight" ? t with { Shape = new Shape(32, 32) } : t),
            Zeros("model.extra.weight", new Shape(2)));
        using var r = CheckpointReader.Open(dir.Path);
        var ex = Assert.Throws<InvalidDataException>(() => CheckpointValidator.Validate(r, expected));
        Assert.That(ex!.Message, Does.Contain("1 mismatched tensor (vs config.json): model.layers.0.self_attn.k_proj.weight expected [16,32] got [32,32]")
            .And.Contain("1 unexpected tensor (skipped when unused tensors are allowed, --allow-unused): model.extra.weight"));
    }

    [Test]
    public void AllowUnusedContinuesPastUnexpectedTensors()
    {
        using var dir = new Scratch();
        var expected = HfNames.Expected(VwLmmConfig.Presets.Tiny).Where(t => t.Required).ToList();
        WriteCheckpoint(dir.Path, expected, Zeros("model.extra.weight", new Shape(2)));
        using var r = CheckpointReader.Open(dir.Path);
        Assert.Throws<InvalidDataException>(() => CheckpointValidator.Validate(r, expected));
        Assert.That(CheckpointValidator.Validate(r, expected, allowUnused: true), Is.EqualTo(new[] { "model.extra.weight" }));
    }

    [Test]
    public void FullClipModelValidatesWithItsTextTowerIgnored()
    {
        using var dir = new Scratch();
        var tower = HfNames.VisionTower(VwLmmConfig.Presets.Tiny, HfNames.ClipVisionPrefix);
        WriteCheckpoint(dir.Path, tower,
            Zeros("text_model.embeddings.token_embedding.weight", new Shape(8, 4)), Zeros("logit_scale", new Shape()),
            Zeros("visual_projection.weight", new Shape(4, 32)), Zeros("vision_model.embeddings.position_ids", new Shape(1, 17)));
        using var r = CheckpointReader.Open(dir.Path);
        var unused = CheckpointValidator.Validate(r, tower, ignore: HfNames.IsClipNonVision);
        Assert.That(unused, Does.Contain("text_model.embeddings.token_embedding.weight").And.Contain("vision_model.embeddings.position_ids"));
        Assert.That(HfNames.ModuleOf("vision_model.encoder.layers.0.mlp.fc1.bias"), Is.EqualTo("vision_tower"));
    }

    [Test]
    public void IntegerTensorWhereAWeightBelongsIsRejected()
    {
        using var dir = new Scratch();
        string path = dir["model.safetensors"];
        System.IO.File.Copy(File("f32.safetensors"), path);
        using var r = CheckpointReader.Open(path);
        var asInts = new List<ExpectedTensor> { new("ids32", new Shape(4)) };
        var ex = Assert.Throws<InvalidDataException>(() => CheckpointValidator.Validate(r, asInts, allowUnused: true));
        Assert.That(ex!.Message, Does.Contain("ids32 is I32, not a float dtype"));
    }

    [Test]
    public void ParameterCountsPerModuleMatchHandCounts()
    {
        using var dir = new Scratch();
        WriteCheckpoint(dir.Path, HfNames.Expected(VwLmmConfig.Presets.Tiny));
        using var r = CheckpointReader.Open(dir.Path);
        Assert.That(r.ParameterCountsByModule(), Is.EquivalentTo(new Dictionary<string, long>
        {
            ["embed_tokens"] = 64 * 32,
            ["layers"] = 2 * (32 * 32 * 2 + 16 * 32 * 2 + 64 * 32 * 3 + 32 * 2),
            ["norm"] = 32,
            ["lm_head"] = 64 * 32,
            ["vm_head"] = 64 * 32,
            ["mm_projector"] = 32 * 32 * 2 + 32 * 2,
            ["vision_tower"] = 32 + 32 * 3 * 8 * 8 + 17 * 32 + 64 + 2 * (4 * (32 * 32 + 32) + 4 * 32 + 64 * 32 + 64 + 32 * 64 + 32) + 64,
        }));
        Assert.That(VwLmmConfig.Presets.Tiny.ParameterCount(), Is.EqualTo(r.ParameterCountsByModule().Values.Sum()));
    }
}
