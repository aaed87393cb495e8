using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Core;

using Ops = VwLmm.Core.Ops;

/// <summary>
/// Stacked parameters and <see cref="Ops.LinearStack"/>: the stack gives the bits of the separate linear layers it
/// replaces — forward, the input's gradient and every weight's and bias's gradient — over few rows (decoding's
/// matrix-vector path) and many (sgemm); members are views of the stack; <see cref="Ops.Select"/> checks its index.
/// </summary>
public class ParameterStackTests : CpuFixture
{
    private const int K = 24, N = 40, In = 16;

    // One layer of input, then three layers of one shape on it, combined so that each gets its own gradient:
    // loss = CE(gelu(y0) + swiglu(y1, y2)), the three with biases or without. Returns the loss and every parameter's
    // gradient.
    private (double Loss, float[][] Grads) Run(int rows, bool stacked, bool biased)
    {
        var w0 = new Parameter(Cpu, "w0", new Shape(K, In)) { Trainable = true };
        Cpu.Upload<float>(w0.Value, OpHarness.Random(1, K * In, 0.5f));
        string[] names = ["a", "b", "c"];
        var stack = stacked ? new ParameterStack(Cpu, names, new Shape(N, K)) : null;
        var layers = stack?.Members.ToArray() ?? names.Select(n => new Parameter(Cpu, n, new Shape(N, K))).ToArray();
        string[] biasNames = ["a.bias", "b.bias", "c.bias"];
        var biasStack = stacked && biased ? new ParameterStack(Cpu, biasNames, new Shape(N)) : null;
        var biases = biasStack?.Members.ToArray() ?? (biased ? biasNames.Select(n => new Parameter(Cpu, n, new Shape(N))).ToArray() : []);
        for (int g = 0; g < 3; g++)
        {
            Cpu.Upload<float>(layers[g].Value, OpHarness.Random(2 + g, N * K, 0.4f));
            layers[g].Trainable = true;
            if (!biased) continue;
            Cpu.Upload<float>(biases[g].Value, OpHarness.Random(5 + g, N, 0.4f));
            biases[g].Trainable = true;
        }
        using var arena = new Arena(Cpu, 1 << 22);
        var tape = new Tape(Cpu, arena, record: true);
        tape.Track([w0, .. layers, .. biases]);
        var x = Ops.Linear(tape, Ops.Input(tape, OpHarness.Random(9, rows * In), rows, In), w0.Value);
        Tensor y0, y1, y2;
        Tensor? Bias(int g) => biased ? biases[g].Value : null;
        if (stack is null)
            (y0, y1, y2) = (Ops.Linear(tape, x, layers[0].Value, Bias(0)), Ops.Linear(tape, x, layers[1].Value, Bias(1)),
                            Ops.Linear(tape, x, layers[2].Value, Bias(2)));
        else
        {
            var y = Ops.LinearStack(tape, x, stack.Value, biasStack?.Value);
            Assert.That(y.Shape, Is.EqualTo(new Shape(3, rows, N)));
            (y0, y1, y2) = (Ops.Select(tape, y, 0), Ops.Select(tape, y, 1), Ops.Select(tape, y, 2));
        }
        var logits = Ops.Add(tape, Ops.Activation(tape, y0, Activation.Gelu), Ops.SwiGlu(tape, y1, y2));
        var loss = Ops.CrossEntropy(tape, logits, Enumerable.Range(0, rows).Select(r => (r * 7) % N).ToArray());
        tape.Backward();
        var grads = new[] { w0 }.Concat(layers).Concat(biases).Select(p => p.Grad!.ToArray()).ToArray();
        w0.Dispose();
        if (stack is null) foreach (var p in layers.Concat(biases)) p.Dispose();
        else
        {
            stack.Dispose();
            biasStack?.Dispose();
        }
        return (loss.Mean, grads);
    }

    [Test]
    public void LinearStackGivesTheBitsOfSeparateLinearLayers([Values(1, 3, 37)] int rows, [Values] bool biased)
    {
        var (expectedLoss, expected) = Run(rows, stacked: false, biased);
        var (loss, actual) = Run(rows, stacked: true, biased);
        Assert.That(loss, Is.EqualTo(expectedLoss), "loss");
        string[] what = ["dW of the input layer (carries dx)", "dW a", "dW b", "dW c", "db a", "db b", "db c"];
        Assert.That(actual, Has.Length.EqualTo(biased ? 7 : 4));
        for (int i = 0; i < expected.Length; i++)
            Assert.That(actual[i], Is.EqualTo(expected[i]).AsCollection, what[i]);
        Assert.That(expected.Skip(1).All(g => g.Any(v => v != 0)), "every layer gets a gradient");
    }

    [Test]
    public void MembersAreSlicesOfTheStack()
    {
        using var stack = new ParameterStack(Cpu, ["p", "q"], new Shape(2, 3));
        Cpu.Upload<float>(stack.Members[1].Value, [1, 2, 3, 4, 5, 6]);
        Assert.That(stack.Value.ToArray(), Is.EqualTo(new float[] { 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6 }));
        Assert.That(stack.Grad, Is.Null);
        stack.Members[0].Trainable = true;
        Assert.That(stack.Grad!.Shape, Is.EqualTo(new Shape(2, 2, 3)));
        Assert.That(stack.Members[0].Grad!.Ptr, Is.EqualTo(stack.Grad.Ptr));
        stack.Members[1].Trainable = true;
        Assert.That(stack.Members[1].Grad!.Ptr, Is.EqualTo(stack.Grad.Ptr + 6 * sizeof(float)));
        Assert.That(stack.Members.Select(m => m.Name), Is.EqualTo(new[] { "p", "q" }));
    }

    [Test]
    public void SelectOutsideTheStackNamesTheIndex()
    {
        using var arena = new Arena(Cpu, 1 << 16);
        var tape = new Tape(Cpu, arena, record: false);
        var y = Ops.Input(tape, new float[12], 3, 4);
        Assert.That(Ops.Select(tape, y, 2).ToArray(), Has.Length.EqualTo(4));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Ops.Select(tape, y, 3));
        Assert.That(e!.Message, Does.Contain("Select: index 3 is outside [0, 3)"));
    }
}
