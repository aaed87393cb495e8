using System.Text.Json;
using System.Text.Json.Nodes;
using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Data;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using VwLmm.Tests.Cli;

namespace VwLmm.Tests.Model;

using Ops = VwLmm.Core.Ops;

/// <summary>
/// The whole model against an independent implementation: `vwlmm forward` on a tiny random BF16 checkpoint in the
/// HF/LLaVA layout must give what fixtures/llava_parity/make_llava_parity_fixture.py computes in float64 PyTorch from
/// the HF module semantics (CLIP tower up to the select layer, CLS dropped, mlp2x_gelu, splicing at −200, Llama with GQA,
/// RoPE and RMSNorm from config.json, the VM head and the shifted forward KL; then pif, and a tower with exact GELU, the
/// last layer selected and CLS kept, as the fixture's cases.json sets them), and the backward pass must give the
/// reference's float64 autograd gradients. The op tests check each kernel; these check that the pieces are put together
/// as HF and LLaVA put them.
/// </summary>
[TestFixture]
public class LlavaParityTests
{
    private static string Fixture(string name) => Path.Combine(CliRunner.Fixtures, "llava_parity", name);

    private static readonly string[] Cases = ["plain", "pif", "tower"];

    /// <summary>
    /// Writes the fixture's model with <paramref name="name"/>'s config changes from cases.json (dotted keys reach into
    /// vision_config) to <paramref name="dir"/>.
    /// </summary>
    private static void WriteModel(string dir, string name)
    {
        File.Copy(Fixture("model/model.safetensors"), Path.Combine(dir, "model.safetensors"));
        var config = JsonNode.Parse(File.ReadAllText(Fixture("model/config.json")))!.AsObject();
        var changes = JsonNode.Parse(File.ReadAllText(Fixture("cases.json")))![name]!.AsObject();
        foreach (var (key, value) in changes)
        {
            var target = key.StartsWith("vision_config.", StringComparison.Ordinal) ? config["vision_config"]!.AsObject() : config;
            string field = key[(key.IndexOf('.') + 1)..];
            Assert.That(target.ContainsKey(field), $"cases.json: {key} is not in config.json");
            target[field] = value!.DeepClone();
        }
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
    }

    [TestCaseSource(nameof(Cases))]
    public void ForwardMatchesTheFloat64TorchReference(string expected)
    {
        string dir = CliRunner.TempDir();
        try
        {
            string model = Path.Combine(dir, "model"), dump = Path.Combine(dir, "dump");
            Directory.CreateDirectory(model);
            WriteModel(model, expected);
            // The loader wants a tokenizer beside the weights; --ids never uses it, so any with the config's 500 pieces serves.
            File.Copy(Path.Combine(CliRunner.Fixtures, "tokenizer", "noprefix.model"), Path.Combine(model, "tokenizer.model"));

            var r = CliRunner.Run("forward", "--model", model, "--pixels", Fixture("pixels.npy"), "--ids", Fixture("ids.json"),
                                  "--dump", dump, "--device", "cpu", "--threads", "1", "--quiet");
            Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);

            // fp32 against float64: the reference's own error is nil, ours is a few ulps of the largest value per step.
            AssertClose(dump, expected, "logits", 5e-6);
            AssertClose(dump, expected, "visual_words", 5e-6);
            AssertClose(dump, expected, "text_loss", 5e-6);
            using var ours = JsonDocument.Parse(File.ReadAllText(Path.Combine(dump, "losses.json")));
            using var reference = JsonDocument.Parse(File.ReadAllText(Fixture($"{expected}_losses.json")));
            foreach (string key in (string[])["text", "vm", "total"])
                Assert.That(ours.RootElement.GetProperty(key).GetDouble(),
                            Is.EqualTo(reference.RootElement.GetProperty(key).GetDouble()).Within(1e-4).Percent, key);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void GradientsMatchTheFloat64TorchAutograd(string expected)
    {
        string dir = CliRunner.TempDir();
        try
        {
            WriteModel(dir, expected);
            using var cpu = new CpuBackend(1);
            using var model = ModelCheckpoint.Load(cpu, dir, allowUnused: true);
            var c = model.Config;
            model.Parameters.SetTrainable(Enum.GetValues<ParameterGroup>());
            int[] ids = JsonSerializer.Deserialize<int[]>(File.ReadAllText(Fixture("ids.json")))!;
            int[] labels = ids.Select(i => i == Llava.ImageTokenIndex ? Llava.IgnoreIndex : i).ToArray();
            var batch = new BatchBuilder(model.Vision.TokensPerImage, c.Llm.MaxPositionEmbeddings, c.Llm.VocabSize)
                .Build([new TokenizedConversation(ids, labels)]);
            using var arena = new Arena(cpu, 64 << 20);
            var tape = new Tape(cpu, arena, record: true);
            tape.Track(model.Parameters.All);
            var pixels = Ops.Input(tape, Npy.Read<float>(Fixture("pixels.npy")).Data, 1, c.Vision.NumChannels, c.Vision.ImageSize, c.Vision.ImageSize);
            model.Forward(tape, batch, pixels);
            tape.Backward();

            using var reference = JsonDocument.Parse(File.ReadAllText(Fixture($"{expected}_gradients.json")));
            var names = reference.RootElement.EnumerateObject().Select(e => e.Name).ToHashSet();
            Assert.That(model.Parameters.All.Select(p => p.Name), Is.EquivalentTo(names), "parameters the loss reaches");
            foreach (var p in model.Parameters.All)
            {
                var r = reference.RootElement.GetProperty(p.Name);
                float[] g = p.Grad!.ToArray();
                double norm = r.GetProperty("norm").GetDouble(), ours = Math.Sqrt(g.Sum(v => (double)v * v));
                // fp32 against float64: each gradient element to a small fraction of its tensor's norm, with a floor for
                // gradients that are zero in exact arithmetic (CLIP's key bias: softmax ignores a shift shared by all keys),
                // where fp32 leaves ~1e-7; the sum bounded by what that error allows over all elements.
                double tol = 2e-5 * norm + 1e-6;
                Assert.That(ours, Is.EqualTo(norm).Within(tol), $"{p.Name}: gradient norm");
                Assert.That(g.Sum(v => (double)v), Is.EqualTo(r.GetProperty("sum").GetDouble()).Within(tol * Math.Sqrt(g.Length)), $"{p.Name}: gradient sum");
                var indices = r.GetProperty("indices").EnumerateArray().Select(e => e.GetInt32()).ToArray();
                var values = r.GetProperty("values").EnumerateArray().Select(e => e.GetDouble()).ToArray();
                for (int i = 0; i < indices.Length; i++)
                    Assert.That(g[indices[i]], Is.EqualTo(values[i]).Within(tol), $"{p.Name}[{indices[i]}]");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Same shape, and every element within <paramref name="relative"/> of the reference's largest magnitude.</summary>
    private static void AssertClose(string dump, string expected, string name, double relative)
    {
        var (ours, shape) = Npy.Read<float>(Path.Combine(dump, name + ".npy"));
        var (reference, referenceShape) = Npy.Read<float>(Fixture($"{expected}_{name}.npy"));
        Assert.That(shape, Is.EqualTo(referenceShape), name);
        double scale = reference.Max(v => Math.Abs((double)v)), worst = 0;
        int at = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            double e = Math.Abs((double)ours[i] - reference[i]);
            if (e > worst) (worst, at) = (e, i);
        }
        Assert.That(worst, Is.LessThanOrEqualTo(relative * scale),
                    $"{name}: element {at} is {ours[at]}, the reference {reference[at]} (largest magnitude {scale})");
    }
}
