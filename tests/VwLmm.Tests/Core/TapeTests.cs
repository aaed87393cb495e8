using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Core;

// The test namespace VwLmm.Tests.Ops would otherwise shadow the op layer.
using Ops = VwLmm.Core.Ops;

/// <summary>The tape end to end: a two-layer composite's gradients against finite differences of a double reference,
/// frozen parameters, validation messages, and stale arena tensors.</summary>
public class TapeTests : CpuFixture
{
    private const int N = 5, In = 7, Hid = 9, V = 11;

    // loss = mean CE( W2·gelu(W1·x + b1) + b2 , targets ) in double.
    private static double ReferenceLoss(double[] w1, double[] b1, double[] w2, double[] b2, double[] x, int[] targets, int inputs = In)
    {
        double total = 0;
        int count = 0;
        for (int n = 0; n < N; n++)
        {
            var h = new double[Hid];
            for (int j = 0; j < Hid; j++)
            {
                double s = b1[j];
                for (int i = 0; i < inputs; i++) s += w1[j * inputs + i] * x[n * inputs + i];
                h[j] = 0.5 * s * (1 + Erf(s / Math.Sqrt(2)));
            }
            var logits = new double[V];
            double max = double.NegativeInfinity;
            for (int v = 0; v < V; v++)
            {
                double s = b2[v];
                for (int j = 0; j < Hid; j++) s += w2[v * Hid + j] * h[j];
                logits[v] = s;
                max = Math.Max(max, s);
            }
            if (targets[n] == -100) continue;
            double z = 0;
            foreach (double l in logits) z += Math.Exp(l - max);
            total += -(logits[targets[n]] - max - Math.Log(z));
            count++;
        }
        return total / count;
    }

    // Abramowitz–Stegun would be too coarse for a 1e-9 finite-difference reference: use the Taylor series / continued fraction.
    private static double Erf(double x)
    {
        double ax = Math.Abs(x);
        double r;
        if (ax < 3)
        {
            double term = ax, sum = ax;
            for (int k = 1; k < 200; k++)
            {
                term *= -ax * ax / k;
                double add = term / (2 * k + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
            }
            r = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            double f = 0;
            for (int k = 60; k >= 1; k--) f = k / 2.0 / (ax + f);
            r = 1 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / (ax + f);
        }
        return x < 0 ? -r : r;
    }

    [Test]
    public void TwoLayerCompositeMatchesFiniteDifferences()
    {
        var w1 = new Parameter(Cpu, "w1", new Shape(Hid, In));
        var b1 = new Parameter(Cpu, "b1", new Shape(Hid));
        var w2 = new Parameter(Cpu, "w2", new Shape(V, Hid));
        var b2 = new Parameter(Cpu, "b2", new Shape(V));
        Parameter[] ps = [w1, b1, w2, b2];
        var host = new float[4][];
        for (int i = 0; i < ps.Length; i++)
        {
            host[i] = OpHarness.Random(10 + i, ps[i].Numel, 0.7f);
            Cpu.Upload<float>(ps[i].Value, host[i]);
            ps[i].Trainable = true;
        }
        var x = OpHarness.Random(20, N * In);
        int[] targets = [3, -100, 0, 10, 7];

        using var arena = new Arena(Cpu, 1 << 20);
        var tape = new Tape(Cpu, arena, record: true);
        tape.Track(ps);
        var xt = Ops.Input(tape, x, N, In);
        var h = Ops.Activation(tape, Ops.Linear(tape, xt, w1.Value, b1.Value), Activation.Gelu);
        var logits = Ops.Linear(tape, h, w2.Value, b2.Value);
        var loss = Ops.CrossEntropy(tape, logits, targets);
        tape.Backward();

        var d = Array.ConvertAll(host, OpHarness.ToDouble);
        var xd = OpHarness.ToDouble(x);
        Assert.That(loss.Mean, Is.EqualTo(ReferenceLoss(d[0], d[1], d[2], d[3], xd, targets)).Within(1e-5));
        Assert.That(loss.Count, Is.EqualTo(4));
        for (int i = 0; i < ps.Length; i++)
        {
            int which = i;
            var expected = OpHarness.FiniteDifference(p =>
            {
                var args = (double[][])d.Clone();
                args[which] = p;
                return ReferenceLoss(args[0], args[1], args[2], args[3], xd, targets);
            }, d[i]);
            OpHarness.AssertClose($"grad {ps[i].Name}", expected, ps[i].Grad!.ToArray(), 1e-9);
        }
        foreach (var p in ps) p.Dispose();
    }

    [Test]
    public void SquaredErrorBesideAnotherConsumerMatchesFiniteDifferences()
    {
        // loss = mean CE(W2·gelu(h)) + 0.7·mean((h − target)²), h = W1·x + b1: the root gradient written by SquaredError
        // and the one the second Linear adds in backward must both reach W1 and b1.
        const float weight = 0.7f;
        var w1 = new Parameter(Cpu, "w1", new Shape(Hid, In));
        var b1 = new Parameter(Cpu, "b1", new Shape(Hid));
        Parameter[] ps = [w1, b1];
        var host = new float[2][];
        for (int i = 0; i < ps.Length; i++)
        {
            host[i] = OpHarness.Random(30 + i, ps[i].Numel, 0.7f);
            Cpu.Upload<float>(ps[i].Value, host[i]);
            ps[i].Trainable = true;
        }
        var w2 = OpHarness.Random(32, V * Hid, 0.7f);
        var x = OpHarness.Random(33, N * In);
        var target = OpHarness.Random(34, N * Hid);
        int[] targets = [3, 1, 0, 10, 7];

        using var arena = new Arena(Cpu, 1 << 20);
        var tape = new Tape(Cpu, arena, record: true);
        tape.Track(ps);
        var h = Ops.Linear(tape, Ops.Input(tape, x, N, In), w1.Value, b1.Value);
        var logits = Ops.Linear(tape, Ops.Activation(tape, h, Activation.Gelu), Ops.Input(tape, w2, V, Hid));
        var ce = Ops.CrossEntropy(tape, logits, targets);
        var se = Ops.SquaredError(tape, h, Ops.Input(tape, target, N, Hid), weight);
        tape.Backward();

        var (xd, w2d, td) = (OpHarness.ToDouble(x), OpHarness.ToDouble(w2), OpHarness.ToDouble(target));
        double Reference(double[] w, double[] b, out double mse)
        {
            var hd = new double[N * Hid];
            mse = 0;
            for (int n = 0; n < N; n++)
                for (int j = 0; j < Hid; j++)
                {
                    double s = b[j];
                    for (int i = 0; i < In; i++) s += w[j * In + i] * xd[n * In + i];
                    hd[n * Hid + j] = s;
                    mse += (s - td[n * Hid + j]) * (s - td[n * Hid + j]);
                }
            mse /= N * Hid;
            // ReferenceLoss applies gelu to W·h + b: with W = identity and b = 0 it is CE(W2·gelu(h)).
            var eye = new double[Hid * Hid];
            for (int j = 0; j < Hid; j++) eye[j * Hid + j] = 1;
            return ReferenceLoss(eye, new double[Hid], w2d, new double[V], hd, targets, Hid);
        }
        var d = Array.ConvertAll(host, OpHarness.ToDouble);
        double refCe = Reference(d[0], d[1], out double refMse);
        Assert.That(ce.Mean, Is.EqualTo(refCe).Within(1e-5));
        Assert.That(se.Mean, Is.EqualTo(refMse).Within(1e-5 * refMse));
        Assert.That(se.Count, Is.EqualTo(N));
        for (int i = 0; i < ps.Length; i++)
        {
            int which = i;
            var expected = OpHarness.FiniteDifference(p =>
            {
                var args = (double[][])d.Clone();
                args[which] = p;
                return Reference(args[0], args[1], out double m) + weight * m;
            }, d[i]);
            OpHarness.AssertClose($"grad {ps[i].Name}", expected, ps[i].Grad!.ToArray(), 1e-9);
        }
        var e = Assert.Throws<ArgumentException>(() => Ops.SquaredError(tape, h, Ops.Input(tape, target.AsSpan(0, Hid), 1, Hid)))!;
        Assert.That(e.Message, Does.Contain("SquaredError").And.Contain("[1,9]").And.Contain("[5,9]"));
        foreach (var p in ps) p.Dispose();
    }

    /// <summary>
    /// h = x·W1ᵀ feeds two consumers, y1 = h·W2ᵀ and y2 = h + z (fan-out), and z = x·W3ᵀ reaches its gradient only
    /// through the Add. The first backward op to reach a gradient stores into it instead of adding to a zero fill, so
    /// no buffer is filled, and h's gradient, which both consumers reach, still sums them (against a double reference).
    /// The arena recycles handles, so it does not fill its allocations with NaN either (the suite's checked arenas,
    /// which do, show that no op reads a buffer nothing wrote).
    /// </summary>
    [Test]
    public void FirstWriterStoresAndLaterOnesAdd()
    {
        const int M = 3, K = 4, Nh = 5;
        var rng = new Random(7);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        float[] w1 = Rand(Nh * K), w2 = Rand(Nh * Nh), w3 = Rand(Nh * K), xs = Rand(M * K), g1 = Rand(M * Nh), g2 = Rand(M * Nh);
        using var p1 = Trainable("w1", w1, Nh, K);
        using var p2 = Trainable("w2", w2, Nh, Nh);
        using var p3 = Trainable("w3", w3, Nh, K);
        var profiled = new ProfilingBackend(Cpu);
        using var arena = new Arena(profiled, 1 << 16, recycleHandles: true);
        var tape = new Tape(profiled, arena, record: true);
        tape.Track([p1, p2, p3]);
        var x = Ops.Input(tape, xs, M, K);
        var h = Ops.Linear(tape, x, p1.Value);
        var y1 = Ops.Linear(tape, h, p2.Value);
        var y2 = Ops.Add(tape, h, Ops.Linear(tape, x, p3.Value));
        // Seed the outputs' gradients as a loss would: loss = Σ g1∘y1 + Σ g2∘y2.
        Cpu.Upload<float>(tape.Grad(y1), g1);
        Cpu.Upload<float>(tape.Grad(y2), g2);
        profiled.ResetCounters();
        tape.Backward();
        Assert.That(profiled.Table().Where(r => r.Op == "Fill"), Is.Empty, "no gradient buffer was zero-filled");

        // dh = g1·W2 + g2, dW1 = dhᵀ·x, dW3 = g2ᵀ·x, dW2 = g1ᵀ·h, in double.
        var hd = new double[M * Nh];
        for (int m = 0; m < M; m++)
        for (int j = 0; j < Nh; j++)
        for (int k = 0; k < K; k++) hd[m * Nh + j] += (double)xs[m * K + k] * w1[j * K + k];
        var dh = new double[M * Nh];
        for (int m = 0; m < M; m++)
        for (int j = 0; j < Nh; j++)
        {
            dh[m * Nh + j] = g2[m * Nh + j];
            for (int i = 0; i < Nh; i++) dh[m * Nh + j] += (double)g1[m * Nh + i] * w2[i * Nh + j];
        }
        double[] Outer(double[] a, int cols, Func<int, double> b, int bcols)
        {
            var r = new double[cols * bcols];
            for (int m = 0; m < M; m++)
            for (int i = 0; i < cols; i++)
            for (int j = 0; j < bcols; j++) r[i * bcols + j] += a[m * cols + i] * b(m * bcols + j);
            return r;
        }
        var dw1 = Outer(dh, Nh, i => xs[i], K);
        var dw2 = Outer(Array.ConvertAll(g1, v => (double)v), Nh, i => hd[i], Nh);
        var dw3 = Outer(Array.ConvertAll(g2, v => (double)v), Nh, i => xs[i], K);
        Assert.That(p1.Grad!.ToArray(), Is.EqualTo(dw1).Within(1e-5).AsCollection);
        Assert.That(p2.Grad!.ToArray(), Is.EqualTo(dw2).Within(1e-5).AsCollection);
        Assert.That(p3.Grad!.ToArray(), Is.EqualTo(dw3).Within(1e-5).AsCollection);
    }

    /// <summary>
    /// The q/k/v pattern: ops store through views into parts of one gradient (each Select of a LinearStack output) and
    /// the parts no op reached are zeroed before the stack's backward reads it. A checked arena leaves every fresh
    /// gradient NaN, so an unwritten element would reach the weight gradient.
    /// </summary>
    [TestCase(true)]
    [TestCase(false)]
    public void ViewsStoreTheirPartsOfAGradientAndTheRestIsZeroed(bool allViewsUsed)
    {
        const int M = 3, K = 4, N = 5, G = 3;
        var rng = new Random(11);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        float[] ws = Rand(G * N * K), xs = Rand(M * K), seed = Rand(G * M * N);
        int used = allViewsUsed ? G : G - 1;
        using var p = Trainable("w", ws, G, N, K);

        // dW[g] = Σ_m dz_g[m]ᵀ x[m] with dz_g = silu'(y_g)·seed_g for the views in use, 0 for the one left out.
        var dz = new double[G * M * N];
        for (int g = 0; g < used; g++)
        for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++)
        {
            double y = 0;
            for (int k = 0; k < K; k++) y += (double)xs[m * K + k] * ws[(g * N + n) * K + k];
            double sg = 1 / (1 + Math.Exp(-y));
            dz[(g * M + m) * N + n] = seed[(g * M + m) * N + n] * sg * (1 + y * (1 - sg));
        }
        var dw = new double[G * N * K];
        for (int g = 0; g < G; g++)
        for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) dw[(g * N + n) * K + k] += dz[(g * M + m) * N + n] * xs[m * K + k];

        foreach (bool checkedArena in new[] { true, false })
        {
            var (profiled, arena, tape) = ProfiledTape(p, checkedArena);
            using var owned = arena;
            var y = Ops.LinearStack(tape, Ops.Input(tape, xs, M, K), p.Value);
            var outputs = Enumerable.Range(0, used).Select(g => Ops.Activation(tape, Ops.Select(tape, y, g), Activation.Silu)).ToArray();
            for (int g = 0; g < used; g++) Cpu.Upload<float>(tape.Grad(outputs[g]), seed.AsSpan(g * M * N, M * N));
            profiled.ResetCounters();
            tape.Backward();
            Assert.That(p.Grad!.ToArray(), Is.EqualTo(dw).Within(1e-5).AsCollection, $"checked arena {checkedArena}");
            if (!checkedArena)
                Assert.That(profiled.Table().Where(r => r.Op == "Fill").Sum(r => r.Calls), Is.EqualTo(allViewsUsed ? 0 : 1),
                            "fills: none when the views cover the gradient, one for the part no view stored");
        }
    }

    /// <summary>
    /// An op whose two inputs share one gradient (silu(y)·y) must add both parts, not store one over the other: the
    /// backward then asks for accumulating gradients (Ops.GradsOf) even though nothing reached y's before.
    /// </summary>
    [Test]
    public void InputsSharingAGradientAreAddedNotStored()
    {
        const int M = 2, K = 3, N = 4;
        var rng = new Random(12);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        float[] ws = Rand(N * K), xs = Rand(M * K), seed = Rand(M * N);
        using var p = Trainable("w", ws, N, K);
        using var arena = new Arena(Cpu, 1 << 16, recycleHandles: false);
        var tape = new Tape(Cpu, arena, record: true);
        tape.Track(p);
        var y = Ops.Linear(tape, Ops.Input(tape, xs, M, K), p.Value);
        var z = Ops.SwiGlu(tape, y, y);
        Cpu.Upload<float>(tape.Grad(z), seed);
        tape.Backward();

        // d(silu(y)·y)/dy = silu'(y)·y + silu(y); dW = dyᵀ x.
        var dw = new double[N * K];
        for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++)
        {
            double v = 0;
            for (int k = 0; k < K; k++) v += (double)xs[m * K + k] * ws[n * K + k];
            double sg = 1 / (1 + Math.Exp(-v)), dy = seed[m * N + n] * (sg * (1 + v * (1 - sg)) * v + v * sg);
            for (int k = 0; k < K; k++) dw[n * K + k] += dy * xs[m * K + k];
        }
        Assert.That(p.Grad!.ToArray(), Is.EqualTo(dw).Within(1e-5).AsCollection);
    }

    /// <summary>
    /// A backward writing two gradients in one call, when another op reached one of them first: the fresh one must be
    /// zeroed and both added to (Ops.GradsOf). Here SwiGLU's up is also the input of a SiLU recorded after it, whose
    /// backward runs first; a checked arena leaves the fresh gate gradient NaN unless it is zeroed.
    /// </summary>
    [Test]
    public void AnOpReachingSomeGradientsFirstZeroesThoseAndAdds()
    {
        const int M = 2, K = 3, N = 4;
        var rng = new Random(13);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        float[] wa = Rand(N * K), wb = Rand(N * K), xs = Rand(M * K), gz = Rand(M * N), gu = Rand(M * N);
        using var pa = Trainable("wa", wa, N, K);
        using var pb = Trainable("wb", wb, N, K);
        using var arena = new Arena(Cpu, 1 << 16, recycleHandles: false);
        var tape = new Tape(Cpu, arena, record: true);
        tape.Track([pa, pb]);
        var x = Ops.Input(tape, xs, M, K);
        Tensor a = Ops.Linear(tape, x, pa.Value), b = Ops.Linear(tape, x, pb.Value);
        var z = Ops.SwiGlu(tape, a, b);
        var u = Ops.Activation(tape, b, Activation.Silu);
        Cpu.Upload<float>(tape.Grad(z), gz);
        Cpu.Upload<float>(tape.Grad(u), gu);
        tape.Backward();

        // da = gz·b·silu'(a), db = gz·silu(a) + gu·silu'(b); dW = dᵀx.
        static double Sig(double v) => 1 / (1 + Math.Exp(-v));
        static double SiluGrad(double v) => Sig(v) * (1 + v * (1 - Sig(v)));
        double[] dwa = new double[N * K], dwb = new double[N * K];
        for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++)
        {
            double av = 0, bv = 0;
            for (int k = 0; k < K; k++)
            {
                av += (double)xs[m * K + k] * wa[n * K + k];
                bv += (double)xs[m * K + k] * wb[n * K + k];
            }
            int i = m * N + n;
            double da = gz[i] * bv * SiluGrad(av), db = gz[i] * av * Sig(av) + gu[i] * SiluGrad(bv);
            for (int k = 0; k < K; k++)
            {
                dwa[n * K + k] += da * xs[m * K + k];
                dwb[n * K + k] += db * xs[m * K + k];
            }
        }
        Assert.That(pa.Grad!.ToArray(), Is.EqualTo(dwa).Within(1e-5).AsCollection, "dWa");
        Assert.That(pb.Grad!.ToArray(), Is.EqualTo(dwb).Within(1e-5).AsCollection, "dWb");
    }

    /// <summary>
    /// A padded batch's packing and unpacking, each gather given the other's map as its inverse: the backward that
    /// reaches a gradient first gathers dy's rows into it (no zero fill, no scatter), one that comes later adds as the
    /// scatter does. Either way the weight gradient has the bits of the same graph without inverse maps, and the double
    /// reference's values; a checked arena leaves fresh gradients NaN, so a row left unwritten would reach it.
    /// </summary>
    [TestCase(true)]
    [TestCase(false)]
    public void GatherByTheInverseMapStoresWhatTheScatterWouldAdd(bool gatherReachesFirst)
    {
        const int R = 5, K = 3, C = 4;
        int[] pack = [0, 1, 3], unpack = [0, 1, -1, 2, -1];
        var rng = new Random(14);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        float[] ws = Rand(C * K), xs = Rand(R * K), gout = Rand(R * C), gu = Rand(R * C);
        using var p = Trainable("w", ws, C, K);

        // x = input·Wᵀ; out = silu(unpack(pack(x))), u = silu(x) when another op reaches dx first: dx[r] is
        // gout[r]·silu'(x[r]) on the packed rows, 0 on the padding, plus gu[r]·silu'(x[r]) from u; dW = dxᵀ·input.
        static double SiluGrad(double v) => 1 / (1 + Math.Exp(-v)) * (1 + v * (1 - 1 / (1 + Math.Exp(-v))));
        var dw = new double[C * K];
        for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
        {
            double x = 0;
            for (int k = 0; k < K; k++) x += (double)xs[r * K + k] * ws[c * K + k];
            double dx = (unpack[r] >= 0 ? gout[r * C + c] : 0) + (gatherReachesFirst ? 0 : gu[r * C + c]);
            for (int k = 0; k < K; k++) dw[c * K + k] += dx * SiluGrad(x) * xs[r * K + k];
        }

        float[]? withoutInverse = null;
        foreach (bool inverse in new[] { false, true })
        foreach (bool checkedArena in new[] { true, false })
        {
            var (profiled, arena, tape) = ProfiledTape(p, checkedArena);
            using var owned = arena;
            Tensor packMap = tape.Indices(pack), unpackMap = tape.Indices(unpack);
            var x = Ops.Linear(tape, Ops.Input(tape, xs, R, K), p.Value);
            var packed = Ops.Gather(tape, x, null, packMap, pack.Length, inverse ? unpackMap : null);
            var output = Ops.Activation(tape, Ops.Gather(tape, packed, null, unpackMap, R, inverse ? packMap : null), Activation.Silu);
            Cpu.Upload<float>(tape.Grad(output), gout);
            if (!gatherReachesFirst) Cpu.Upload<float>(tape.Grad(Ops.Activation(tape, x, Activation.Silu)), gu);
            profiled.ResetCounters();
            tape.Backward();
            string what = $"inverse {inverse}, checked arena {checkedArena}";
            var grad = p.Grad!.ToArray();
            Assert.That(grad, Is.EqualTo(dw).Within(1e-5).AsCollection, what);
            if (inverse) Assert.That(grad, Is.EqualTo(withoutInverse), $"{what}: the bits of the scatter's gradient");
            else withoutInverse ??= grad;
            if (checkedArena) continue;
            long Calls(string op) => profiled.Table().Where(t => t.Op == op).Sum(t => t.Calls);
            Assert.That(Calls("GatherRowsBackward"), Is.EqualTo(inverse ? gatherReachesFirst ? 0 : 1 : 2), $"{what}: scatters");
            Assert.That(Calls("Fill"), Is.EqualTo(inverse ? 0 : gatherReachesFirst ? 2 : 1), $"{what}: zero fills");
        }
    }

    [Test]
    public void AnInverseMapIsCheckedAgainstTheGather()
    {
        using var a = new Parameter(Cpu, "a", new Shape(3, 2));
        using var b = new Parameter(Cpu, "b", new Shape(2, 2));
        using var arena = new Arena(Cpu, 1 << 16);
        var tape = new Tape(Cpu, arena, record: false);
        var map = tape.Indices([0, -2]);
        var e = Assert.Throws<ArgumentException>(() => Ops.Gather(tape, a.Value, b.Value, map, 2, tape.Indices([0, -1, -1])))!;
        Assert.That(e.Message, Does.Contain("Gather").And.Contain("inverse").And.Contain("srcB"));
        e = Assert.Throws<ArgumentException>(() => Ops.Gather(tape, a.Value, null, tape.Indices([2, 0]), 2, tape.Indices([1, -1])))!;
        Assert.That(e.Message, Does.Contain("Gather: inverse").And.Contain("at least 3"));
    }

    /// <summary>p's gradient zeroed, and a recording tape tracking p over a profiled CPU backend; a checked arena
    /// (no recycling) leaves every fresh gradient NaN.</summary>
    private (ProfilingBackend Profiled, Arena Arena, Tape Tape) ProfiledTape(Parameter p, bool checkedArena)
    {
        Cpu.Fill(p.Grad!, 0f);
        var profiled = new ProfilingBackend(Cpu);
        var arena = new Arena(profiled, 1 << 16, recycleHandles: !checkedArena);
        var tape = new Tape(profiled, arena, record: true);
        tape.Track(p);
        return (profiled, arena, tape);
    }

    private Parameter Trainable(string name, float[] values, params int[] dims)
    {
        var p = new Parameter(Cpu, name, new Shape(dims));
        p.SetValues(values);
        p.Trainable = true;
        return p;
    }

    /// <summary>
    /// Index uploads are shared while their values repeat (the decoder's positions, once per layer for q and for k):
    /// one upload per distinct set of values among the last four, a new one after the arena is reset, and every
    /// tensor holds the values it was asked for.
    /// </summary>
    [Test]
    public void RepeatedIndicesShareOneUpload()
    {
        var profiled = new ProfilingBackend(Cpu);
        using var arena = new Arena(profiled, 1 << 16);
        var tape = new Tape(profiled, arena, record: false);
        int Uploads() => (int)profiled.Table().Where(r => r.Op == "Upload").Sum(r => r.Calls);
        int[] positions = [5, 6, 7], lengths = [8], other = [5, 6];
        var p = tape.Indices(positions);
        var l = tape.Indices(lengths);
        for (int layer = 0; layer < 4; layer++)
        {
            Assert.That(tape.Indices(positions.AsSpan().ToArray()), Is.SameAs(p), $"q's positions in layer {layer}");
            Assert.That(tape.Indices(positions), Is.SameAs(p), $"k's positions in layer {layer}");
            Assert.That(tape.Indices(lengths), Is.SameAs(l), $"key lengths in layer {layer}");
        }
        Assert.That(Uploads(), Is.EqualTo(2));
        var o = tape.Indices(other);
        Assert.That(o, Is.Not.SameAs(p), "a prefix of earlier values is other values");
        Assert.That(o.ToIntArray(), Is.EqualTo(other));
        for (int i = 0; i < 4; i++) tape.Indices([100 + i]);
        Assert.That(Uploads(), Is.EqualTo(7));
        Assert.That(tape.Indices(positions).ToIntArray(), Is.EqualTo(positions), "evicted by four newer uploads: uploaded again");
        Assert.That(Uploads(), Is.EqualTo(8));
        tape.Reset();
        var fresh = tape.Indices([100 + 3]);
        Assert.That(Uploads(), Is.EqualTo(9), "a reset arena holds none of them");
        Assert.That(fresh.ToIntArray(), Is.EqualTo(new[] { 103 }));
    }

    [Test]
    public void FrozenParametersRecordNoWork()
    {
        using var w = new Parameter(Cpu, "w", new Shape(3, 4));
        using var arena = new Arena(Cpu, 1 << 16);
        var tape = new Tape(Cpu, arena, record: true);
        tape.Track(w);
        var x = Ops.Input(tape, new float[8], 2, 4);
        var y = Ops.Linear(tape, x, w.Value);
        Assert.That(w.Grad, Is.Null);
        Assert.That(tape.RecordedOps, Is.Zero);
        Assert.That(tape.RequiresGrad(y), Is.False);
    }

    [Test]
    public void ShapeMismatchNamesOpAndShapes()
    {
        using var w = new Parameter(Cpu, "w", new Shape(3, 4));
        using var arena = new Arena(Cpu, 1 << 16);
        var tape = new Tape(Cpu, arena, record: false);
        var x = Ops.Input(tape, new float[10], 2, 5);
        var e = Assert.Throws<ArgumentException>(() => Ops.Linear(tape, x, w.Value))!;
        Assert.That(e.Message, Does.Contain("Linear").And.Contain("[2,5]").And.Contain("[3,4]"));
    }

    [Test]
    public void OutOfRangeIdsAreRejected()
    {
        using var table = new Parameter(Cpu, "table", new Shape(4, 2));
        using var arena = new Arena(Cpu, 1 << 16);
        var tape = new Tape(Cpu, arena, record: false);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Ops.Gather(tape, table.Value, null, [0, 4]))!;
        Assert.That(e.Message, Does.Contain("Gather").And.Contain("map[1] = 4"));
    }

    [Test]
    public void StaleArenaTensorIsCaught()
    {
        using var w = new Parameter(Cpu, "w", new Shape(3, 4));
        using var arena = new Arena(Cpu, 1 << 16);
        var tape = new Tape(Cpu, arena, record: false);
        var x = Ops.Input(tape, new float[8], 2, 4);
        arena.Reset();
        var e = Assert.Throws<InvalidOperationException>(() => Ops.Linear(tape, x, w.Value))!;
        Assert.That(e.Message, Does.Contain("Linear").And.Contain("freed"));
    }

    [Test]
    public void WrongDtypeIsRejected()
    {
        using var arena = new Arena(Cpu, 1 << 16);
        var tape = new Tape(Cpu, arena, record: false);
        var ids = arena.Allocate(new Shape(4), DType.I32);
        var e = Assert.Throws<ArgumentException>(() => Ops.Activation(tape, ids, Activation.Gelu))!;
        Assert.That(e.Message, Does.Contain("I32"));
    }
}
