using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Model;
using VwLmm.Tests.Ops;
using VwLmm.Tests.Ops.Reference;

namespace VwLmm.Tests.Model;

using Ops = VwLmm.Core.Ops;

/// <summary>
/// The decoder's attention probe and the weights computed from what it sees (`vwlmm forward --attention`): layer 0's
/// against a double reference built from the weights (RMSNorm, q/k projections, RoPE, causal softmax), with GQA.
/// </summary>
public class AttentionProbeTests : CpuFixture
{
    [Test]
    public void FirstLayerWeightsMatchTheDoubleReference()
    {
        var config = TinyWorld.Config();
        var c = config.Llm;
        Assert.That(c.NumKeyValueHeads, Is.LessThan(c.NumAttentionHeads), "the tiny preset exercises GQA");
        using var m = TinyWorld.Model(Cpu, config, scale: 4);
        int l = 9, d = c.HiddenSize, h = c.NumAttentionHeads, hkv = c.NumKeyValueHeads, hd = c.HeadDim;
        var rng = new Random(5);
        var x = new float[l * d];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        int[] positions = Enumerable.Range(0, l).ToArray();

        var seen = new List<(int Layer, float[] Q, float[] K)>();
        m.Decoder.AttentionProbe = (layer, q, k) => seen.Add((layer, q.ToArray(), k.ToArray()));
        using var arena = new Arena(Cpu, 16 << 20);
        var tape = new Tape(Cpu, arena, record: false);
        m.Decoder.Forward(tape, Ops.Input(tape, x, l, d), 1, l, positions, [l]);
        m.Decoder.AttentionProbe = null;
        Assert.That(seen.Select(s => s.Layer), Is.EqualTo(Enumerable.Range(0, c.NumHiddenLayers)), "one call per layer, in order");
        var got = LlamaDecoder.AttentionProbabilities(seen[0].Q, seen[0].K, l, h, hkv, hd);

        float[] W(string name) => m.Parameters[$"model.layers.0.{name}"].Value.ToArray();
        var (a, _) = NormReference.RmsNorm(OpHarness.ToDouble(x), OpHarness.ToDouble(W("input_layernorm.weight")), l, d, c.RmsNormEps);
        var af = a.Select(v => (float)v).ToArray();
        double[] Project(string name, int n) => GemmReference.Gemm(false, true, l, n, d, 1, af, d, 0, W(name), d, 0, 0, new float[l * n], n, 0, 1);
        var q = RopeReference.Rotate(Project("self_attn.q_proj.weight", h * hd), positions, 1, l, h, hd, c.RopeTheta);
        var k = RopeReference.Rotate(Project("self_attn.k_proj.weight", hkv * hd), positions, 1, l, hkv, hd, c.RopeTheta);
        for (int head = 0; head < h; head++)
        for (int t = 0; t < l; t++)
        {
            var s = new double[t + 1];
            for (int j = 0; j <= t; j++)
            for (int e = 0; e < hd; e++)
                s[j] += q[(t * h + head) * hd + e] * k[(j * hkv + head * hkv / h) * hd + e] / Math.Sqrt(hd);
            double max = s.Max(), z = s.Sum(v => Math.Exp(v - max));
            for (int j = 0; j < l; j++)
            {
                double expected = j <= t ? Math.Exp(s[j] - max) / z : 0;
                Assert.That(got[(head * l + t) * l + j], Is.EqualTo(expected).Within(1e-5), $"head {head}, query {t}, key {j}");
            }
        }
    }

    [Test]
    public void RefusesTensorsOfTheWrongSize() =>
        Assert.That(() => LlamaDecoder.AttentionProbabilities(new float[12], new float[8], 3, 2, 2, 2),
                    Throws.ArgumentException.With.Message.Contains("q of 12 and k of 8 floats"));
}
