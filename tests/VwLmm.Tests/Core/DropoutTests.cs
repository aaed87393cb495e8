using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Tests.Ops;
using VwLmm.Tests.Ops.Reference;

namespace VwLmm.Tests.Core;

// The test namespace VwLmm.Tests.Ops would otherwise shadow the op layer.
using Ops = VwLmm.Core.Ops;

/// <summary>The dropout mask's generator against published values, and Ops.Dropout on a tape against finite differences.</summary>
public class DropoutTests : CpuFixture
{
    private const int N = 6, In = 40, V = 5;

    /// <summary>SplitMix64 from state 0 (Steele, Lea and Flood 2014; the reference generator on prng.di.unimi.it).</summary>
    [Test]
    public void SplitMix64GivesThePublishedStream()
    {
        Assert.That(Rng.SplitMix64(0, 0), Is.EqualTo(0xE220A8397B1DCDAFUL));
        Assert.That(Rng.SplitMix64(0, 1), Is.EqualTo(0x6E789E6AA1B965F4UL));
        Assert.That(Rng.SplitMix64(0, 2), Is.EqualTo(0x06C45D188009454FUL));
    }

    [Test]
    public void RateZeroIsTheIdentityAndRatesOutsideZeroToOneAreRefused()
    {
        using var arena = new Arena(Cpu, 1 << 16);
        var tape = new Tape(Cpu, arena, record: false);
        var x = Ops.Input(tape, new float[8], 8);
        Assert.That(Ops.Dropout(tape, x, 0, 7), Is.SameAs(x));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ops.Dropout(tape, x, 1, 7));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ops.Dropout(tape, x, -0.1f, 7));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ops.Dropout(tape, x, float.NaN, 7));
    }

    /// <summary>loss = CE(dropout(p)·wᵀ): the gradient reaching p is the forward's mask and scale applied to the
    /// gradient at the output, for a seed whose upper half is not zero (the tape keeps the seed in two ints).</summary>
    [Test]
    public void BackwardAppliesTheForwardMask([Values(0.2f, 0.6f)] float rate)
    {
        const ulong seed = 0x8000_0001_2345_6789UL;
        using var p = new Parameter(Cpu, "p", new Shape(N, In));
        var host = OpHarness.Random(40, N * In);
        Cpu.Upload<float>(p.Value, host);
        p.Trainable = true;
        var w = OpHarness.Random(41, V * In, 0.5f);
        int[] targets = [1, 4, -100, 0, 2, 3];

        using var arena = new Arena(Cpu, 1 << 20);
        var tape = new Tape(Cpu, arena, record: true);
        tape.Track([p]);
        var logits = Ops.Linear(tape, Ops.Dropout(tape, p.Value, rate, seed), Ops.Input(tape, w, V, In));
        var loss = Ops.CrossEntropy(tape, logits, targets);
        tape.Backward();

        var keep = ElementwiseReference.DropoutKeeps(seed, N * In, rate);
        double scale = 1f / (1f - rate);
        var wd = OpHarness.ToDouble(w);
        double Loss(double[] x)
        {
            double total = 0;
            int count = 0;
            for (int n = 0; n < N; n++)
            {
                if (targets[n] < 0) continue;
                var z = new double[V];
                for (int v = 0; v < V; v++)
                    for (int i = 0; i < In; i++)
                        if (keep[n * In + i]) z[v] += wd[v * In + i] * x[n * In + i] * scale;
                double max = z.Max(), sum = z.Sum(l => Math.Exp(l - max));
                total += max + Math.Log(sum) - z[targets[n]];
                count++;
            }
            return total / count;
        }
        var x0 = OpHarness.ToDouble(host);
        Assert.That(loss.Mean, Is.EqualTo(Loss(x0)).Within(1e-5));
        var grad = p.Grad!.ToArray();
        OpHarness.AssertClose("dp", OpHarness.FiniteDifference(Loss, x0), grad, 1e-9);
        for (int i = 0; i < grad.Length; i++)
            if (!keep[i]) Assert.That(grad[i], Is.EqualTo(0f), $"dropped element {i} got a gradient");
    }
}
