using System.Text.Json;
using NUnit.Framework;
using VwLmm.Data;
using VwLmm.Tests.Cli;

namespace VwLmm.Tests.Model;

/// <summary>
/// The whole model against an independent implementation: `vwlmm forward` on a tiny random BF16 checkpoint in the
/// HF/LLaVA layout must give what fixtures/llava_parity/make_llava_parity_fixture.py computes in float64 PyTorch from
/// the HF module semantics (CLIP tower up to the select layer, CLS dropped, mlp2x_gelu, splicing at −200, Llama with GQA,
/// RoPE and RMSNorm from config.json, the VM head and the shifted forward KL; pif as a second case). The op tests check
/// each kernel; this checks that the pieces are put together as HF and LLaVA put them.
/// </summary>
[TestFixture]
public class LlavaParityTests
{
    private static string Fixture(string name) => Path.Combine(CliRunner.Fixtures, "llava_parity", name);

    [TestCase("plain", false)]
    [TestCase("pif", true)]
    public void ForwardMatchesTheFloat64TorchReference(string expected, bool pif)
    {
        string dir = CliRunner.TempDir();
        try
        {
            string model = Path.Combine(dir, "model"), dump = Path.Combine(dir, "dump");
            Directory.CreateDirectory(model);
            File.Copy(Fixture("model/model.safetensors"), Path.Combine(model, "model.safetensors"));
            // The loader wants a tokenizer beside the weights; --ids never uses it, so any with the config's 500 pieces serves.
            File.Copy(Path.Combine(CliRunner.Fixtures, "tokenizer", "noprefix.model"), Path.Combine(model, "tokenizer.model"));
            var config = File.ReadAllText(Fixture("model/config.json"));
            Assert.That(config, Does.Contain("\"use_pif\": false"));
            File.WriteAllText(Path.Combine(model, "config.json"), pif ? config.Replace("\"use_pif\": false", "\"use_pif\": true") : config);

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
