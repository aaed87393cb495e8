using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Tests.Ops.Reference;

namespace VwLmm.Tests.Ops;

/// <summary>Fused AdamW over several steps and the deterministic sum of squares (global grad norm).</summary>
public abstract class OptimizerOpTests : BackendOpTests
{
    private static readonly int[] Sizes = [5, 77 * 83, 2048 * 17 + 13];

    [Test]
    public void AdamWMatchesReferenceOverThreeSteps([ValueSource(nameof(Sizes))] int n)
    {
        const float lr = 1e-2f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f, scale = 0.5f;
        using var s = NewScope();
        var p0 = OpHarness.Random(1, n);
        var p = s.Upload("param", p0, n);
        var m = s.Zeros("m", n);
        var v = s.Zeros("v", n);
        var grad = s.New("grad", n);
        double[] rp = D(p0), rm = new double[n], rv = new double[n];
        for (int step = 1; step <= 3; step++)
        {
            var g = OpHarness.Random(10 + step, n, 3f);
            Backend.Upload<float>(grad, g);
            Backend.AdamW(p, grad, m, v, n, lr, beta1, beta2, eps, wd, step, scale);
            OptimizerReference.AdamW(rp, rm, rv, g, lr, beta1, beta2, eps, wd, step, scale);
            OpHarness.AssertClose($"param after step {step}", rp, p.ToArray(), 1e-12);
            OpHarness.AssertClose($"m after step {step}", rm, m.ToArray(), 1e-12);
            OpHarness.AssertClose($"v after step {step}", rv, v.ToArray(), 1e-12);
        }
        s.CheckGuards();
    }

    [Test]
    public void SumSquaresWritesOnlyItsSlot([ValueSource(nameof(Sizes))] int n)
    {
        using var s = NewScope();
        var x = OpHarness.Random(20, n, 2f);
        var result = s.Upload("result", [1f, 2f, 3f, 4f], 4);
        Backend.SumSquares(result, 2, s.Upload("x", x, n), n);
        // Stored as float, so the double reference rounded to float is the best possible answer.
        double expected = OptimizerReference.SumSquares(x);
        OpHarness.AssertClose("sum of squares", [1, 2, expected, 4], result.ToArray(), 1e-14);
        Assert.That(Math.Abs(result.ToArray()[2] - expected), Is.LessThanOrEqualTo(Math.Abs(expected) * 6e-8), "correctly rounded");
        s.CheckGuards();
    }

    /// <summary>
    /// The parameter-list ops against the per-tensor ops on the same backend, bit for bit, over entries of sizes that
    /// straddle the 8192-element chunks of the list kernels (the per-tensor ops are checked against the double reference
    /// above). Guards around every buffer catch a list kernel writing past an entry.
    /// </summary>
    [Test]
    public void ParameterListOpsEqualThePerTensorOps()
    {
        const float lr = 1e-2f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, scale = 0.5f;
        int[] sizes = [5, 8192, 8193, 1, 2048 * 17 + 13, 64];
        float[] decay = [0.1f, 0f, 0.1f, 0f, 0.05f, 0.1f];
        using var s = NewScope();
        Tensor[] Make(string name, int seed, float spread) =>
            [.. sizes.Select((n, i) => s.Upload($"{name}{i}", OpHarness.Random(seed + i, n, spread), n))];
        // Two identical sets of state: one updated entry by entry, one through the list.
        var (values, grads, m, v) = (Make("p", 100, 1f), Make("g", 200, 3f), Make("m", 300, 0.1f), Make("v", 400, 0.01f));
        var (values2, grads2, m2, v2) = (Make("p", 100, 1f), Make("g", 200, 3f), Make("m", 300, 0.1f), Make("v", 400, 0.01f));
        for (int i = 0; i < sizes.Length; i++) Backend.AdamW(values[i], grads[i], m[i], v[i], sizes[i], lr, beta1, beta2, eps, decay[i], 3, scale);
        using var list = new ParameterList(values2, grads2, m2, v2, decay);
        Backend.AdamW(list, lr, beta1, beta2, eps, 3, scale);
        for (int i = 0; i < sizes.Length; i++)
        {
            Assert.That(values2[i].ToArray(), Is.EqualTo(values[i].ToArray()), $"param {i} (n = {sizes[i]})");
            Assert.That(m2[i].ToArray(), Is.EqualTo(m[i].ToArray()), $"m {i}");
            Assert.That(v2[i].ToArray(), Is.EqualTo(v[i].ToArray()), $"v {i}");
        }

        var sums = s.Zeros("sums", sizes.Length);
        var listSums = s.Zeros("list sums", sizes.Length);
        for (int i = 0; i < sizes.Length; i++) Backend.SumSquares(sums, i, grads[i], sizes[i]);
        Backend.GradientSumsOfSquares(listSums, list);
        Assert.That(listSums.ToArray(), Is.EqualTo(sums.ToArray()), "sums of squares");
        Assert.That(sums.ToArray(), Has.All.Positive);

        Backend.ZeroGradients(list);
        for (int i = 0; i < sizes.Length; i++)
        {
            Assert.That(grads2[i].ToArray(), Has.All.EqualTo(0f), $"grad {i} zeroed");
            Assert.That(values2[i].ToArray(), Is.EqualTo(values[i].ToArray()), $"param {i} untouched by the zeroing");
        }
        s.CheckGuards();
    }

    /// <summary>
    /// The moving average of parameters against a double reference over three updates (each rounds the decayed average
    /// and then the added share), then copied into the parameters; parameters straddle the list kernels' chunk size.
    /// </summary>
    [Test]
    public void ParameterAverageMatchesReference()
    {
        const float decay = 0.8f;
        int[] sizes = [5, 8193, 77 * 83];
        var ps = sizes.Select((n, i) => new Parameter(Backend, $"p{i}", new Shape(n)) { Trainable = true }).ToArray();
        try
        {
            var reference = new double[sizes.Length][];
            for (int i = 0; i < ps.Length; i++)
            {
                var v = OpHarness.Random(500 + i, sizes[i]);
                ps[i].SetValues(v);
                reference[i] = D(v);
            }
            using var average = new ParameterAverage(Backend, ps, decay);
            for (int step = 1; step <= 3; step++)
            {
                for (int i = 0; i < ps.Length; i++)
                {
                    var v = OpHarness.Random(600 + 10 * step + i, sizes[i], 2f);
                    ps[i].SetValues(v);
                    for (int j = 0; j < v.Length; j++) reference[i][j] = decay * reference[i][j] + (1.0 - decay) * v[j];
                }
                average.Update();
                for (int i = 0; i < ps.Length; i++)
                    OpHarness.AssertClose($"average {i} after update {step}", reference[i], average.Average(i).ToArray(), 1e-12);
            }
            average.CopyToParameters();
            for (int i = 0; i < ps.Length; i++)
                Assert.That(ps[i].Value.ToArray(), Is.EqualTo(average.Average(i).ToArray()), $"parameter {i} holds its average");
        }
        finally
        {
            foreach (var p in ps) p.Dispose();
        }
    }

    protected static float SumSquaresOn(IBackend backend, int n)
    {
        using var s = new OpHarness.Scope(backend);
        var result = s.Zeros("result", 1);
        backend.SumSquares(result, 0, s.Upload("x", OpHarness.Random(21, n, 100f), n), n);
        return result.ToArray()[0];
    }

    [Test]
    public void SumSquaresIsBitIdenticalAcrossRuns()
    {
        float first = SumSquaresOn(Backend, 300_007), second = SumSquaresOn(Backend, 300_007);
        Assert.That(BitConverter.SingleToInt32Bits(second), Is.EqualTo(BitConverter.SingleToInt32Bits(first)));
    }
}

public sealed class CpuOptimizerOpTests : OptimizerOpTests
{
    protected override IBackend CreateBackend() => new Cpu.CpuBackend(2);

    [Test]
    public void SumSquaresIsIndependentOfThreadCount()
    {
        using var single = new Cpu.CpuBackend(1);
        float one = SumSquaresOn(single, 300_007), two = SumSquaresOn(Backend, 300_007);
        Assert.That(BitConverter.SingleToInt32Bits(two), Is.EqualTo(BitConverter.SingleToInt32Bits(one)));
    }
}
