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

/// <summary>The whole model: gradients by finite differences through every path (text, VM loss, pif, detach,
/// reverse KL), the shift by one, text-only batches, frozen groups and checkpoint round trips.</summary>
public class ModelTests : CpuFixture
{
    private static Batch TwoSampleBatch(VwLmmModel m) =>
        new BatchBuilder(m.Vision.TokensPerImage, 64, m.Config.Llm.VocabSize).Build(
        [
            TinyWorld.Sample([1, 5, Llava.ImageTokenIndex, 7, 8, 9, 2], 3),
            TinyWorld.Sample([1, 11, 12, Llava.ImageTokenIndex, 13, 2], 4),
        ]);

    private double Loss(VwLmmModel m, Batch batch, float[] px, Arena arena)
    {
        arena.Reset();
        var tape = new Tape(Cpu, arena, record: false);
        var pixels = Ops.Input(tape, px, batch.ImageCount, 3, m.Config.Vision.ImageSize, m.Config.Vision.ImageSize);
        return m.Forward(tape, batch, pixels).Total;
    }

    // Directional derivatives per parameter group: (f(θ+εu) − f(θ−εu))/2ε against g·u for a random unit u over the group.
    [TestCase(false, false, false)]
    [TestCase(true, false, false)]
    [TestCase(false, true, false)]
    [TestCase(false, false, true)]
    public void WholeModelGradientsMatchFiniteDifferences(bool pif, bool detach, bool reverse)
    {
        using var m = TinyWorld.Model(Cpu, TinyWorld.Config(pif, detach, reverse), scale: 4);
        var batch = TwoSampleBatch(m);
        Assert.That(batch.VmPairCount, Is.GreaterThan(0));
        var px = TinyWorld.Pixels(batch.ImageCount, m.Config, 3);
        using var arena = new Arena(Cpu, 64 << 20);
        foreach (var p in m.Parameters.All) p.Trainable = true;
        var tape = new Tape(Cpu, arena, record: true);
        tape.Track(m.Parameters.All);
        var pixels = Ops.Input(tape, px, batch.ImageCount, 3, m.Config.Vision.ImageSize, m.Config.Vision.ImageSize);
        var output = m.Forward(tape, batch, pixels);
        Assert.That(output.Vm.Count, Is.EqualTo(batch.VmPairCount));
        tape.Backward();

        var rng = new Random(5);
        // A detached target is deliberately not the loss's gradient for the labeller's inputs: only the LLM side is checked.
        var groups = detach ? [ParameterGroup.Llm, ParameterGroup.VmHead] : Enum.GetValues<ParameterGroup>();
        foreach (var group in groups)
        {
            var ps = m.Parameters.InGroup(group).ToList();
            var dirs = ps.Select(p => OpHarness.Random(rng.Next(), p.Numel)).ToList();
            double norm = Math.Sqrt(dirs.Sum(d => d.Sum(x => (double)x * x)));
            foreach (var d in dirs)
                for (int j = 0; j < d.Length; j++) d[j] = (float)(d[j] / norm);
            double analytic = 0;
            for (int i = 0; i < ps.Count; i++)
            {
                var g = ps[i].Grad!.ToArray();
                for (int j = 0; j < g.Length; j++) analytic += g[j] * (double)dirs[i][j];
            }
            var originals = ps.Select(p => p.Value.ToArray()).ToList();
            double Shifted(double eps)
            {
                for (int i = 0; i < ps.Count; i++)
                {
                    var a = (float[])originals[i].Clone();
                    for (int j = 0; j < a.Length; j++) a[j] += (float)(eps * dirs[i][j]);
                    Cpu.Upload<float>(ps[i].Value, a);
                }
                return Loss(m, batch, px, arena);
            }
            // Four-point stencil: O(h⁴) truncation keeps h large enough that float rounding in the loss stays negligible.
            const double h = 2e-3;
            double numeric = (8 * (Shifted(h) - Shifted(-h)) - (Shifted(2 * h) - Shifted(-2 * h))) / (12 * h);
            for (int i = 0; i < ps.Count; i++) Cpu.Upload<float>(ps[i].Value, originals[i]);
            if (group == ParameterGroup.VmHead && detach && !pif)
                Assert.That(analytic, Is.EqualTo(0), "a detached target must send no gradient into the VM head");
            else
                Assert.That(analytic, Is.EqualTo(numeric).Within(1e-3 + 1e-2 * Math.Abs(numeric)),
                            $"{group}: analytic {analytic:G6} vs finite difference {numeric:G6}");
        }
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
