using NUnit.Framework;
using VwLmm.Core;

namespace VwLmm.Tests.Core;

/// <summary>AdamW over its parameter list: frozen parameters stay put, and a change of the trainable set between steps
/// takes effect at the next call (the list is rebuilt); ParameterList rejects entries that do not line up.</summary>
public class AdamWTests : CpuFixture
{
    private Parameter Param(string name, params int[] dims)
    {
        var p = new Parameter(Cpu, name, new Shape(dims)) { Trainable = true };
        Cpu.Upload<float>(p.Value, Enumerable.Range(1, (int)p.Numel).Select(i => (float)i).ToArray());
        return p;
    }

    private void SetGrad(Parameter p, float value) =>
        Cpu.Upload<float>(p.Grad!, Enumerable.Repeat(value, (int)p.Numel).ToArray());

    [Test]
    public void OnlyTrainableParametersMoveAndTheSetMayChange()
    {
        using var a = Param("a", 2, 3);
        using var b = Param("b", 4);
        using var adam = new AdamW(Cpu, [a, b]);
        b.Trainable = false;
        adam.ZeroGrad();
        SetGrad(a, 1f);
        SetGrad(b, 5f); // a stale gradient on the frozen parameter: neither the norm nor the update may see it
        var b0 = b.Value.ToArray();
        var a0 = a.Value.ToArray();
        double norm = adam.Step(0.1f);
        Assert.That(norm, Is.EqualTo(Math.Sqrt(6)).Within(1e-12), "the norm covers the trainable gradient only");
        Assert.That(b.Value.ToArray(), Is.EqualTo(b0), "frozen b");
        Assert.That(a.Value.ToArray(), Is.Not.EqualTo(a0), "a moved");

        b.Trainable = true;
        adam.ZeroGrad();
        Assert.That(a.Grad!.ToArray(), Has.All.EqualTo(0f));
        SetGrad(b, 2f);
        var a1 = a.Value.ToArray();
        adam.Step(0.1f);
        Assert.That(b.Value.ToArray(), Is.Not.EqualTo(b0), "b moves once trainable again");
        // a's gradient is zero now, but its first moment from step 1 still moves it.
        Assert.That(a.Value.ToArray(), Is.Not.EqualTo(a1));
    }

    /// <summary>Decoupled weight decay: with a zero gradient Adam's step is 0, so a matrix becomes θ(1 − lr·wd) and a
    /// vector (norms, biases) stays as it was.</summary>
    [Test]
    public void WeightDecayShrinksMatricesOnly()
    {
        using var a = Param("a", 2, 3);
        using var b = Param("b", 4);
        using var adam = new AdamW(Cpu, [a, b], weightDecay: 0.25f);
        adam.ZeroGrad();
        float[] a0 = a.Value.ToArray(), b0 = b.Value.ToArray();
        adam.Step(0.1f);
        Assert.That(a.Value.ToArray(), Is.EqualTo(a0.Select(x => x * (1 - 0.1 * 0.25))).Within(1e-6));
        Assert.That(b.Value.ToArray(), Is.EqualTo(b0));
    }

    [TestCase(float.NaN)]
    [TestCase(float.PositiveInfinity)]
    public void ANonFiniteGradientUpdatesNothing(float bad)
    {
        using var a = Param("a", 2, 3);
        using var b = Param("b", 4);
        using var adam = new AdamW(Cpu, [a, b], weightDecay: 0.1f);
        adam.ZeroGrad();
        SetGrad(a, 1f);
        SetGrad(b, 1f);
        adam.Step(0.1f, maxNorm: 1f);
        var (am, av) = a.Moments();
        float[] a1 = a.Value.ToArray(), b1 = b.Value.ToArray(), m1 = am.ToArray(), v1 = av.ToArray();
        SetGrad(b, bad);
        Assert.That(adam.Step(0.1f, maxNorm: 1f), Is.NaN.Or.EqualTo(double.PositiveInfinity));
        Assert.That((a.Value.ToArray(), b.Value.ToArray(), am.ToArray(), av.ToArray()), Is.EqualTo((a1, b1, m1, v1)),
                    "weights and moments stay those of the last good step (clipping alone would scale a by 0 or NaN)");
        Assert.That(adam.StepCount, Is.EqualTo(1));
    }

    [Test]
    public void ParameterListRejectsEntriesThatDoNotLineUp()
    {
        using var a = Param("a", 2, 3);
        using var b = Param("b", 4);
        var (ma, va) = a.Moments();
        Assert.That(() => new ParameterList([a.Value], [a.Grad!, b.Grad!], [ma], [va], [0f]),
                    Throws.ArgumentException.With.Message.Contains("one entry each"));
        Assert.That(() => new ParameterList([a.Value], [b.Grad!], [ma], [va], [0f]),
                    Throws.ArgumentException.With.Message.Contains("entry 0"));
    }
}
