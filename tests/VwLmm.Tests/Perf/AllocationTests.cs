using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Model;
using VwLmm.Tests.Model;

namespace VwLmm.Tests.Perf;

using Ops = VwLmm.Core.Ops;

/// <summary>
/// A steady-state train step (forward with both losses, backward, AdamW with clipping) and a steady-state decode
/// allocate no managed memory, and the recycling that makes this so changes no result. The suite runs checked arenas
/// (<see cref="CheckedArenas"/>); these tests build recycling ones.
/// </summary>
public class AllocationTests : CpuFixture
{
    private sealed class Stepper : IDisposable
    {
        private readonly VwLmmModel _model;
        private readonly Tape _tape;
        private readonly AdamW _adam;
        private readonly Batch _batch;
        private readonly float[] _pixels;

        public Stepper(VwLmmModel model, Tape tape)
        {
            _model = model;
            _tape = tape;
            _adam = new AdamW(model.Backend, model.Parameters.All, weightDecay: 0.01f);
            _batch = new BatchBuilder(model.Vision.TokensPerImage, 64, model.Config.Llm.VocabSize).Build(
            [
                TinyWorld.Sample([1, 5, Llava.ImageTokenIndex, 7, 8, 9, 2], 3),
                TinyWorld.Sample([1, 11, 12, Llava.ImageTokenIndex, 13, 2], 4),
            ]);
            _pixels = TinyWorld.Pixels(_batch.ImageCount, model.Config, seed: 3);
        }

        public double Step(Tape? fresh = null)
        {
            var tape = fresh ?? _tape;
            _adam.ZeroGrad();
            tape.Reset();
            tape.Track(_model.Parameters.All);
            var v = _model.Config.Vision;
            var output = _model.Forward(tape, _batch, Ops.Input(tape, _pixels, _batch.ImageCount, v.NumChannels, v.ImageSize, v.ImageSize));
            tape.Backward();
            _adam.Step(1e-3f, maxNorm: 1f);
            return output.Total;
        }

        public void Dispose() => _adam.Dispose();
    }

    private VwLmmModel TrainableModel(bool pif)
    {
        var m = TinyWorld.Model(Cpu, TinyWorld.Config(pif: pif));
        m.Parameters.SetTrainable(Enum.GetValues<ParameterGroup>());
        return m;
    }

    [TestCase(false)]
    [TestCase(true)]
    public void WarmTrainStepAllocatesNothing(bool pif)
    {
        using var m = TrainableModel(pif);
        using var arena = new Arena(Cpu, 64L << 20, recycleHandles: true);
        using var stepper = new Stepper(m, new Tape(Cpu, arena, record: true));
        for (int i = 0; i < 3; i++) stepper.Step();
        // The calling thread issues every op, records every node and sums the losses; the pool's workers run
        // struct jobs. (vwlmm bench reports the all-thread count, GC.GetTotalAllocatedBytes, for the same step.)
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 3; i++) stepper.Step();
        long perStep = (GC.GetAllocatedBytesForCurrentThread() - before) / 3;
        Assert.That(perStep, Is.Zero, "managed bytes allocated per warm train step");
    }

    [Test]
    public void DecodeStepAllocatesNothing()
    {
        var cfg = TinyWorld.Config();
        using var m = TinyWorld.Model(Cpu, cfg, seed: 3, scale: 6);
        int[] ids = [1, 5, Llava.ImageTokenIndex, 7, 8];
        var prompt = new TokenizedConversation[] { new(ids, new int[ids.Length]) };
        var px = TinyWorld.Pixels(1, cfg, 1);
        using var gen = new Generator(m, new Arena(Cpu, 256L << 20, recycleHandles: true));
        long Bytes(int tokens)
        {
            var opts = new SamplingOptions { MaxNewTokens = tokens };
            gen.Generate(prompt, px, opts);
            long before = GC.GetAllocatedBytesForCurrentThread();
            gen.Generate(prompt, px, opts);
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }
        // Per-generation costs (batch, cache, output lists sized to the token budget) grow with the budget; the
        // difference of two generations that share them is what the extra 32 decode steps allocate.
        long shortRun = Bytes(8), longRun = Bytes(40);
        long listGrowth = 32 * sizeof(int) * 2; // the two runs' output lists (returned list and array) differ by 32 ints each
        Assert.That(longRun - shortRun, Is.LessThanOrEqualTo(listGrowth), "managed bytes for 32 more decode steps");
    }

    [Test]
    public void RecyclingReusedTapeTrainsExactlyLikeACheckedFreshTapePerStep()
    {
        using var a = TrainableModel(pif: false);
        using var b = TrainableModel(pif: false);
        using var arenaA = new Arena(Cpu, 64L << 20, recycleHandles: true);
        using var arenaB = new Arena(Cpu, 64L << 20, recycleHandles: false);
        using var reused = new Stepper(a, new Tape(Cpu, arenaA, record: true));
        using var fresh = new Stepper(b, new Tape(Cpu, arenaB, record: true));
        for (int step = 0; step < 4; step++)
        {
            double la = reused.Step();
            double lb = fresh.Step(new Tape(Cpu, arenaB, record: true));
            Assert.That(la, Is.EqualTo(lb), $"loss of step {step}");
        }
        for (int i = 0; i < a.Parameters.All.Count; i++)
            Assert.That(a.Parameters.All[i].Value.ToArray(), Is.EqualTo(b.Parameters.All[i].Value.ToArray()), a.Parameters.All[i].Name);
    }

    [Test]
    public void RecycledHandleIsFreedUntilTheArenaReusesIt()
    {
        using var arena = new Arena(Cpu, 1 << 16, recycleHandles: true);
        var first = arena.Allocate(2, 3);
        arena.Reset();
        Assert.That(first.IsAlive, Is.False);
        Assert.Throws<InvalidOperationException>(() => arena.View(first, 0, new Shape(6)), "a view of a freed tensor");
        var second = arena.Allocate(4);
        Assert.That(second, Is.SameAs(first), "the arena hands out its first handle again");
        Assert.That(second.IsAlive && second.Shape == new Shape(4), Is.True);
    }

    [Test]
    public void ShapeAboveMaxRankIsRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => _ = new Shape(1, 1, 1, 1, 1, 1, 1, 1, 1))!;
        Assert.That(e.Message, Does.Contain("rank 9"));
    }
}
