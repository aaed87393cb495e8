using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using static VwLmm.Tests.Cli.CliRunner;

namespace VwLmm.Tests.Cli;

/// <summary>
/// Model folders that are wrong in ways the safetensors fixtures do not cover, through the real binary: each is one
/// line naming the file (and the key or tensor), exit 1.
/// </summary>
public class ModelBadInputTests
{
    private string _dir = "";

    [SetUp]
    public void Create() => _dir = TempDir();

    [TearDown]
    public void Remove() => Directory.Delete(_dir, recursive: true);

    private static VwLmmConfig Tiny => VwLmmConfig.Presets.Tiny;

    [Test]
    public void MalformedConfigJsonNamesTheFileAndKey()
    {
        string config = Path.Combine(_dir, "config.json");
        File.WriteAllText(config, "{\"hidden_size\": 32,");
        AssertOneLineError(Run("inspect", _dir), 1, "config.json");
        File.WriteAllText(config, Tiny.ToJson().Replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": \"two\""));
        AssertOneLineError(Run("inspect", _dir), 1, "config.json", "num_hidden_layers");
    }

    [Test]
    public void ATensorWhoseShapeDisagreesWithConfigJsonIsNamed()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), Tiny.ToJson());
        var entries = HfNames.Expected(Tiny)
            .Select(t => new SafetensorsEntry(t.Name, t.Name == HfNames.LmHead ? new Shape(t.Shape[0] + 1, t.Shape[1]) : t.Shape,
                                              new float[t.Name == HfNames.LmHead ? (t.Shape[0] + 1) * t.Shape[1] : t.Shape.Numel]))
            .ToList();
        SafetensorsWriter.Write(Path.Combine(_dir, "model.safetensors"), entries);
        AssertOneLineError(Run("inspect", _dir), 1, HfNames.LmHead);
    }

    [Test]
    public void AConfigAskingForMoreLayersThanTheWeightsHoldNamesBothCounts()
    {
        using (var cpu = new VwLmm.Cpu.CpuBackend(1))
        using (var model = new VwLmmModel(cpu, Tiny))
            ModelCheckpoint.Save(model, _dir);
        string config = Path.Combine(_dir, "config.json");
        // One line naming the two counts, where the tensor list would name each of 998 layers' nine tensors.
        var json = System.Text.Json.Nodes.JsonNode.Parse(Tiny.ToJson())!;
        json["num_hidden_layers"] = 1000;
        File.WriteAllText(config, json.ToJsonString());
        AssertOneLineError(Run("inspect", _dir), 1, "model.safetensors: config.json's num_hidden_layers needs 1000 layers, the checkpoint holds 2 (model.layers.N)");
        // The tower's select layer −2 of 901 layers runs 900 of them.
        json["num_hidden_layers"] = 2;
        json["vision_config"]!["num_hidden_layers"] = 901;
        File.WriteAllText(config, json.ToJsonString());
        AssertOneLineError(Run("inspect", _dir), 1,
            "config.json's vision_config.num_hidden_layers needs 900 layers, the checkpoint holds 1 (model.vision_tower.vision_tower.vision_model.encoder.layers.N)");
    }

    [Test]
    public void AShardIndexNamingAMissingShardIsNamed()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), Tiny.ToJson());
        File.Copy(Path.Combine(Fixtures, "checkpoints", "sharded_missing_shard", "model.safetensors.index.json"),
                  Path.Combine(_dir, "model.safetensors.index.json"));
        AssertOneLineError(Run("inspect", _dir), 1, "model-00001-of-00001.safetensors");
    }

    [Test]
    public void ATokenizerOfAnotherVocabularyIsNamed()
    {
        using var cpu = new VwLmm.Cpu.CpuBackend(1);
        using (var model = new VwLmmModel(cpu, Tiny))
            ModelCheckpoint.Save(model, _dir);
        // The fixture tokenizer has 500 pieces, the tiny preset's vocabulary 64.
        File.Copy(Path.Combine(Fixtures, "tokenizer", "noprefix.model"), Path.Combine(_dir, "tokenizer.model"));
        AssertOneLineError(Run("chat", "--model", _dir, "--image", RandomShapesGridModel.SaveScene(_dir), "hi"),
                           1, "tokenizer.model", "500", "vocab_size 64");
    }
}
