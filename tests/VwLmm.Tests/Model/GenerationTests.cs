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

    /// <summary>
    /// A generator keeps its KV cache between calls: after a long generation, shorter ones (and after a batch of two,
    /// another) read a cache that is larger than they need and holds the earlier calls' rows, and must give what a
    /// fresh generator gives.
    /// </summary>
    [Test]
    public void AReusedGeneratorGivesWhatAFreshOneGives()
    {
        var cfg = TinyWorld.Config();
        using var m = TinyWorld.Model(Cpu, cfg, seed: 3, scale: 6);
        int[] a = [1, 5, Llava.ImageTokenIndex, 7, 8], b = [1, 9, 10, 11, 12];
        var pa = TinyWorld.Pixels(1, cfg, 1);
        var calls = new (TokenizedConversation[] Prompts, float[] Pixels, int Tokens)[]
        {
            ([new(a, new int[a.Length])], pa, 9),
            ([new(b, new int[b.Length])], [], 3),
            ([new(a, new int[a.Length])], pa, 2),
            ([new(b, new int[b.Length]), new(a, new int[a.Length])], pa, 4),
            ([new(a, new int[a.Length]), new(b, new int[b.Length])], pa, 3),
        };
        using var reused = new Generator(m);
        foreach (var (prompts, pixels, tokens) in calls)
        {
            var opts = new SamplingOptions { MaxNewTokens = tokens };
            using var fresh = new Generator(m);
            Assert.That(reused.Generate(prompts, pixels, opts), Is.EqualTo(fresh.Generate(prompts, pixels, opts)));
        }
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

    /// <summary>
    /// The callback sees every returned token, step by step across the batch (what streaming output relies on), and
    /// nothing of a sample after its stop id.
    /// </summary>
    [Test]
    public void EachTokenReachesTheCallbackAsItIsChosen()
    {
        var cfg = TinyWorld.Config();
        using var m = TinyWorld.Model(Cpu, cfg, seed: 3, scale: 6);
        int[] a = [1, 5, Llava.ImageTokenIndex, 7, 8], b = [1, 9, 10, 11, 12];
        var pa = TinyWorld.Pixels(1, cfg, 1);
        TokenizedConversation[] prompts = [new(a, new int[a.Length]), new(b, new int[b.Length])];
        using var gen = new Generator(m);
        var free = gen.Generate(prompts, pa, new SamplingOptions { MaxNewTokens = 6 });
        var opts = new SamplingOptions { MaxNewTokens = 6, StopIds = [free[1][1]] };
        var seen = new List<(int Sample, int Id)>();
        var outputs = gen.Generate(prompts, pa, opts, (sample, id) => seen.Add((sample, id)));

        Assert.That(outputs[1], Has.Length.LessThan(6), "the stop id must end sample 1 early");
        var expected = new List<(int, int)>();
        for (int step = 0; step < 6; step++)
            for (int i = 0; i < 2; i++)
                if (step < outputs[i].Length) expected.Add((i, outputs[i][step]));
        Assert.That(seen, Is.EqualTo(expected));
    }

    /// <summary>
    /// A next turn repeats the conversation so far: Continue keeps the cache rows of the shared prefix — with the image,
    /// only when its pixels are the same — and must choose the tokens a fresh generator chooses for the whole prompt.
    /// </summary>
    [Test]
    public void ContinueKeepsTheSharedPrefixAndGivesWhatAFullPrefillGives()
    {
        var cfg = TinyWorld.Config();
        using var m = TinyWorld.Model(Cpu, cfg, seed: 3, scale: 6);
        int n = m.Vision.TokensPerImage;
        var pa = TinyWorld.Pixels(1, cfg, 1);
        var pb = TinyWorld.Pixels(1, cfg, 2);
        var opts = new SamplingOptions { MaxNewTokens = 5 };
        int[] Fresh(int[] prompt, float[] px)
        {
            using var g = new Generator(m);
            return g.Generate([new(prompt, new int[prompt.Length])], px, opts)[0];
        }
        using var gen = new Generator(m);
        int[] Continue(int[] prompt, float[] px) => gen.Continue(new(prompt, new int[prompt.Length]), px, opts);

        int[] first = [1, 5, Llava.ImageTokenIndex, 7, 8];
        var answer = Continue(first, pa);
        Assert.That(answer, Is.EqualTo(Fresh(first, pa)));
        Assert.That(gen.ReusedPositions, Is.Zero, "nothing is cached before the first turn");

        // The next turn: the first prompt, the answer but its last token (a re-encoded answer may end differently), more text.
        int[] second = [.. first, .. answer[..^1], 9, 10];
        Assert.That(Continue(second, pa), Is.EqualTo(Fresh(second, pa)));
        Assert.That(gen.ReusedPositions, Is.EqualTo(first.Length + answer.Length - 1 + n - 1), "prompt and fed answer rows kept");

        int[] third = [.. first, 11];
        Assert.That(Continue(third, pa), Is.EqualTo(Fresh(third, pa)));
        Assert.That(gen.ReusedPositions, Is.EqualTo(first.Length + n - 1), "kept up to where the turns differ");

        Assert.That(Continue(third, pb), Is.EqualTo(Fresh(third, pb)));
        Assert.That(gen.ReusedPositions, Is.EqualTo(2), "another image: only the text before it is kept");

        // Generate with two prompts overwrites the cache; the next Continue starts afresh.
        gen.Generate([new(first, new int[first.Length]), new(third, new int[third.Length])], [.. pa, .. pa], opts);
        Assert.That(Continue(third, pa), Is.EqualTo(Fresh(third, pa)));
        Assert.That(gen.ReusedPositions, Is.Zero);
        Assert.That(answer.Distinct().Count(), Is.GreaterThan(1), "degenerate model: pick another seed or scale");
    }

    /// <summary>
    /// A call that throws after prefilling (here the token callback, as a closed output would) has overwritten cache
    /// rows the previous turn's record still lists: the next Continue must not keep them.
    /// </summary>
    [Test]
    public void ContinueAfterAFailedCallPrefillsAfresh()
    {
        var cfg = TinyWorld.Config();
        using var m = TinyWorld.Model(Cpu, cfg, seed: 3, scale: 6);
        var pa = TinyWorld.Pixels(1, cfg, 1);
        var opts = new SamplingOptions { MaxNewTokens = 5 };
        using var gen = new Generator(m);
        int[] first = [1, 5, Llava.ImageTokenIndex, 7, 8];
        var answer = gen.Continue(new(first, new int[first.Length]), pa, opts);
        int[] diverging = [1, 5, Llava.ImageTokenIndex, 30, 31, 32];
        Assert.Throws<IOException>(() => gen.Continue(new(diverging, new int[diverging.Length]), pa, opts, (_, _) => throw new IOException("closed")));

        int[] second = [.. first, .. answer[..^1], 9, 10];
        using var fresh = new Generator(m);
        Assert.That(gen.Continue(new(second, new int[second.Length]), pa, opts),
                    Is.EqualTo(fresh.Generate([new(second, new int[second.Length])], pa, opts)[0]));
        Assert.That(gen.ReusedPositions, Is.Zero);
    }

    [Test]
    public void SamplingFollowsTheTemperedSoftmaxAndItsFilters()
    {
        float[] logits = [1f, 2f, 0.5f, 2f];
        var scratch = new Generator.SamplingScratch(logits.Length);
        var rng = new VwLmm.Core.Rng(9);
        var t = new SamplingOptions { Temperature = 0.7f };
        var counts = new int[4];
        const int draws = 40_000;
        for (int i = 0; i < draws; i++) counts[Generator.Sample(logits, t, rng, scratch)]++;
        double z = logits.Sum(l => Math.Exp(l / 0.7));
        for (int k = 0; k < 4; k++)
            Assert.That(counts[k] / (double)draws, Is.EqualTo(Math.Exp(logits[k] / 0.7) / z).Within(0.01), $"token {k}");
        Assert.That(Enumerable.Range(0, 200).Select(_ => Generator.Sample(logits, t with { TopK = 2 }, rng, scratch)).Distinct().Order(),
                    Is.EqualTo(new[] { 1, 3 }), "top-k 2 keeps the two largest");
        Assert.That(Enumerable.Range(0, 50).Select(_ => Generator.Sample(logits, t with { TopP = 0.01f }, rng, scratch)).Distinct(),
                    Is.EqualTo(new[] { 1 }), "the smallest top-p set: one of the tied two, the lower id");
        Assert.That(Enumerable.Range(0, 50).Select(_ => Generator.Sample(logits, t with { TopK = 1 }, rng, scratch)).Distinct(),
                    Is.EqualTo(new[] { 1 }), "top-k 1 is greedy, ties included");
        Assert.That(Generator.Sample(logits, new SamplingOptions(), rng, scratch), Is.EqualTo(1), "greedy takes the lowest id of a tie");
    }

    [Test]
    public void TopPMeasuresItsShareOfWhatTopKKept()
    {
        // p = 0.5, 0.3, 0.2: top-k 2 leaves 0.625 and 0.375, so top-p 0.6 keeps the first alone (over the whole
        // vocabulary the first two would be needed to reach 0.6).
        float[] logits = [MathF.Log(0.3f), MathF.Log(0.5f), MathF.Log(0.2f)];
        var scratch = new Generator.SamplingScratch(logits.Length);
        var rng = new VwLmm.Core.Rng(4);
        var o = new SamplingOptions { Temperature = 1, TopK = 2, TopP = 0.6f };
        Assert.That(Enumerable.Range(0, 200).Select(_ => Generator.Sample(logits, o, rng, scratch)).Distinct(), Is.EqualTo(new[] { 1 }));
        Assert.That(Enumerable.Range(0, 200).Select(_ => Generator.Sample(logits, o with { TopP = 0.7f }, rng, scratch)).Distinct().Order(),
                    Is.EqualTo(new[] { 0, 1 }), "0.7 of the kept 0.8 needs both");
    }
}
