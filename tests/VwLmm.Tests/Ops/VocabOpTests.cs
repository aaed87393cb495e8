using System.Text.Json;
using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Tests.Ops.Reference;
using static VwLmm.Tests.Ops.OpHarness;

namespace VwLmm.Tests.Ops;

/// <summary>Cross-entropy, visual-word KL and softmax against the double reference and a PyTorch fixture; subclassed once per backend.</summary>
public abstract class VocabOpTests : BackendOpTests
{
    private const float GradScale = 0.37f;

    /// <summary>init + gradScale·grad, the expected state of an accumulated gradient buffer.</summary>
    private static double[] Accumulated(float[] init, double[] grad, double gradScale)
    {
        var r = new double[init.Length];
        for (int i = 0; i < r.Length; i++) r[i] = init[i] + gradScale * grad[i];
        return r;
    }

    /// <summary>
    /// Spread 80 puts logits at ±80, where exp overflows float without the max shift. A leading run of ignored rows is
    /// a batch-1 sample's image positions (the CPU splits its work over the rows with targets).
    /// </summary>
    [TestCase(6, 1001, 4f, 0)]
    [TestCase(3, 32000, 4f, 0)]
    [TestCase(5, 1001, 80f, 0)]
    [TestCase(48, 1001, 4f, 24)]
    public void CrossEntropyMatchesReference(int N, int V, float spread, int leadingIgnored)
    {
        var logits = Random(1, N * V, spread);
        var targets = new int[N];
        var rng = new Random(2);
        for (int i = 0; i < N; i++) targets[i] = i < leadingIgnored || i % 3 == 1 ? VocabReference.IgnoreIndex : rng.Next(V);
        targets[N - 1] = V - 1;
        var (refLoss, refGrad) = VocabReference.CrossEntropy(ToDouble(logits), targets, N, V);

        foreach (bool accumulate in new[] { true, false })
        {
            var d0 = GradientBefore(3, N * V, accumulate);
            using var s = new Scope(Backend);
            var tl = s.Upload("logits", logits, N, V);
            var tt = s.UploadInts("targets", targets, N);
            var losses = s.Upload("losses", Random(4, N), N);
            var d = s.Upload("dlogits", d0, N, V);
            Backend.CrossEntropy(losses, d, tl, tt, N, V, GradScale, accumulate);
            Backend.Synchronize();
            s.CheckGuards();
            AssertClose("losses", refLoss, losses.ToArray());
            // A store zeroes the ignored rows (the reference's gradient is 0 there).
            AssertClose($"dlogits (accumulate {accumulate})", Accumulated(accumulate ? d0 : new float[N * V], refGrad, GradScale), d.ToArray());
            if (!accumulate)
                AssertStoreEqualsAddToZeros("cross-entropy", a => Backend.CrossEntropy(losses, d, tl, tt, N, V, GradScale, a), d);
        }
    }

    [Test]
    public void CrossEntropyAllIgnoredLeavesGradientsAloneOrZeroes()
    {
        const int N = 3, V = 1001;
        var logits = Random(5, N * V, 4f);
        var d0 = Random(6, N * V);
        using var s = new Scope(Backend);
        var tl = s.Upload("logits", logits, N, V);
        var tt = s.UploadInts("targets", [-100, -100, -100], N);
        var losses = s.Upload("losses", [1f, 2f, 3f], N);
        var d = s.Upload("dlogits", d0, N, V);
        Backend.CrossEntropy(losses, d, tl, tt, N, V, GradScale, accumulate: true);
        Backend.Synchronize();
        s.CheckGuards();
        Assert.That(losses.ToArray(), Is.EqualTo(new float[N]));
        Assert.That(d.ToArray(), Is.EqualTo(d0));
        Backend.CrossEntropy(losses, d, tl, tt, N, V, GradScale, accumulate: false);
        Assert.That(d.ToArray(), Is.EqualTo(new float[N * V]), "a store writes zeros");
    }

    [Test]
    public void CrossEntropyWithoutGradientAndBadTarget()
    {
        const int N = 2, V = 1001;
        var logits = Random(7, N * V, 4f);
        int[] targets = [17, 1000];
        using var s = new Scope(Backend);
        var tl = s.Upload("logits", logits, N, V);
        var losses = s.New("losses", N);
        Backend.CrossEntropy(losses, null, tl, s.UploadInts("targets", targets, N), N, V, 1f, accumulate: false);
        Backend.Synchronize();
        AssertClose("losses", VocabReference.CrossEntropy(ToDouble(logits), targets, N, V).Losses, losses.ToArray());
        var bad = s.UploadInts("bad targets", [3, V], N);
        Assert.Throws<ArgumentOutOfRangeException>(() => Backend.CrossEntropy(losses, null, tl, bad, N, V, 1f, accumulate: true));
        s.CheckGuards();
    }

    /// <summary>The shift pairing: LM rows and VM rows are arbitrary, unrelated indices; untouched rows keep their gradients.</summary>
    private static readonly int[] ShiftPairs = [3, 1, 0, 4, 5, 0, 2, 2];

    [TestCase(1001, false, 4f)]
    [TestCase(1001, true, 4f)]
    [TestCase(32000, false, 4f)]
    [TestCase(32000, true, 4f)]
    [TestCase(1001, false, 80f)]
    [TestCase(1001, true, 80f)]
    public void VisualWordKlMatchesReference(int V, bool reverse, float spread) =>
        CheckVisualWordKl(ShiftPairs, V, reverse, spread, detached: false);

    [TestCase(false)]
    [TestCase(true)]
    public void VisualWordKlDetachedTarget(bool reverse) => CheckVisualWordKl(ShiftPairs, 1001, reverse, 4f, detached: true);

    /// <summary>Pairs sharing an LM row (and a VM row) must both add into it.</summary>
    [TestCase(false)]
    [TestCase(true)]
    public void VisualWordKlSharedRowsAccumulate(bool reverse) => CheckVisualWordKl([3, 1, 0, 4, 3, 0, 2, 1], 1001, reverse, 4f, detached: false);

    private void CheckVisualWordKl(int[] pairs, int V, bool reverse, float spread, bool detached)
    {
        const int lmRows = 6, vmRows = 5;
        int N = pairs.Length / 2;
        var lm = Random(11, lmRows * V, spread);
        var vm = Random(12, vmRows * V, spread);
        var dLm0 = Random(13, lm.Length);
        var dVm0 = Random(14, vm.Length);
        var (refLoss, refDLm, refDVm) = VocabReference.VisualWordKl(ToDouble(lm), ToDouble(vm), pairs, N, V, reverse);

        using var s = new Scope(Backend);
        var tlm = s.Upload("lm", lm, lmRows, V);
        var tvm = s.Upload("vm", vm, vmRows, V);
        var tp = s.UploadInts("pairs", pairs, N, 2);
        var losses = s.New("losses", N);
        var dLm = s.Upload("dLm", dLm0, lmRows, V);
        var dVm = detached ? null : s.Upload("dVm", dVm0, vmRows, V);
        Backend.VisualWordKl(losses, dLm, dVm, tlm, tvm, tp, N, V, reverse, GradScale);
        Backend.Synchronize();
        s.CheckGuards();
        AssertClose("losses", refLoss, losses.ToArray());
        AssertClose("dLm", Accumulated(dLm0, refDLm, GradScale), dLm.ToArray());
        if (dVm is not null) AssertClose("dVm", Accumulated(dVm0, refDVm, GradScale), dVm.ToArray());
    }

    [Test]
    public void VisualWordKlRejectsOutOfRangeRows()
    {
        const int V = 16;
        using var s = new Scope(Backend);
        var lm = s.Upload("lm", Random(15, 2 * V, 1f), 2, V);
        var vm = s.Upload("vm", Random(16, 2 * V, 1f), 2, V);
        var losses = s.New("losses", 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => Backend.VisualWordKl(losses, null, null, lm, vm, s.UploadInts("pairs", [2, 0], 1, 2), 1, V, false, 1f));
        Assert.Throws<ArgumentOutOfRangeException>(() => Backend.VisualWordKl(losses, null, null, lm, vm, s.UploadInts("pairs2", [0, -1], 1, 2), 1, V, false, 1f));
    }

    [Test]
    public void ReferenceGradientsMatchFiniteDifferences()
    {
        const int V = 7;
        int[] pairs = [1, 0, 0, 1, 1, 1];
        var lm = ToDouble(Random(21, 2 * V, 3f));
        var vm = ToDouble(Random(22, 2 * V, 3f));
        foreach (bool reverse in new[] { false, true })
        {
            var (_, dLm, dVm) = VocabReference.VisualWordKl(lm, vm, pairs, 3, V, reverse);
            AssertAllClose($"dLm reverse={reverse}", FiniteDifference(x => VocabReference.VisualWordKl(x, vm, pairs, 3, V, reverse).Losses.Sum(), lm), dLm);
            AssertAllClose($"dVm reverse={reverse}", FiniteDifference(x => VocabReference.VisualWordKl(lm, x, pairs, 3, V, reverse).Losses.Sum(), vm), dVm);
        }
        int[] targets = [3, -100];
        var (_, dCe) = VocabReference.CrossEntropy(lm, targets, 2, V);
        AssertAllClose("dlogits", FiniteDifference(x => VocabReference.CrossEntropy(x, targets, 2, V).Losses.Sum(), lm), dCe);
        var w = ToDouble(Random(23, 2 * V));
        var y = VocabReference.Softmax(lm, 2, V);
        AssertAllClose("softmax dx", FiniteDifference(x => Project(VocabReference.Softmax(x, 2, V), w), lm), VocabReference.SoftmaxBackward(w, y, 2, V));
    }

    [TestCase(4, 1001, 4f)]
    [TestCase(3, 32000, 4f)]
    [TestCase(4, 1001, 80f)]
    public void SoftmaxForwardMatchesReference(int N, int V, float spread)
    {
        var x = Random(31, N * V, spread);
        using var s = new Scope(Backend);
        var tx = s.Upload("x", x, N, V);
        var y = s.New("y", N, V);
        Backend.SoftmaxForward(y, tx, N, V);
        Backend.Synchronize();
        s.CheckGuards();
        AssertClose("y", VocabReference.Softmax(ToDouble(x), N, V), y.ToArray());
    }

    /// <summary>
    /// Logits masked to −∞ (a row's first eight, so that on the vector path whole float4 loads of the first threads are
    /// masked) get probability 0 and gradient 0 while the rest of the row is as without them.
    /// </summary>
    [Test]
    public void MaskedLogitsAtTheRowStartHaveProbabilityZero()
    {
        const int N = 3, V = 1000;
        var x = Random(35, N * V, 4f);
        for (int r = 0; r < N; r++) Array.Fill(x, float.NegativeInfinity, r * V, 8);
        int[] targets = [8, 500, V - 1];
        var (refLoss, refGrad) = VocabReference.CrossEntropy(ToDouble(x), targets, N, V);
        using var s = new Scope(Backend);
        var tx = s.Upload("x", x, N, V);
        var y = s.New("y", N, V);
        var losses = s.New("losses", N);
        var d = s.New("dlogits", N, V);
        Backend.SoftmaxForward(y, tx, N, V);
        Backend.CrossEntropy(losses, d, tx, s.UploadInts("targets", targets, N), N, V, GradScale, accumulate: false);
        Backend.Synchronize();
        s.CheckGuards();
        AssertClose("y", VocabReference.Softmax(ToDouble(x), N, V), y.ToArray());
        AssertClose("losses", refLoss, losses.ToArray());
        AssertClose("dlogits", Accumulated(new float[N * V], refGrad, GradScale), d.ToArray());
    }

    [TestCase(3, 1001, 4f)]
    [TestCase(3, 1001, 80f)]
    public void SoftmaxBackwardMatchesReference(int N, int V, float spread)
    {
        var yd = VocabReference.Softmax(ToDouble(Random(32, N * V, spread)), N, V);
        var y = Array.ConvertAll(yd, v => (float)v);
        var dy = Random(33, N * V);
        var dx0 = Random(34, N * V);
        var refDx = VocabReference.SoftmaxBackward(ToDouble(dy), ToDouble(y), N, V);
        using var s = new Scope(Backend);
        var ty = s.Upload("y", y, N, V);
        var tdy = s.Upload("dy", dy, N, V);
        var dx = s.Upload("dx", dx0, N, V);
        Backend.SoftmaxBackward(dx, tdy, ty, N, V);
        Backend.Synchronize();
        s.CheckGuards();
        AssertClose("dx", Accumulated(dx0, refDx, 1), dx.ToArray());
    }

    /// <summary>F.cross_entropy(ignore_index=−100) and KLDivLoss(batchmean) with autograd gradients, from make_vocab_fixture.py.</summary>
    [Test]
    public void MatchesPyTorchFixture()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures/vocab/vocab_torch.json")));
        var root = doc.RootElement;
        float[] Floats(string name) => root.GetProperty(name).EnumerateArray().Select(e => e.GetSingle()).ToArray();
        double[] Doubles(string name) => root.GetProperty(name).EnumerateArray().Select(e => e.GetDouble()).ToArray();
        int N = root.GetProperty("N").GetInt32(), V = root.GetProperty("V").GetInt32();
        var targets = root.GetProperty("targets").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var pairs = Enumerable.Range(0, N).SelectMany(i => new[] { i, i }).ToArray();

        using var s = new Scope(Backend);
        var lm = s.Upload("lm", Floats("lm"), N, V);
        var vm = s.Upload("vm", Floats("vm"), N, V);
        var ceLosses = s.New("ce losses", N);
        var ceGrad = s.Upload("ce grad", new float[N * V], N, V);
        Backend.CrossEntropy(ceLosses, ceGrad, lm, s.UploadInts("targets", targets, N), N, V, 1f, accumulate: true);
        var klLosses = s.New("kl losses", N);
        var dLm = s.Upload("dLm", new float[N * V], N, V);
        var dVm = s.Upload("dVm", new float[N * V], N, V);
        Backend.VisualWordKl(klLosses, dLm, dVm, lm, vm, s.UploadInts("pairs", pairs, N, 2), N, V, false, 1f / N);
        Backend.Synchronize();
        s.CheckGuards();

        AssertClose("ce losses", Doubles("ce_losses"), ceLosses.ToArray());
        AssertClose("ce grad", Doubles("ce_grad"), ceGrad.ToArray());
        Assert.That(klLosses.ToArray().Sum() / N, Is.EqualTo(root.GetProperty("kl").GetDouble()).Within(2e-4).Percent, "KLDivLoss batchmean");
        AssertClose("kl grad lm", Doubles("kl_grad_lm"), dLm.ToArray());
        AssertClose("kl grad vm", Doubles("kl_grad_vm"), dVm.ToArray());
    }
}

public sealed class CpuVocabOpTests : VocabOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);
}
