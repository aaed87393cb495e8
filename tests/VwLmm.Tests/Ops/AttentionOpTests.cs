using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Tests.Ops.Reference;
using static VwLmm.Tests.Ops.OpHarness;

namespace VwLmm.Tests.Ops;

/// <summary>Attention forward/backward against the double reference; subclassed once per backend.</summary>
public abstract class AttentionOpTests : BackendOpTests
{
    private static IEnumerable<TestCaseData> SquareCases()
    {
        foreach (int t in new[] { 1, 7, 77, 130 })
        foreach (int d in new[] { 32, 64, 128 })
        foreach (bool causal in new[] { false, true })
            yield return new TestCaseData(new AttentionProblem(2, t, t, t, 2, 2, d, causal, null)).SetArgDisplayNames($"T{t}_D{d}_{(causal ? "causal" : "full")}");
    }

    private static IEnumerable<TestCaseData> SpecialCases()
    {
        yield return new TestCaseData(new AttentionProblem(3, 7, 7, 7, 2, 2, 32, false, [7, 0, 4])).SetArgDisplayNames("padding_full");
        yield return new TestCaseData(new AttentionProblem(3, 7, 7, 7, 2, 2, 32, true, [7, 0, 4])).SetArgDisplayNames("padding_causal");
        yield return new TestCaseData(new AttentionProblem(2, 13, 13, 13, 4, 2, 32, true, [13, 9])).SetArgDisplayNames("gqa_h4_kv2");
        yield return new TestCaseData(new AttentionProblem(2, 13, 13, 13, 4, 1, 64, false, [5, 13])).SetArgDisplayNames("gqa_h4_kv1");
        yield return new TestCaseData(new AttentionProblem(2, 1, 9, 12, 4, 2, 32, true, null)).SetArgDisplayNames("decode_tq1_tk9");
        yield return new TestCaseData(new AttentionProblem(2, 3, 9, 12, 4, 1, 64, true, [9, 6])).SetArgDisplayNames("decode_tq3_tk9");
        yield return new TestCaseData(new AttentionProblem(2, 1, 70, 75, 4, 2, 80, true, [70, 33])).SetArgDisplayNames("decode_tq1_tk70_d80");
        // One query per sample over several key chunks (the CUDA decode kernel's 64): a chunk cut short, a sample
        // with no key, and a span past every sample's keys as a recorded decode step has.
        yield return new TestCaseData(new AttentionProblem(3, 1, 300, 300, 4, 2, 64, true, [300, 129, 0])).SetArgDisplayNames("decode_tq1_tk300_chunks");
        yield return new TestCaseData(new AttentionProblem(2, 1, 200, 256, 2, 1, 128, false, [1, 64])).SetArgDisplayNames("decode_tq1_d128_span_past_keys");
        yield return new TestCaseData(new AttentionProblem(1, 1, 65, 65, 2, 2, 32, false, null)).SetArgDisplayNames("decode_tq1_d32_tk65");
        yield return new TestCaseData(new AttentionProblem(2, 5, 6, 10, 2, 2, 32, false, null)).SetArgDisplayNames("capacity_s10_tk6");
        yield return new TestCaseData(new AttentionProblem(2, 37, 37, 37, 4, 2, 80, true, [37, 20])).SetArgDisplayNames("d80_gqa_causal");
        yield return new TestCaseData(new AttentionProblem(2, 40, 5, 8, 2, 1, 64, true, [5, 3])).SetArgDisplayNames("causal_tq40_tk5");
    }

    [TestCaseSource(nameof(SquareCases))]
    [TestCaseSource(nameof(SpecialCases))]
    public void ForwardAndBackwardMatchReference(AttentionProblem a)
    {
        int nq = a.B * a.Tq * a.H * a.D, nkv = a.B * a.S * a.Hkv * a.D;
        var q = Random(1, nq, 2f);
        var k = Random(2, nkv);
        var v = Random(3, nkv);
        var dO = Random(4, nq);
        // Rows in [Tk, S) are spare cache capacity: huge values there poison any read of them.
        for (int b = 0; b < a.B; b++)
        for (int j = a.Tk; j < a.S; j++)
        for (int i = 0; i < a.Hkv * a.D; i++)
            k[(b * a.S + j) * a.Hkv * a.D + i] = v[(b * a.S + j) * a.Hkv * a.D + i] = 1e30f;
        var (refO, refLse) = AttentionReference.Forward(a, ToDouble(q), ToDouble(k), ToDouble(v));
        var (refDq, refDk, refDv) = AttentionReference.Backward(a, ToDouble(q), ToDouble(k), ToDouble(v), ToDouble(dO));

        using var s = new Scope(Backend);
        var tq = s.Upload("q", q, a.B, a.Tq, a.H, a.D);
        var tk = s.Upload("k", k, a.B, a.S, a.Hkv, a.D);
        var tv = s.Upload("v", v, a.B, a.S, a.Hkv, a.D);
        var tdO = s.Upload("dO", dO, a.B, a.Tq, a.H, a.D);
        var lengths = a.KeyLengths is null ? null : s.UploadInts("keyLengths", a.KeyLengths, a.B);
        var o = s.Upload("o", Random(8, nq), a.B, a.Tq, a.H, a.D);
        var lse = s.New("lse", a.B, a.H, a.Tq);
        float scale = (float)a.Scale;

        Backend.AttentionForward(o, lse, tq, tk, tv, lengths, a.B, a.Tq, a.Tk, a.S, a.H, a.Hkv, a.D, a.Causal, scale);
        Backend.Synchronize();
        s.CheckGuards();

        AssertClose("o", refO, o.ToArray());
        var gotLse = lse.ToArray();
        for (int i = 0; i < gotLse.Length; i++)
        {
            if (double.IsNegativeInfinity(refLse[i]))
                Assert.That(gotLse[i], Is.EqualTo(float.NegativeInfinity), $"lse[{i}] of a query with no visible key");
            else
                Assert.That(gotLse[i], Is.EqualTo(refLse[i]).Within(1e-5 * Math.Max(1, Math.Abs(refLse[i]))), $"lse[{i}]");
        }
        // Adding to what the gradients hold, then storing into NaN: a store must write every element, rows no query
        // sees (padding, spare capacity [Tk, S)) as zeros.
        foreach (bool accumulate in new[] { true, false })
        {
            var dq0 = GradientBefore(5, nq, accumulate);
            var dk0 = GradientBefore(6, nkv, accumulate);
            var dv0 = GradientBefore(7, nkv, accumulate);
            var dq = s.Upload($"dq {accumulate}", dq0, a.B, a.Tq, a.H, a.D);
            var dk = s.Upload($"dk {accumulate}", dk0, a.B, a.S, a.Hkv, a.D);
            var dv = s.Upload($"dv {accumulate}", dv0, a.B, a.S, a.Hkv, a.D);
            Backend.AttentionBackward(dq, dk, dv, tdO, tq, tk, tv, o, lse, lengths, a.B, a.Tq, a.Tk, a.S, a.H, a.Hkv, a.D, a.Causal, scale, accumulate);
            Backend.Synchronize();
            s.CheckGuards();
            AssertClose($"dq (accumulate {accumulate})", After(dq0, refDq, accumulate), dq.ToArray());
            AssertClose($"dk (accumulate {accumulate})", After(dk0, refDk, accumulate), dk.ToArray());
            AssertClose($"dv (accumulate {accumulate})", After(dv0, refDv, accumulate), dv.ToArray());
            if (!accumulate)
                AssertStoreEqualsAddToZeros("attention backward", m => Backend.AttentionBackward(
                    dq, dk, dv, tdO, tq, tk, tv, o, lse, lengths, a.B, a.Tq, a.Tk, a.S, a.H, a.Hkv, a.D, a.Causal, scale, m), dq, dk, dv);
        }
    }

    [Test]
    public void BackwardSkipsNullGradients()
    {
        var a = new AttentionProblem(2, 9, 9, 9, 4, 2, 32, true, [9, 4]);
        int nq = a.B * a.Tq * a.H * a.D, nkv = a.B * a.S * a.Hkv * a.D;
        var q = Random(11, nq);
        var k = Random(12, nkv);
        var v = Random(13, nkv);
        var dO = Random(14, nq);
        var (refDq, refDk, refDv) = AttentionReference.Backward(a, ToDouble(q), ToDouble(k), ToDouble(v), ToDouble(dO));

        using var s = new Scope(Backend);
        var tq = s.Upload("q", q, a.B, a.Tq, a.H, a.D);
        var tk = s.Upload("k", k, a.B, a.S, a.Hkv, a.D);
        var tv = s.Upload("v", v, a.B, a.S, a.Hkv, a.D);
        var tdO = s.Upload("dO", dO, a.B, a.Tq, a.H, a.D);
        var lengths = s.UploadInts("keyLengths", a.KeyLengths!, a.B);
        var o = s.New("o", a.B, a.Tq, a.H, a.D);
        var lse = s.New("lse", a.B, a.H, a.Tq);
        float scale = (float)a.Scale;
        Backend.AttentionForward(o, lse, tq, tk, tv, lengths, a.B, a.Tq, a.Tk, a.S, a.H, a.Hkv, a.D, a.Causal, scale);

        var dq = s.Upload("dq", new float[nq], a.B, a.Tq, a.H, a.D);
        Backend.AttentionBackward(dq, null, null, tdO, tq, tk, tv, o, lse, lengths, a.B, a.Tq, a.Tk, a.S, a.H, a.Hkv, a.D, a.Causal, scale, accumulate: true);
        var dk = s.Upload("dk", new float[nkv], a.B, a.S, a.Hkv, a.D);
        Backend.AttentionBackward(null, dk, null, tdO, tq, tk, tv, o, lse, lengths, a.B, a.Tq, a.Tk, a.S, a.H, a.Hkv, a.D, a.Causal, scale, accumulate: true);
        var dv = s.Upload("dv", new float[nkv], a.B, a.S, a.Hkv, a.D);
        Backend.AttentionBackward(null, null, dv, tdO, tq, tk, tv, o, lse, lengths, a.B, a.Tq, a.Tk, a.S, a.H, a.Hkv, a.D, a.Causal, scale, accumulate: true);
        Backend.Synchronize();
        s.CheckGuards();
        AssertClose("dq", refDq, dq.ToArray());
        AssertClose("dk", refDk, dk.ToArray());
        AssertClose("dv", refDv, dv.ToArray());
    }

    /// <summary>The contract's determinism: the same inputs give bit-identical gradients.</summary>
    [Test]
    public void BackwardIsBitReproducible()
    {
        var a = new AttentionProblem(2, 33, 33, 33, 4, 2, 64, true, [33, 20]);
        int nq = a.B * a.Tq * a.H * a.D, nkv = a.B * a.S * a.Hkv * a.D;
        using var s = new Scope(Backend);
        var q = s.Upload("q", Random(41, nq), a.B, a.Tq, a.H, a.D);
        var k = s.Upload("k", Random(42, nkv), a.B, a.S, a.Hkv, a.D);
        var v = s.Upload("v", Random(43, nkv), a.B, a.S, a.Hkv, a.D);
        var dO = s.Upload("dO", Random(44, nq), a.B, a.Tq, a.H, a.D);
        var lengths = s.UploadInts("keyLengths", a.KeyLengths!, a.B);
        var o = s.New("o", a.B, a.Tq, a.H, a.D);
        var lse = s.New("lse", a.B, a.H, a.Tq);
        float scale = (float)a.Scale;
        Backend.AttentionForward(o, lse, q, k, v, lengths, a.B, a.Tq, a.Tk, a.S, a.H, a.Hkv, a.D, a.Causal, scale);
        var runs = new List<float[]>();
        for (int run = 0; run < 2; run++)
        {
            var dq = s.Upload($"dq{run}", new float[nq], a.B, a.Tq, a.H, a.D);
            var dk = s.Upload($"dk{run}", new float[nkv], a.B, a.S, a.Hkv, a.D);
            var dv = s.Upload($"dv{run}", new float[nkv], a.B, a.S, a.Hkv, a.D);
            Backend.AttentionBackward(dq, dk, dv, dO, q, k, v, o, lse, lengths, a.B, a.Tq, a.Tk, a.S, a.H, a.Hkv, a.D, a.Causal, scale, accumulate: true);
            Backend.Synchronize();
            runs.Add([.. dq.ToArray(), .. dk.ToArray(), .. dv.ToArray()]);
        }
        s.CheckGuards();
        Assert.That(runs[1], Is.EqualTo(runs[0]));
    }

    [Test]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var a = new AttentionProblem(2, 3, 5, 6, 4, 2, 4, true, [5, 3]);
        int nq = a.B * a.Tq * a.H * a.D, nkv = a.B * a.S * a.Hkv * a.D;
        var q = ToDouble(Random(21, nq, 2f));
        var k = ToDouble(Random(22, nkv));
        var v = ToDouble(Random(23, nkv));
        var w = ToDouble(Random(24, nq));
        var (dq, dk, dv) = AttentionReference.Backward(a, q, k, v, w);
        AssertAllClose("dq", FiniteDifference(x => Project(AttentionReference.Forward(a, x, k, v).O, w), q), dq);
        AssertAllClose("dk", FiniteDifference(x => Project(AttentionReference.Forward(a, q, x, v).O, w), k), dk);
        AssertAllClose("dv", FiniteDifference(x => Project(AttentionReference.Forward(a, q, k, x).O, w), v), dv);
    }

}

public sealed class CpuAttentionOpTests : AttentionOpTests
{
    protected override IBackend CreateBackend() => new CpuBackend(2);
}
