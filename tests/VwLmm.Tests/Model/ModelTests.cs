using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Model;

using Ops = VwLmm.Core.Ops;

/// <summary>The whole model: gradients by finite differences, per tensor, through every path (text, VM loss, pif, detach,
/// reverse KL, linear projector, gelu tower, cls_patch, last layer), the shift by one, text-only batches, frozen groups
/// and checkpoint round trips.</summary>
public class ModelTests : CpuFixture
{
    private static Batch TwoSampleBatch(VwLmmModel m) =>
        new BatchBuilder(m.Vision.TokensPerImage, 64, m.Config.Llm.VocabSize).Build(
        [
            TinyWorld.Sample([1, 5, Llava.ImageTokenIndex, 7, 8, 9, 2], 3),
            TinyWorld.Sample([1, 11, 12, Llava.ImageTokenIndex, 13, 2], 4),
        ]);

    /// <summary>
    /// Every forward path the trainer can take: the default CLIP/LLaVA choices (mlp2x_gelu projector, quick_gelu tower,
    /// patch features from the second-to-last layer, forward KL) and each switch away from them.
    /// </summary>
    public static IEnumerable<TestCaseData> GradientConfigurations()
    {
        var tiny = TinyWorld.Config();
        yield return new TestCaseData(tiny, 0f).SetArgDisplayNames("defaults");
        yield return new TestCaseData(TinyWorld.Config(pif: true), 0f).SetArgDisplayNames("pif");
        yield return new TestCaseData(TinyWorld.Config(detach: true), 0f).SetArgDisplayNames("detached target");
        yield return new TestCaseData(TinyWorld.Config(pif: true, detach: true), 0f).SetArgDisplayNames("pif, detached target");
        yield return new TestCaseData(TinyWorld.Config(reverse: true), 0f).SetArgDisplayNames("reverse KL");
        yield return new TestCaseData(tiny with { ProjectorType = ProjectorType.Linear }, 0f).SetArgDisplayNames("linear projector");
        yield return new TestCaseData(tiny with { Vision = tiny.Vision with { HiddenAct = VisionHiddenAct.Gelu } }, 0f).SetArgDisplayNames("gelu tower");
        yield return new TestCaseData(tiny with { MmVisionSelectFeature = VisionSelectFeature.ClsPatch }, 0f).SetArgDisplayNames("cls_patch");
        yield return new TestCaseData(tiny with { MmVisionSelectLayer = -1 }, 0f).SetArgDisplayNames("last layer");
        yield return new TestCaseData(tiny, 0.3f).SetArgDisplayNames("decoder dropout");
    }

    // Per parameter tensor, two directional derivatives against finite differences: along a random unit direction, and
    // along the analytic gradient itself, where the signal is the tensor's whole gradient norm, so that a gradient off by
    // 1 % in one tensor exceeds the finite difference's error bound. Checked by injection: ×1.01 on one tensor's gradient,
    // and ×1.1 on the last element of every norm's gain gradient in the CPU backend, both fail here (a single random
    // direction per parameter group with a 1e-3 + 1 % tolerance passed both).
    [TestCaseSource(nameof(GradientConfigurations))]
    public void WholeModelGradientsMatchFiniteDifferences(VwLmmConfig config, float dropoutRate)
    {
        // A fixed seed fixes the masks, so the loss the finite differences see is the one the gradient is taken of.
        var dropout = new DropoutPlan(dropoutRate, 0xFEED);
        using var m = TinyWorld.Model(Cpu, config, scale: 4);
        var batch = TwoSampleBatch(m);
        Assert.That(batch.VmPairCount, Is.GreaterThan(0));
        var px = TinyWorld.Pixels(batch.ImageCount, m.Config, 3);
        using var arena = new Arena(Cpu, 64 << 20);
        foreach (var p in m.Parameters.All) p.Trainable = true;
        var tape = new Tape(Cpu, arena, record: true);
        tape.Track(m.Parameters.All);
        var output = m.Forward(tape, batch, Pixels(tape, m, batch, px), dropout: dropout);
        Assert.That(output.Vm.Count, Is.EqualTo(batch.VmPairCount));
        tape.Backward();
        var all = m.Parameters.All;
        var gradients = all.Select(p => p.Grad!.ToArray()).ToList();
        if (config.VmDetachTarget && !config.UsePif)
            Assert.That(m.VmHead.Grad!.ToArray(), Is.All.EqualTo(0f), "a detached target sends no gradient into the VM head");
        var frozenTarget = config.VmDetachTarget ? output.VmLogits!.ToArray() : null;

        // With a detached target the gradient is that of text + λ·KL(p₀ ‖ q), the visual words p₀ held where they are,
        // so that is the loss the finite differences see.
        double Loss()
        {
            arena.Reset();
            var t = new Tape(Cpu, arena, record: false);
            if (frozenTarget is null) return m.Forward(t, batch, Pixels(t, m, batch, px), dropout: dropout).Total;
            var o = m.Forward(t, batch, Pixels(t, m, batch, px), vmLossWeight: 0, dropout: dropout);
            var target = Ops.Input(t, frozenTarget, frozenTarget.Length / config.Llm.VocabSize, config.Llm.VocabSize);
            return o.Text.Mean + (float)config.VmLossWeight * Ops.VisualWordKl(t, o.Logits, target, batch.VmPairs,
                reverse: config.VmKlDirection == KlDirection.Reverse).Mean;
        }

        double loss = Loss();
        var rng = new Random(5);
        var failures = new List<string>();
        for (int i = 0; i < all.Count; i++)
        {
            var p = all[i];
            var original = p.Value.ToArray();
            foreach (var (kind, u) in new[] { ("random", OpHarness.Random(rng.Next(), p.Numel)), ("gradient", (float[])gradients[i].Clone()) })
            {
                double norm = Math.Sqrt(u.Sum(x => (double)x * x));
                if (norm == 0) continue;
                double analytic = 0;
                for (int j = 0; j < u.Length; j++)
                {
                    u[j] = (float)(u[j] / norm);
                    analytic += gradients[i][j] * (double)u[j];
                }
                var (numeric, bound) = FiniteDifference(h =>
                {
                    var shifted = (float[])original.Clone();
                    for (int j = 0; j < shifted.Length; j++) shifted[j] += (float)(h * u[j]);
                    Cpu.Upload<float>(p.Value, shifted);
                    return Loss();
                }, loss);
                Cpu.Upload<float>(p.Value, original);
                if (!(Math.Abs(analytic - numeric) <= bound))
                    failures.Add($"{p.Name} along the {kind} direction: analytic {analytic:G6}, finite difference {numeric:G6} ± {bound:G2}");
            }
        }
        Assert.That(failures, Is.Empty);
    }

    private static Tensor Pixels(Tape tape, VwLmmModel m, Batch batch, float[] px) =>
        Ops.Input(tape, px, batch.ImageCount, 3, m.Config.Vision.ImageSize, m.Config.Vision.ImageSize);

    /// <summary>
    /// f′(0) for a loss f computed in float32 (f0 = f(0)), by the four-point central stencil D(h), with a bound on its
    /// error: for each step h = 2⁻¹¹…2⁻⁷, |D(2h) − D(h)| + |D(h) − D(h/2)| (the O(h⁴) truncation error of D(h) is about
    /// 1/15 of the first term, so the truncation part has a margin of at least 15) plus the stencil's rounding error
    /// 1.5·δ/h for a rounding error δ of 4 ulps of f0 in each loss (seen: about 1). The step with the smallest bound
    /// wins: large steps for curved directions' small gradients, small ones along steep gradients. Over every tensor,
    /// direction and configuration the errors seen stay under half their bounds.
    /// </summary>
    private static (double Derivative, double Bound) FiniteDifference(Func<double, double> f, double f0)
    {
        const int steps = 8;
        var h = new double[steps];
        var diff = new double[steps];
        for (int k = 0; k < steps; k++)
        {
            h[k] = Math.ScaleB(1, k - 12);
            diff[k] = f(h[k]) - f(-h[k]);
        }
        var d = new double[steps - 1];
        for (int k = 0; k < d.Length; k++) d[k] = (8 * diff[k] - diff[k + 1]) / (12 * h[k]);
        double delta = 4 * Math.ScaleB(1, Math.ILogB(f0) - 23);
        double best = double.NaN, bestBound = double.PositiveInfinity;
        for (int k = 1; k + 1 < d.Length; k++)
        {
            double bound = Math.Abs(d[k + 1] - d[k]) + Math.Abs(d[k] - d[k - 1]) + 1.5 * delta / h[k];
            if (bound < bestBound) (best, bestBound) = (d[k], bound);
        }
        return (best, bestBound);
    }

    [Test]
    public void ShiftPairsLogitsAtTMinusOneWithTheWordAtT()
    {
        // Image rows carry one-hot-ish visual words w_j; LM logits predicting w_j at the row BEFORE image position j
        // give a near-zero loss, the same logits one row later (aligned, no shift) a large one.
        const int v = 16, n = 4;
        var builder = new BatchBuilder(n, 32, v);
        var batch = builder.Build([TinyWorld.Sample([1, 3, Llava.ImageTokenIndex, 4, 2], 3)]);
        Assert.That(batch.VmPairCount, Is.EqualTo(n));
        int[] words = [5, 9, 2, 7];
        var vm = new float[n * v];
        for (int j = 0; j < n; j++) vm[j * v + words[j]] = 30;
        float[] LmLogits(int offset)
        {
            var lm = new float[batch.L * v];
            for (int t = 0; t < batch.L; t++)
            {
                int imageIndex = t + offset - 2; // image occupies positions 2..5
                if (imageIndex is >= 0 and < n) lm[t * v + words[imageIndex]] = 30;
            }
            return lm;
        }
        using var arena = new Arena(Cpu, 1 << 20);
        var tape = new Tape(Cpu, arena, record: false);
        var vmT = Ops.Input(tape, vm, n, v);
        double shifted = Ops.VisualWordKl(tape, Ops.Input(tape, LmLogits(1), batch.L, v), vmT, batch.VmPairs).Mean;
        double aligned = Ops.VisualWordKl(tape, Ops.Input(tape, LmLogits(0), batch.L, v), vmT, batch.VmPairs).Mean;
        Assert.That(shifted, Is.LessThan(1e-6));
        Assert.That(aligned, Is.GreaterThan(10));
    }

    /// <summary>
    /// The decoder leaves the padding out of its row-wise products: each sample of a padded batch (lengths 29, 22 and
    /// 5: the shorter image sample padded by 7 rows, the text-only one by 24) gets the logits it gets alone, where
    /// nothing is padded, and the padding rows get zeros. The tiny decoder has GQA, so q takes its own projection.
    /// </summary>
    [Test]
    public void PaddedBatchGivesEachSampleTheLogitsItGetsAlone()
    {
        using var m = TinyWorld.Model(Cpu, TinyWorld.Config(), seed: 3, scale: 4);
        var builder = new BatchBuilder(m.Vision.TokensPerImage, 64, m.Config.Llm.VocabSize);
        TokenizedConversation[] samples =
        [
            TinyWorld.Sample([1, 5, Llava.ImageTokenIndex, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 2], 3),
            TinyWorld.Sample([1, 11, 12, Llava.ImageTokenIndex, 13, 14, 2], 4),
            TinyWorld.Sample([1, 5, 6, 7, 2], 2),
        ];
        var batch = builder.Build(samples);
        int v = m.Config.Llm.VocabSize, image = 3 * m.Config.Vision.ImageSize * m.Config.Vision.ImageSize;
        Assert.That(batch.KeyLengths, Is.EqualTo(new[] { 29, 22, 5 }));
        var px = TinyWorld.Pixels(batch.ImageCount, m.Config, 9);
        using var arena = new Arena(Cpu, 64 << 20);
        float[] Logits(Batch b, float[] pixels)
        {
            arena.Reset();
            var tape = new Tape(Cpu, arena, record: false);
            var input = b.ImageCount == 0 ? null : Ops.Input(tape, pixels, b.ImageCount, 3, m.Config.Vision.ImageSize, m.Config.Vision.ImageSize);
            return m.Forward(tape, b, input).Logits.ToArray();
        }
        var together = Logits(batch, px);
        for (int s = 0; s < samples.Length; s++)
        {
            var alone = Logits(builder.Build([samples[s]]), s < 2 ? px[(s * image)..((s + 1) * image)] : []);
            int rows = batch.KeyLengths[s];
            Assert.That(alone, Has.Length.EqualTo(rows * v));
            var mine = together.AsSpan(s * batch.L * v, batch.L * v);
            Assert.That(mine[..(rows * v)].ToArray(), Is.EqualTo(alone).Within(2e-5f), $"sample {s}");
            Assert.That(mine[(rows * v)..].ToArray(), Is.All.EqualTo(0f), $"sample {s}'s padding");
        }
    }

    /// <summary>
    /// A training step's forward computes the last layer's output, the final norm and the LM head on the rows a loss
    /// reads: the same logits there to the bit, the same losses, and the gradients of the whole batch's forward (whose
    /// sums over rows only lose terms that are exactly zero, grouped differently). The padded batch has rows no loss reads
    /// in every sample: the question, the last image patch, the end.
    /// </summary>
    [Test]
    public void LossRowsOnlyGivesTheLogitsLossesAndGradientsOfTheWholeBatch()
    {
        using var m = TinyWorld.Model(Cpu, TinyWorld.Config(), seed: 5, scale: 4);
        m.Parameters.SetTrainable(Enum.GetValues<ParameterGroup>());
        var batch = new BatchBuilder(m.Vision.TokensPerImage, 64, m.Config.Llm.VocabSize).Build(
        [
            TinyWorld.Sample([1, 5, Llava.ImageTokenIndex, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 2], 10),
            TinyWorld.Sample([1, 11, 12, Llava.ImageTokenIndex, 13, 14, 2], 5),
            TinyWorld.Sample([1, 5, 6, 7, 2], 3),
        ]);
        int tokens = batch.KeyLengths.Sum();
        Assume.That(batch.LossRows, Has.Length.LessThan(tokens - 6), "rows no loss reads");
        var px = TinyWorld.Pixels(batch.ImageCount, m.Config, 4);
        using var arena = new Arena(Cpu, 64 << 20);
        (float[] Logits, double Text, double Vm, float[][] Grads) Step(bool lossRowsOnly)
        {
            arena.Reset();
            var tape = new Tape(Cpu, arena, record: true);
            foreach (var p in m.Parameters.All) if (p.Grad is { } g) Cpu.Fill(g, 0f);
            tape.Track(m.Parameters.All);
            var input = Ops.Input(tape, px, batch.ImageCount, 3, m.Config.Vision.ImageSize, m.Config.Vision.ImageSize);
            var o = m.Forward(tape, batch, input, vmLossWeight: 1, lossRowsOnly: lossRowsOnly);
            tape.Backward();
            return (o.Logits.ToArray(), o.Text.Mean, o.Vm.Mean, [.. m.Parameters.All.Select(p => p.Grad!.ToArray())]);
        }
        var whole = Step(false);
        var read = Step(true);
        int v = m.Config.Llm.VocabSize;
        Assert.That(read.Logits, Has.Length.EqualTo(batch.LossRows.Length * v));
        for (int i = 0; i < batch.LossRows.Length; i++)
            Assert.That(read.Logits.AsSpan(i * v, v).ToArray(), Is.EqualTo(whole.Logits.AsSpan(batch.LossRows[i] * v, v).ToArray()),
                        $"logits of row {batch.LossRows[i]}");
        Assert.That(whole.Vm, Is.GreaterThan(0));
        Assert.That(read.Text, Is.EqualTo(whole.Text).Within(1e-6).Percent);
        Assert.That(read.Vm, Is.EqualTo(whole.Vm).Within(1e-6).Percent);
        for (int i = 0; i < whole.Grads.Length; i++)
        {
            double scale = whole.Grads[i].Max(g => Math.Abs(g));
            Assert.That(scale, Is.GreaterThan(0), m.Parameters.All[i].Name);
            Assert.That(read.Grads[i], Is.EqualTo(whole.Grads[i]).Within(1e-5 * scale), m.Parameters.All[i].Name);
        }
    }

    [Test]
    public void OutputRowsMustBeAscendingTokenRows()
    {
        using var m = TinyWorld.Model(Cpu, TinyWorld.Config());
        int d = m.Config.Llm.HiddenSize;
        using var arena = new Arena(Cpu, 16 << 20);
        var tape = new Tape(Cpu, arena, record: false);
        var x = Ops.Input(tape, new float[2 * 4 * d], 2 * 4, d);
        int[] positions = [0, 1, 2, 3, 0, 1, 0, 0];
        Assert.That(() => m.Decoder.Forward(tape, x, 2, 4, positions, [4, 2], outputRows: [1, 6]),
                    Throws.ArgumentException.With.Message.Contains("output row 6 is padding"));
        Assert.That(() => m.Decoder.Forward(tape, x, 2, 4, positions, [4, 2], outputRows: [3, 1]),
                    Throws.ArgumentException.With.Message.Contains("output row 1 at 1 is not an ascending row"));
        Assert.That(m.Decoder.Forward(tape, x, 2, 4, positions, [4, 2], outputRows: [0, 3, 5]).Shape.ToString(),
                    Is.EqualTo(new Shape(3, d).ToString()));
    }

    [Test]
    public void TextOnlyBatchHasZeroVisualLossNotNaN()
    {
        using var m = TinyWorld.Model(Cpu, TinyWorld.Config());
        var batch = new BatchBuilder(m.Vision.TokensPerImage, 64, m.Config.Llm.VocabSize).Build([TinyWorld.Sample([1, 5, 6, 7, 2], 2)]);
        using var arena = new Arena(Cpu, 16 << 20);
        var tape = new Tape(Cpu, arena, record: true);
        foreach (var p in m.Parameters.All) p.Trainable = true;
        tape.Track(m.Parameters.All);
        var o = m.Forward(tape, batch, null);
        tape.Backward();
        Assert.That(o.Vm.Mean, Is.EqualTo(0));
        Assert.That(o.Vm.Count, Is.EqualTo(0));
        Assert.That(double.IsFinite(o.Total), Is.True);
        Assert.That(m.VmHead.Grad!.ToArray(), Is.All.EqualTo(0f));
    }

    [Test]
    public void FrozenGroupsReceiveNoGradient()
    {
        using var m = TinyWorld.Model(Cpu, TinyWorld.Config());
        m.Parameters.SetTrainable([ParameterGroup.Projector]);
        var batch = TwoSampleBatch(m);
        using var arena = new Arena(Cpu, 64 << 20);
        var tape = new Tape(Cpu, arena, record: true);
        tape.Track(m.Parameters.All);
        var px = TinyWorld.Pixels(batch.ImageCount, m.Config, 3);
        var pixels = Ops.Input(tape, px, batch.ImageCount, 3, m.Config.Vision.ImageSize, m.Config.Vision.ImageSize);
        m.Forward(tape, batch, pixels);
        tape.Backward();
        foreach (var p in m.Parameters.All)
        {
            if (ParameterStore.GroupOf(p.Name) == ParameterGroup.Projector)
                Assert.That(p.Grad!.ToArray().Any(x => x != 0), Is.True, p.Name);
            else
                Assert.That(p.Grad, Is.Null, p.Name);
        }
    }

    [TestCase(long.MaxValue)]
    [TestCase(20_000L)]
    public void CheckpointRoundTripGivesIdenticalLogits(long shardBytes)
    {
        using var m = TinyWorld.Model(Cpu, TinyWorld.Config(), seed: 11);
        string dir = Path.Combine(Path.GetTempPath(), "vwlmm-ckpt-" + Guid.NewGuid().ToString("N"));
        try
        {
            ModelCheckpoint.Save(m, dir, shardBytes);
            Assert.That(File.Exists(Path.Combine(dir, shardBytes == long.MaxValue ? "model.safetensors" : "model.safetensors.index.json")), Is.True);
            using var loaded = ModelCheckpoint.Load(Cpu, dir);
            var batch = TwoSampleBatch(m);
            var px = TinyWorld.Pixels(batch.ImageCount, m.Config, 3);
            using var arena = new Arena(Cpu, 64 << 20);
            float[] Logits(VwLmmModel model)
            {
                arena.Reset();
                var tape = new Tape(Cpu, arena, record: false);
                var pixels = Ops.Input(tape, px, batch.ImageCount, 3, 32, 32);
                return model.Forward(tape, batch, pixels).Logits.ToArray();
            }
            Assert.That(Logits(loaded), Is.EqualTo(Logits(m)));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
