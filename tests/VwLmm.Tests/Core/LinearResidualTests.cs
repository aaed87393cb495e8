using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Core;

using Ops = VwLmm.Core.Ops;

/// <summary>
/// <see cref="Ops.Linear"/> with a residual: the residual stream's update in one product gives the bits of
/// Add(residual, Linear(x, W, b)) — forward, and the gradients of the stream, the layer's input, weight and bias — over
/// few rows (the matrix-vector path) and many, with K past one block of the CPU's GEMM; and it checks the residual's shape.
/// </summary>
public class LinearResidualTests : CpuFixture
{
    private const int D = 40, K = 300;

    // h = W0·input is the residual stream; y = h + (gelu(h)·Wᵀ + b), loss = CE(y). Returns the loss and the gradients of
    // W0 (which carries the stream's and the layer input's), W and b.
    private (double Loss, float[][] Grads) Run(int rows, bool fused, bool biased)
    {
        var w0 = Trainable("w0", 1, K, D);
        var w = Trainable("w", 2, D, K);
        var b = biased ? Trainable("b", 3, D) : null;
        using var arena = new Arena(Cpu, 1 << 22);
        var tape = new Tape(Cpu, arena, record: true);
        tape.Track(b is null ? [w0, w] : [w0, w, b]);
        var h = Ops.Linear(tape, Ops.Input(tape, OpHarness.Random(9, rows * D), rows, D), w0.Value);
        var a = Ops.Activation(tape, h, Activation.Gelu);
        var wide = Ops.Linear(tape, a, Trainable("up", 4, K, K).Value);
        var y = fused
            ? Ops.Linear(tape, wide, w.Value, b?.Value, residual: Ops.Linear(tape, a, Trainable("down", 5, D, K).Value))
            : Ops.Add(tape, Ops.Linear(tape, a, Trainable("down", 5, D, K).Value), Ops.Linear(tape, wide, w.Value, b?.Value));
        var loss = Ops.CrossEntropy(tape, y, Enumerable.Range(0, rows).Select(r => (r * 7) % D).ToArray());
        tape.Backward();
        var grads = (b is null ? new[] { w0, w } : [w0, w, b]).Select(p => p.Grad!.ToArray()).ToArray();
        return (loss.Mean, grads);
    }

    private readonly List<Parameter> _made = [];

    private Parameter Trainable(string name, int seed, params int[] dims)
    {
        var p = new Parameter(Cpu, name, new Shape(dims)) { Trainable = true };
        Cpu.Upload<float>(p.Value, OpHarness.Random(seed, p.Numel, 0.3f));
        _made.Add(p);
        return p;
    }

    [TearDown]
    public void DisposeParameters()
    {
        foreach (var p in _made) p.Dispose();
        _made.Clear();
    }

    [Test]
    public void ResidualInTheProductGivesTheBitsOfAdd([Values(1, 3, 37)] int rows, [Values] bool biased)
    {
        var (expectedLoss, expected) = Run(rows, fused: false, biased);
        var (loss, actual) = Run(rows, fused: true, biased);
        Assert.That(loss, Is.EqualTo(expectedLoss), "loss");
        string[] what = ["dW0 (the stream's and the layer input's gradients)", "dW", "db"];
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.That(actual[i], Is.EqualTo(expected[i]).AsCollection, what[i]);
            Assert.That(expected[i].Any(v => v != 0), $"{what[i]} is not all zero");
        }
    }

    [Test]
    public void ResidualOfAnotherShapeIsRejected()
    {
        using var arena = new Arena(Cpu, 1 << 16);
        var tape = new Tape(Cpu, arena, record: false);
        var x = Ops.Input(tape, new float[3 * 4], 3, 4);
        var w = Ops.Input(tape, new float[5 * 4], 5, 4);
        var e = Assert.Throws<ArgumentException>(() => Ops.Linear(tape, x, w, residual: Ops.Input(tape, new float[3 * 4], 3, 4)));
        Assert.That(e!.Message, Does.Contain("Linear: residual has shape [3,4], expected [3,5]"));
    }
}
