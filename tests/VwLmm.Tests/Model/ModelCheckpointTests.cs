using System.Text.Json.Nodes;
using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using VwLmm.Tests.Model.Checkpoints;

namespace VwLmm.Tests.Model;

using Ops = VwLmm.Core.Ops;

/// <summary>
/// Whole models through <see cref="ModelCheckpoint.Load"/> in the layouts other tools write: BF16 weights, and a LLaVA
/// checkpoint whose vision tower lives in the local CLIP directory its mm_vision_tower names.
/// </summary>
public class ModelCheckpointTests : CpuFixture
{
    private const string EmbeddedTower = "model.vision_tower.vision_tower.vision_model.";

    [Test]
    public void Bf16CheckpointGivesTheLogitsOfTheModelRoundedToBf16()
    {
        Assert.That(RoundToBf16(1 + MathF.ScaleB(1, -8)), Is.EqualTo(1f), "a tie goes to the even neighbour below");
        Assert.That(RoundToBf16(1 + 3 * MathF.ScaleB(1, -8)), Is.EqualTo(1 + MathF.ScaleB(1, -6)), "a tie goes to the even neighbour above");
        Assert.That(RoundToBf16(1 + 0.51f * MathF.ScaleB(1, -7)), Is.EqualTo(1 + MathF.ScaleB(1, -7)));
        Assert.That(RoundToBf16(-3.0e-3f), Is.EqualTo(-0.0030059814453125f));

        using var m = Distinct(11);
        // Exact ties between two bf16 values, which only round-to-nearest-even places right; random weights have few.
        var embed = m.Parameters[HfNames.EmbedTokens];
        var withTies = embed.Value.ToArray();
        for (int i = 0; i < 64; i++) withTies[i] = (i % 2 == 0 ? 1 : -1) * (1 + (2 * (i / 2) + 1) * MathF.ScaleB(1, -8));
        Cpu.Upload<float>(embed.Value, withTies);
        using var dir = new CheckpointFixtures.Scratch();
        SafetensorsWriter.WriteCheckpoint(dir.Path, m.Parameters.All.Select(p => new SafetensorsEntry(p.Name, p.Shape, p.Value.ToArray())).ToList(),
                                          dtype: SafetensorsDType.BF16);
        m.Config.Save(dir.Path);
        using var loaded = ModelCheckpoint.Load(Cpu, dir.Path);

        using var rounded = new VwLmmModel(Cpu, m.Config);
        int changed = 0;
        foreach (var p in m.Parameters.All)
        {
            var values = p.Value.ToArray();
            var bf16 = values.Select(RoundToBf16).ToArray();
            changed += values.Zip(bf16).Count(v => v.First != v.Second);
            Cpu.Upload<float>(rounded.Parameters[p.Name].Value, bf16);
            Assert.That(loaded.Parameters[p.Name].Value.ToArray(), Is.EqualTo(bf16), p.Name);
        }
        Assert.That(changed, Is.GreaterThan(m.Config.ParameterCount() / 2), "random weights are almost never exact in bf16");
        var expected = Logits(rounded);
        Assert.That(Logits(loaded), Is.EqualTo(expected));
        Assert.That(Logits(m), Is.Not.EqualTo(expected), "the fp32 model differs, so the comparison can tell the two apart");
    }

    /// <summary>
    /// Inference with the linear layers' weights stored in bf16: a BF16 checkpoint loads its bits unchanged, an F32 one
    /// rounds to nearest even, everything else stays F32, and the model computes what the F32 model holding the same
    /// (rounded) values computes — the same bits on the CPU, through the forward pass and the cached decoder alike.
    /// </summary>
    [Test]
    public void Bf16StorageKeepsTheFilesBitsAndComputesWhatTheRoundedF32ModelComputes()
    {
        using var m = Distinct(17);
        using var dir = new CheckpointFixtures.Scratch();
        string f32Dir = dir["f32"], bf16Dir = dir["bf16"];
        var entries = m.Parameters.All.Select(p => new SafetensorsEntry(p.Name, p.Shape, p.Value.ToArray())).ToList();
        SafetensorsWriter.WriteCheckpoint(f32Dir, entries);
        SafetensorsWriter.WriteCheckpoint(bf16Dir, entries, dtype: SafetensorsDType.BF16);
        m.Config.Save(f32Dir);
        m.Config.Save(bf16Dir);

        using var stored = ModelCheckpoint.Load(Cpu, bf16Dir, weights: DType.BF16);
        using var widened = ModelCheckpoint.Load(Cpu, bf16Dir);
        using var fromF32 = ModelCheckpoint.Load(Cpu, f32Dir, weights: DType.BF16);
        using var reader = CheckpointReader.Open(bf16Dir);
        int linear = 0;
        foreach (var p in m.Parameters.All)
        {
            bool isLinear = p.Shape.Rank == 2 && p.Name != HfNames.EmbedTokens && !p.Name.EndsWith("position_embedding.weight", StringComparison.Ordinal);
            linear += isLinear ? 1 : 0;
            var s = stored.Parameters[p.Name].Value;
            Assert.That(s.DType, Is.EqualTo(isLinear ? DType.BF16 : DType.F32), p.Name);
            Assert.That(fromF32.Parameters[p.Name].Value.DType, Is.EqualTo(s.DType), p.Name);
            var rounded = p.Value.ToArray().Select(RoundToBf16).ToArray();
            Assert.That(fromF32.Parameters[p.Name].Value.ToArray(), Is.EqualTo(isLinear ? rounded : p.Value.ToArray()), p.Name);
            if (!isLinear) continue;
            var bits = new ushort[s.Numel];
            Cpu.Download<ushort>(s, bits);
            Assert.That(bits, Is.EqualTo(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(reader.GetBytes(p.Name)).ToArray()), p.Name);
        }
        Assert.That(linear, Is.EqualTo(m.Parameters.All.Count(p => System.Text.RegularExpressions.Regex.IsMatch(p.Name, @"(_proj|fc[12]|lm_head|vm_head|mm_projector\.\d)\.weight$"))));
        Assert.That(stored.Parameters.All.Sum(p => p.Value.Bytes), Is.LessThan(0.75 * widened.Parameters.All.Sum(p => p.Value.Bytes)));
        // The checkpoint layout's Linear flags choose the storage (and inspect's memory figure): they must mark exactly
        // the parameters the name-and-rank rule above calls linear.
        Assert.That(stored.Parameters.All.Where(p => p.Value.DType == DType.BF16).Select(p => p.Name),
                    Is.EquivalentTo(HfNames.Expected(m.Config).Where(t => t.Required && t.Linear).Select(t => t.Name)));

        Assert.That(Logits(stored), Is.EqualTo(Logits(widened)));
        // Saving writes the widened values (F32): they load back as the model that read the BF16 file widened.
        ModelCheckpoint.Save(stored, dir["resaved"]);
        using var resaved = ModelCheckpoint.Load(Cpu, dir["resaved"]);
        foreach (var p in widened.Parameters.All)
            Assert.That(resaved.Parameters[p.Name].Value.ToArray(), Is.EqualTo(p.Value.ToArray()), p.Name);
        int[] prompt = [1, 5, Llava.ImageTokenIndex, 7, 8];
        var px = TinyWorld.Pixels(1, m.Config, 5);
        var opts = new SamplingOptions { MaxNewTokens = 6 };
        using var g1 = new Generator(stored);
        using var g2 = new Generator(widened);
        Assert.That(g1.Generate([new(prompt, new int[prompt.Length])], px, opts)[0],
                    Is.EqualTo(g2.Generate([new(prompt, new int[prompt.Length])], px, opts)[0]));

        var vm = stored.VmHead;
        Assert.That(() => vm.Trainable = true, Throws.InvalidOperationException.With.Message.Contains("vm_head.weight is stored as BF16"));
        using var arena = new Arena(Cpu, 1 << 20);
        var tape = new Tape(Cpu, arena, record: true);
        var x = m.Parameters[HfNames.FinalNorm];
        x.Trainable = true;
        tape.Track([x]);
        Assert.That(() => Ops.Linear(tape, Ops.Reshape(tape, x.Value, 1, (int)x.Numel), stored.Decoder.LmHead.Value),
                    Throws.InvalidOperationException.With.Message.Contains("Linear: w").And.Message.Contains("gradients need F32 weights"));
    }

    [Test]
    public void VisionTowerIsReadFromTheLocalClipDirectoryThatMmVisionTowerNames()
    {
        using var m = Distinct(13);
        using var dir = new CheckpointFixtures.Scratch();
        string model = dir["llava"], clip = dir["clip"];
        bool IsTower(Parameter p) => p.Name.StartsWith(EmbeddedTower, StringComparison.Ordinal);
        SafetensorsEntry Entry(string name, Parameter p) => new(name, p.Shape, p.Value.ToArray());

        // The LLaVA side: everything but the tower, and a config naming the tower by a relative path, no vision_config.
        SafetensorsWriter.WriteCheckpoint(model, m.Parameters.All.Where(p => !IsTower(p)).Select(p => Entry(p.Name, p)).ToList());
        var config = JsonNode.Parse(m.Config.ToJson())!.AsObject();
        var vision = config["vision_config"]!.DeepClone();
        config.Remove("vision_config");
        config["mm_vision_tower"] = "../clip";
        File.WriteAllText(Path.Combine(model, VwLmmConfig.FileName), config.ToJsonString());

        // The CLIP side as HF saves a CLIPModel: vision_model.* next to the text half and the projections.
        var clipTensors = m.Parameters.All.Where(IsTower)
            .Select(p => Entry("vision_model." + p.Name[EmbeddedTower.Length..], p))
            .Concat([
                new SafetensorsEntry("text_model.embeddings.token_embedding.weight", new Shape(8, 4), new float[32]),
                new SafetensorsEntry("text_projection.weight", new Shape(4, 4), new float[16]),
                new SafetensorsEntry("visual_projection.weight", new Shape(4, m.Config.Vision.HiddenSize), new float[4 * m.Config.Vision.HiddenSize]),
                new SafetensorsEntry("logit_scale", new Shape(1), new float[] { 2.6592f }),
            ]).ToList();
        SafetensorsWriter.WriteCheckpoint(clip, clipTensors);
        File.WriteAllText(Path.Combine(clip, VwLmmConfig.FileName), new JsonObject { ["model_type"] = "clip", ["vision_config"] = vision }.ToJsonString());

        using var loaded = ModelCheckpoint.Load(Cpu, model);
        Assert.That(loaded.Config.Vision, Is.EqualTo(m.Config.Vision));
        foreach (var p in m.Parameters.All)
            Assert.That(loaded.Parameters[p.Name].Value.ToArray(), Is.EqualTo(p.Value.ToArray()), p.Name);
        Assert.That(Logits(loaded), Is.EqualTo(Logits(m)));

        // inspect counts the tower from the CLIP directory, without its text half.
        var report = new StringWriter();
        Assert.That(VwLmm.Cli.Program.Run(["inspect", model], report, TextWriter.Null), Is.Zero);
        long tower = m.Parameters.All.Where(IsTower).Sum(p => p.Numel), total = m.Parameters.All.Sum(p => p.Numel);
        Assert.That(report.ToString(), Does.Match($@"vision_tower\s+{tower:N0}\n").And.Match($@"total\s+{total:N0}\n"));
    }

    /// <summary>A tiny model whose every weight differs from every other, norm gains and biases included (initialised 1 and 0).</summary>
    private VwLmmModel Distinct(ulong seed)
    {
        var m = TinyWorld.Model(Cpu, TinyWorld.Config(), seed);
        var rng = new Random((int)seed);
        foreach (var p in m.Parameters.All)
            Cpu.Upload<float>(p.Value, p.Value.ToArray().Select(x => x + (float)(0.1 * (rng.NextDouble() - 0.5))).ToArray());
        return m;
    }

    /// <summary>fp32 → bf16 → fp32, round to nearest, ties to even, on the bit pattern (the weights hold no NaN).</summary>
    private static float RoundToBf16(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        uint lsb = (bits >> 16) & 1;
        return BitConverter.UInt32BitsToSingle((bits + 0x7FFF + lsb) & 0xFFFF0000);
    }

    private float[] Logits(VwLmmModel model)
    {
        var batch = new BatchBuilder(model.Vision.TokensPerImage, 64, model.Config.Llm.VocabSize).Build(
        [
            TinyWorld.Sample([1, 5, Llava.ImageTokenIndex, 7, 8, 9, 2], 3),
            TinyWorld.Sample([1, 11, 12, Llava.ImageTokenIndex, 13, 2], 4),
        ]);
        var c = model.Config.Vision;
        using var arena = new Arena(Cpu, 64 << 20);
        var tape = new Tape(Cpu, arena, record: false);
        var pixels = Ops.Input(tape, TinyWorld.Pixels(batch.ImageCount, model.Config, 3), batch.ImageCount, c.NumChannels, c.ImageSize, c.ImageSize);
        return model.Forward(tape, batch, pixels).Logits.ToArray();
    }
}
