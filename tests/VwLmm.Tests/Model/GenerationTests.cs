using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Model;

namespace VwLmm.Tests.Model;

using Ops = VwLmm.Core.Ops;

/// <summary>Cached generation must give the tokens that recomputing the whole sequence each step gives.</summary>
public class GenerationTests : CpuFixture
{
    // Greedy decoding by full recomputation: no cache, the whole prefix through the training forward path.
    private static int[] Uncached(VwLmmModel m, int[] prompt, float[] px, int steps)
    {
        var ids = prompt.ToList();
        var outs = new List<int>();
        using var arena = new Arena(m.Backend, 64 << 20);
        int v = m.Config.Llm.VocabSize;
        for (int s = 0; s < steps; s++)
        {
            arena.Reset();
            var tape = new Tape(m.Backend, arena, record: false);
            var batch = new BatchBuilder(m.Vision.TokensPerImage, int.MaxValue, v).Build([new TokenizedConversation(ids.ToArray(), new int[ids.Count])]);
            var pixels = batch.ImageCount > 0 ? Ops.Input(tape, px, batch.ImageCount, 3, 32, 32) : null;
            var logits = m.Forward(tape, batch, pixels, vmLossWeight: 0).Logits.ToArray();
            var last = logits.AsSpan((batch.L - 1) * v, v);
            int best = 0;
            for (int i = 1; i < v; i++) if (last[i] > last[best]) best = i;
            outs.Add(best);
            ids.Add(best);
        }
        return outs.ToArray();
    }

    [TestCase(false)]
    [TestCase(true)]
    public void CachedGreedyEqualsFullRecomputation(bool pif)
    {
        var cfg = TinyWorld.Config(pif: pif);
        using var m = TinyWorld.Model(Cpu, cfg, seed: 3, scale: 6);
        int[] a = [1, 5, Llava.ImageTokenIndex, 7, 8];
        int[] b = [1, 9, 10, 11, Llava.ImageTokenIndex, 12, 13, 14, 15];
        var pa = TinyWorld.Pixels(1, cfg, 1);
        var pb = TinyWorld.Pixels(1, cfg, 2);
        using var gen = new Generator(m);
        var opts = new SamplingOptions { MaxNewTokens = 6 };
        var both = gen.Generate([new(a, new int[a.Length]), new(b, new int[b.Length])], pa.Concat(pb).ToArray(), opts);
        Assert.That(both[0], Is.EqualTo(Uncached(m, a, pa, 6)));
        Assert.That(both[1], Is.EqualTo(Uncached(m, b, pb, 6)));
        Assert.That(both[0].Distinct().Count(), Is.GreaterThan(1), "degenerate model: pick another seed or scale");
    }

    [Test]
    public void StopIdEndsASample()
    {
        var cfg = TinyWorld.Config();
        using var m = TinyWorld.Model(Cpu, cfg, seed: 3, scale: 6);
        int[] a = [1, 5, 6];
        using var gen = new Generator(m);
        var free = gen.Generate([new(a, new int[3])], default, new SamplingOptions { MaxNewTokens = 5 })[0];
        var stopped = gen.Generate([new(a, new int[3])], default, new SamplingOptions { MaxNewTokens = 5, StopIds = [free[1]] })[0];
        Assert.That(stopped, Is.EqualTo(free.Take(Array.IndexOf(free, free[1]) + 1).ToArray()));
    }
}
