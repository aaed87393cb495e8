namespace VwLmm.Core;

/// <summary>Mean of a loss over its counted rows, the per-row values, and how many rows counted.</summary>
public readonly record struct LossResult(double Mean, int Count, Tensor? PerRow);

/// <summary>
/// The differentiable op layer: validates shapes (errors name the op and the shapes), allocates outputs in the tape's
/// arena, calls the backend, and records a <see cref="TapeNode"/> (a static backward function and its operands) when an
/// input requires a gradient. Shapes in and out are given on each op in one line. Index arguments (ids, maps, targets,
/// positions) are host arrays: they are range checked here and uploaded into the arena. A few inference ops also take
/// them as device tensors, for steps a backend replays from a recording, where whoever writes them checks them. A warm
/// op allocates no managed memory.
/// </summary>
public static class Ops
{
    /// <summary>host [dims] → a tensor in the arena that requires no gradient.</summary>
    public static Tensor Input(Tape tape, ReadOnlySpan<float> host, params ReadOnlySpan<int> dims)
    {
        var t = tape.Arena.Allocate(new Shape(dims));
        if (host.Length != t.Numel) throw new ArgumentException($"Input: {host.Length} values for shape {t.Shape}");
        tape.Backend.Upload(t, host);
        return t;
    }

    /// <summary>host I32 [n], each in [lo, hi) → a device tensor [max(1, n)] (equal values uploaded earlier in the step share one).</summary>
    public static Tensor Indices(Tape tape, string name, ReadOnlySpan<int> host, int lo, int hi)
    {
        Check.Indices("Indices", name, host, lo, hi);
        return tape.Indices(host);
    }

    /// <summary>An I32 tensor of at least n elements, or an error naming the op and argument.</summary>
    private static void CheckIndexTensor(string op, string name, Tensor t, long n)
    {
        if (t.DType != DType.I32 || t.Numel < n)
            throw new ArgumentException($"{op}: {name} is {t.DType} {t.Shape}, expected I32 with at least {n} elements");
    }

    private static bool AnyGrad(Tape tape, Tensor? a, Tensor? b = null, Tensor? c = null) =>
        tape.IsRecording && ((a is not null && tape.RequiresGrad(a)) || (b is not null && tape.RequiresGrad(b)) || (c is not null && tape.RequiresGrad(c)));

    private static Tensor Output(Tape tape, Shape shape, bool requiresGrad)
    {
        var y = tape.Arena.Allocate(shape);
        if (requiresGrad) tape.MarkRequiresGrad(y);
        return y;
    }

    /// <summary>x [..., K] viewed with other dims of the same size; shares x's gradient.</summary>
    public static Tensor Reshape(Tape tape, Tensor x, params ReadOnlySpan<int> dims)
    {
        Check.Alive("Reshape", "x", x);
        var shape = new Shape(dims);
        if (shape.Numel != x.Numel) throw new ArgumentException($"Reshape: cannot reshape {x.Shape} to {shape}");
        var y = tape.Arena.View(x, 0, shape);
        if (tape.RequiresGrad(x)) tape.Alias(y, x);
        return y;
    }

    /// <summary>x [G, ...] → x[g] [...], a view that shares x's gradient.</summary>
    public static Tensor Select(Tape tape, Tensor x, int g)
    {
        Check.Alive("Select", "x", x);
        if (x.Shape.Rank < 2) throw new ArgumentException($"Select: x has shape {x.Shape}, expected [G, ...]");
        if ((uint)g >= (uint)x.Shape[0]) throw new ArgumentOutOfRangeException(nameof(g), $"Select: index {g} is outside [0, {x.Shape[0]}) of {x.Shape}");
        var shape = new Shape(x.Shape.Dims[1..]);
        var y = tape.Arena.View(x, g * shape.Numel, shape);
        if (tape.RequiresGrad(x)) tape.Alias(y, x);
        return y;
    }

    /// <summary>
    /// x [..., K] through G linear layers of one shape, W [G,N,K] (a <see cref="ParameterStack"/>) and biases b [G,N]
    /// (optional) → y [G, M, N] with y[g] = x·W[g]ᵀ + b[g], M = x's rows. One batched GEMM where G <see cref="Linear"/>
    /// calls would make G; every element, and every gradient, has the bits those calls give (dx sums the layers last
    /// to first, as their tape would).
    /// </summary>
    public static Tensor LinearStack(Tape tape, Tensor x, Tensor w, Tensor? b = null)
    {
        const string op = "LinearStack";
        using var range = Profiler.Range(tape.Backend, op);
        bool grad = AnyGrad(tape, x, w, b);
        Check.Weight(op, "w", w, 3, grad);
        int g = w.Shape[0], n = w.Shape[1], k = w.Shape[2];
        Check.F32(op, "x", x);
        if (x.Shape[-1] != k) throw new ArgumentException($"{op}: x has shape {x.Shape}, expected [...,{k}] (w is {w.Shape})");
        if (b is not null) Check.Shape(op, "b", b, g, n);
        int m = checked((int)(x.Numel / k));
        var be = tape.Backend;
        var y = Output(tape, new Shape(g, m, n), grad);
        be.Gemm(false, true, m, n, k, 1f, x, k, 0, w, k, (long)n * k, 0f, y, n, (long)m * n, g, b, n);
        if (grad) tape.Record(new TapeNode { Backward = LinearStackBackward, Output = y, X0 = x, X1 = w, X2 = b, I0 = m, I1 = n, I2 = k, I3 = g });
        return y;
    }

    private static void LinearStackBackward(Tape tape, in TapeNode node)
    {
        Tensor x = node.X0!, w = node.X1!, dy = tape.Grad(node.Output);
        int m = node.I0, n = node.I1, k = node.I2, g = node.I3;
        var be = tape.Backend;
        if (tape.GradOrNull(x, out bool overwrite) is { } dx)
            for (int i = g - 1; i >= 0; i--)
                be.Gemm(false, false, m, k, n, 1f, tape.Arena.View(dy, (long)i * m * n, new Shape(m, n)), n, 0,
                        tape.Arena.View(w, (long)i * n * k, new Shape(n, k)), k, 0, Beta(overwrite && i == g - 1), dx, k, 0, 1);
        if (tape.GradOrNull(w) is { } dw) be.Gemm(true, false, n, k, m, 1f, dy, n, (long)m * n, x, k, 0, 1f, dw, k, (long)n * k, g);
        if (tape.GradOrNull(node.X2) is { } db)
            for (int i = 0; i < g; i++)
                be.BiasBackward(tape.Arena.View(db, (long)i * n, new Shape(n)), tape.Arena.View(dy, (long)i * m * n, new Shape(m, n)), m, n, 1);
    }

    /// <summary>
    /// x [..., K] · Wᵀ (W [N,K], F32, or BF16 without gradients) + b [N] → y [..., N]; with a residual [..., N], y is
    /// residual + (x·Wᵀ + b), the bits of <see cref="Add"/>(residual, Linear(x, W, b)) in one product (a residual
    /// stream's update, which then writes no separate output for the layer).
    /// </summary>
    public static Tensor Linear(Tape tape, Tensor x, Tensor w, Tensor? b = null, Tensor? residual = null)
    {
        const string op = "Linear";
        using var range = Profiler.Range(tape.Backend, op);
        bool grad = AnyGrad(tape, x, w, b) || (residual is not null && AnyGrad(tape, residual));
        Check.Weight(op, "w", w, 2, grad);
        int n = w.Shape[0], k = w.Shape[1];
        Check.F32(op, "x", x);
        if (x.Shape[-1] != k) throw new ArgumentException($"{op}: x has shape {x.Shape}, expected [...,{k}] (w is {w.Shape})");
        if (b is not null) Check.Shape(op, "b", b, n);
        var shape = x.Shape.WithLast(n);
        if (residual is not null && residual.Shape != shape)
            throw new ArgumentException($"{op}: residual has shape {residual.Shape}, expected {shape}");
        int m = checked((int)(x.Numel / k));
        var be = tape.Backend;
        var y = Output(tape, shape, grad);
        be.Gemm(false, true, m, n, k, 1f, x, k, 0, w, k, 0, 0f, y, n, 0, 1, b, 0, residual);
        if (grad) tape.Record(new TapeNode { Backward = LinearBackward, Output = y, X0 = x, X1 = w, X2 = b, X3 = residual, I0 = m, I1 = n, I2 = k });
        return y;
    }

    private static void LinearBackward(Tape tape, in TapeNode node)
    {
        Tensor x = node.X0!, w = node.X1!, dy = tape.Grad(node.Output);
        int m = node.I0, n = node.I1, k = node.I2;
        var be = tape.Backend;
        AccumulateGrad(tape, node.X3, dy);
        if (tape.GradOrNull(x, out bool overwrite) is { } dx) be.Gemm(false, false, m, k, n, 1f, dy, n, 0, w, k, 0, Beta(overwrite), dx, k, 0, 1);
        if (tape.GradOrNull(w) is { } dw) be.Gemm(true, false, n, k, m, 1f, dy, n, 0, x, k, 0, 1f, dw, k, 0, 1);
        if (tape.GradOrNull(node.X2) is { } db) be.BiasBackward(db, dy, m, n, 1);
    }

    /// <summary>a [M,K] · b [K,N] → c [M,N].</summary>
    public static Tensor MatMul(Tape tape, Tensor a, Tensor b)
    {
        const string op = "MatMul";
        using var range = Profiler.Range(tape.Backend, op);
        Check.Rank(op, "a", a, 2);
        Check.Rank(op, "b", b, 2);
        int m = a.Shape[0], k = a.Shape[1], n = b.Shape[1];
        if (b.Shape[0] != k) throw new ArgumentException($"{op}: a {a.Shape} and b {b.Shape} do not chain");
        var be = tape.Backend;
        bool grad = AnyGrad(tape, a, b);
        var c = Output(tape, new Shape(m, n), grad);
        be.Gemm(false, false, m, n, k, 1f, a, k, 0, b, n, 0, 0f, c, n, 0, 1);
        if (grad) tape.Record(new TapeNode { Backward = MatMulBackward, Output = c, X0 = a, X1 = b, I0 = m, I1 = n, I2 = k });
        return c;
    }

    private static void MatMulBackward(Tape tape, in TapeNode node)
    {
        Tensor a = node.X0!, b = node.X1!, dc = tape.Grad(node.Output);
        int m = node.I0, n = node.I1, k = node.I2;
        var be = tape.Backend;
        if (tape.GradOrNull(a, out bool overwriteA) is { } da) be.Gemm(false, true, m, k, n, 1f, dc, n, 0, b, n, 0, Beta(overwriteA), da, k, 0, 1);
        if (tape.GradOrNull(b, out bool overwriteB) is { } db) be.Gemm(true, false, k, n, m, 1f, a, k, 0, dc, n, 0, Beta(overwriteB), db, n, 0, 1);
    }

    /// <summary>LayerNorm over the last dim: x [..., C], gamma [C], beta [C] → y [..., C].</summary>
    public static Tensor LayerNorm(Tape tape, Tensor x, Tensor gamma, Tensor beta, float eps)
    {
        const string op = "LayerNorm";
        using var range = Profiler.Range(tape.Backend, op);
        Check.F32(op, "x", x);
        int c = x.Shape[-1];
        Check.Shape(op, "gamma", gamma, c);
        Check.Shape(op, "beta", beta, c);
        int n = checked((int)(x.Numel / c));
        var be = tape.Backend;
        bool grad = AnyGrad(tape, x, gamma, beta);
        var y = Output(tape, x.Shape, grad);
        var mean = tape.Arena.Allocate(n);
        var rstd = tape.Arena.Allocate(n);
        be.LayerNormForward(y, mean, rstd, x, gamma, beta, n, c, eps);
        if (grad)
            tape.Record(new TapeNode { Backward = LayerNormBackward, Output = y, X0 = x, X1 = gamma, X2 = beta, X3 = mean, X4 = rstd, I0 = n, I1 = c });
        return y;
    }

    private static void LayerNormBackward(Tape tape, in TapeNode node) =>
        tape.Backend.LayerNormBackward(tape.GradOrNull(node.X0), tape.GradOrNull(node.X1), tape.GradOrNull(node.X2),
                                       tape.Grad(node.Output), node.X0!, node.X1!, node.X3!, node.X4!, node.I0, node.I1);

    /// <summary>RMSNorm over the last dim: x [..., C], gamma [C] → y [..., C].</summary>
    public static Tensor RmsNorm(Tape tape, Tensor x, Tensor gamma, float eps)
    {
        const string op = "RmsNorm";
        using var range = Profiler.Range(tape.Backend, op);
        Check.F32(op, "x", x);
        int c = x.Shape[-1];
        Check.Shape(op, "gamma", gamma, c);
        int n = checked((int)(x.Numel / c));
        var be = tape.Backend;
        bool grad = AnyGrad(tape, x, gamma);
        var y = Output(tape, x.Shape, grad);
        var rstd = tape.Arena.Allocate(n);
        be.RmsNormForward(y, rstd, x, gamma, n, c, eps);
        if (grad) tape.Record(new TapeNode { Backward = RmsNormBackward, Output = y, X0 = x, X1 = gamma, X2 = rstd, I0 = n, I1 = c });
        return y;
    }

    private static void RmsNormBackward(Tape tape, in TapeNode node) =>
        tape.Backend.RmsNormBackward(tape.GradOrNull(node.X0), tape.GradOrNull(node.X1), tape.Grad(node.Output),
                                     node.X0!, node.X1!, node.X2!, node.I0, node.I1);

    /// <summary>act(x), any shape → same shape.</summary>
    public static Tensor Activation(Tape tape, Tensor x, Activation act)
    {
        Check.F32(nameof(Activation), "x", x);
        var be = tape.Backend;
        bool grad = AnyGrad(tape, x);
        var y = Output(tape, x.Shape, grad);
        be.ActivationForward(y, x, x.Numel, act);
        if (grad) tape.Record(new TapeNode { Backward = ActivationBackward, Output = y, X0 = x, I0 = (int)act });
        return y;
    }

    private static void ActivationBackward(Tape tape, in TapeNode node)
    {
        var x = node.X0!;
        var dy = tape.Grad(node.Output);
        if (tape.GradOrNull(x, out bool overwrite) is { } dx) tape.Backend.ActivationBackward(dx, dy, x, x.Numel, (Activation)node.I0, !overwrite);
    }

    /// <summary>silu(gate)·up, gate and up of one shape → that shape.</summary>
    public static Tensor SwiGlu(Tape tape, Tensor gate, Tensor up)
    {
        const string op = "SwiGlu";
        using var range = Profiler.Range(tape.Backend, op);
        Check.F32(op, "gate", gate);
        Check.F32(op, "up", up);
        if (gate.Shape != up.Shape) throw new ArgumentException($"{op}: gate {gate.Shape} and up {up.Shape} differ");
        var be = tape.Backend;
        bool grad = AnyGrad(tape, gate, up);
        var y = Output(tape, gate.Shape, grad);
        be.SwiGluForward(y, gate, up, gate.Numel);
        if (grad) tape.Record(new TapeNode { Backward = SwiGluBackward, Output = y, X0 = gate, X1 = up });
        return y;
    }

    private static void SwiGluBackward(Tape tape, in TapeNode node)
    {
        Tensor gate = node.X0!, up = node.X1!, dy = tape.Grad(node.Output);
        var (dgate, dup, _, accumulate) = GradsOf(tape, gate, up, null);
        tape.Backend.SwiGluBackward(dgate, dup, dy, gate, up, gate.Numel, accumulate);
    }

    /// <summary>
    /// Inverted dropout of x, any shape → that shape: each element kept with probability 1 − rate and scaled by
    /// 1/(1 − rate), by the mask <see cref="DropoutMask"/> draws from seed; backward recomputes the mask. Rate 0 returns x.
    /// </summary>
    public static Tensor Dropout(Tape tape, Tensor x, float rate, ulong seed)
    {
        const string op = "Dropout";
        if (!(rate >= 0 && rate < 1)) throw new ArgumentOutOfRangeException(nameof(rate), rate, $"{op}: rate must be in [0, 1)");
        if (rate == 0) return x;
        using var range = Profiler.Range(tape.Backend, op);
        Check.F32(op, "x", x);
        bool grad = AnyGrad(tape, x);
        var y = Output(tape, x.Shape, grad);
        tape.Backend.Dropout(y, x, x.Numel, rate, seed, accumulate: false);
        if (grad) tape.Record(new TapeNode { Backward = DropoutBackward, Output = y, X0 = x, F0 = rate, I0 = (int)(uint)seed, I1 = (int)(uint)(seed >> 32) });
        return y;
    }

    private static void DropoutBackward(Tape tape, in TapeNode node)
    {
        var x = node.X0!;
        ulong seed = (uint)node.I0 | (ulong)(uint)node.I1 << 32;
        if (tape.GradOrNull(x, out bool overwrite) is { } dx)
            tape.Backend.Dropout(dx, tape.Grad(node.Output), x.Numel, node.F0, seed, accumulate: !overwrite);
    }

    /// <summary>a + b of one shape → that shape (the residual stream).</summary>
    public static Tensor Add(Tape tape, Tensor a, Tensor b)
    {
        const string op = "Add";
        using var range = Profiler.Range(tape.Backend, op);
        Check.F32(op, "a", a);
        Check.F32(op, "b", b);
        if (a.Shape != b.Shape) throw new ArgumentException($"{op}: a {a.Shape} and b {b.Shape} differ");
        var be = tape.Backend;
        bool grad = AnyGrad(tape, a, b);
        var y = Output(tape, a.Shape, grad);
        be.Add(y, a, b, a.Numel);
        if (grad) tape.Record(new TapeNode { Backward = AddBackward, Output = y, X0 = a, X1 = b });
        return y;
    }

    private static void AddBackward(Tape tape, in TapeNode node)
    {
        var dy = tape.Grad(node.Output);
        AccumulateGrad(tape, node.X0, dy);
        AccumulateGrad(tape, node.X1, dy);
    }

    /// <summary>The gradient of t (if it needs one) += dy, or = dy where dy is the first to reach it.</summary>
    private static void AccumulateGrad(Tape tape, Tensor? t, Tensor dy)
    {
        if (tape.GradOrNull(t, out bool overwrite) is not { } g) return;
        if (overwrite) tape.Backend.Copy(g, dy, dy.Numel);
        else tape.Backend.Axpy(g, dy, dy.Numel, 1f);
    }

    /// <summary>
    /// The gradients of up to three inputs for a backward that writes them all in one call, and whether it must add to
    /// them: it may store only when it is the first to reach each (see Tape.GradOrNull) and they share no element. Where
    /// some were reached before, those reached first are zeroed and all are added to.
    /// </summary>
    private static (Tensor? A, Tensor? B, Tensor? C, bool Accumulate) GradsOf(Tape tape, Tensor? a, Tensor? b, Tensor? c)
    {
        if (tape.GradientsOverlap(a, b) || tape.GradientsOverlap(a, c) || tape.GradientsOverlap(b, c))
            return (tape.GradOrNull(a), tape.GradOrNull(b), tape.GradOrNull(c), true);
        Tensor? ga = tape.GradOrNull(a, out bool sa), gb = tape.GradOrNull(b, out bool sb), gc = tape.GradOrNull(c, out bool sc);
        if ((ga is null || sa) && (gb is null || sb) && (gc is null || sc)) return (ga, gb, gc, false);
        if (sa) tape.Backend.Fill(ga!, 0f);
        if (sb) tape.Backend.Fill(gb!, 0f);
        if (sc) tape.Backend.Fill(gc!, 0f);
        return (ga, gb, gc, true);
    }

    /// <summary>A backward GEMM's beta: store into a gradient nothing reached before (see Tape.GradOrNull), else add.</summary>
    private static float Beta(bool overwrite) => overwrite ? 0f : 1f;

    /// <summary>x [N,C] + bias [P,C] with row n taking bias row n mod P (position embeddings) → [N,C].</summary>
    public static Tensor AddRows(Tape tape, Tensor x, Tensor bias)
    {
        const string op = "AddRows";
        using var range = Profiler.Range(tape.Backend, op);
        Check.Rank(op, "bias", bias, 2);
        int p = bias.Shape[0], c = bias.Shape[1];
        Check.F32(op, "x", x);
        if (x.Shape[-1] != c || x.Numel / c % p != 0)
            throw new ArgumentException($"{op}: x {x.Shape} is not a whole number of [{p},{c}] blocks of bias");
        int n = checked((int)(x.Numel / c));
        var be = tape.Backend;
        bool grad = AnyGrad(tape, x, bias);
        var y = Output(tape, x.Shape, grad);
        be.Copy(y, x, x.Numel);
        be.BiasAdd(y, bias, n, c, p);
        if (grad) tape.Record(new TapeNode { Backward = AddRowsBackward, Output = y, X0 = x, X1 = bias, I0 = n, I1 = c, I2 = p });
        return y;
    }

    private static void AddRowsBackward(Tape tape, in TapeNode node)
    {
        var dy = tape.Grad(node.Output);
        AccumulateGrad(tape, node.X0, dy);
        if (tape.GradOrNull(node.X1) is { } db) tape.Backend.BiasBackward(db, dy, node.I0, node.I1, node.I2);
    }

    /// <summary>
    /// Causal or bidirectional attention: q [B,T,H,D], k and v [B,T,Hkv,D] → o [B,T,H,D]; keyLengths (host [B],
    /// optional) masks right padding. Scale 1/√D.
    /// </summary>
    public static Tensor Attention(Tape tape, Tensor q, Tensor k, Tensor v, ReadOnlySpan<int> keyLengths, bool causal)
    {
        const string op = "Attention";
        using var range = Profiler.Range(tape.Backend, op);
        Check.Rank(op, "q", q, 4);
        int b = q.Shape[0], t = q.Shape[1], h = q.Shape[2], d = q.Shape[3];
        Check.Rank(op, "k", k, 4);
        int hkv = k.Shape[2];
        Check.Shape(op, "k", k, b, t, hkv, d);
        Check.Shape(op, "v", v, b, t, hkv, d);
        if (hkv == 0 || h % hkv != 0) throw new ArgumentException($"{op}: {h} query heads are not a multiple of {hkv} kv heads");
        Tensor? lens = null;
        if (!keyLengths.IsEmpty)
        {
            Check.Count(op, "keyLengths", keyLengths.Length, b);
            Check.Indices(op, "keyLengths", keyLengths, 0, t + 1);
            lens = tape.Indices(keyLengths);
        }
        float scale = 1f / MathF.Sqrt(d);
        var be = tape.Backend;
        bool grad = AnyGrad(tape, q, k, v);
        var o = Output(tape, q.Shape, grad);
        var lse = tape.Arena.Allocate(b, h, t);
        be.AttentionForward(o, lse, q, k, v, lens, b, t, t, t, h, hkv, d, causal, scale);
        if (grad)
            tape.Record(new TapeNode
            {
                Backward = AttentionBackward, Output = o, X0 = q, X1 = k, X2 = v, X3 = lse, X4 = lens,
                I0 = b, I1 = t, I2 = h, I3 = hkv, I4 = d, Flag = causal, F0 = scale,
            });
        return o;
    }

    private static void AttentionBackward(Tape tape, in TapeNode node)
    {
        Tensor q = node.X0!, k = node.X1!, v = node.X2!, o = node.Output, dO = tape.Grad(o);
        int t = node.I1;
        var (dq, dk, dv, accumulate) = GradsOf(tape, q, k, v);
        tape.Backend.AttentionBackward(dq, dk, dv, dO, q, k, v, o, node.X3!, node.X4, node.I0, t, t, t, node.I2, node.I3, node.I4,
                                       node.Flag, node.F0, accumulate);
    }

    /// <summary>
    /// Inference attention over a KV cache: q [B,Tq,H,D], caches [B,S,Hkv,D] holding tk rows in use, keyLengths I32 [B]
    /// on the device (each ≤ tk, checked by the cache that wrote them) → o [B,Tq,H,D]. Query t of sample b sits at slot
    /// tk − Tq + t and sees its first keyLengths[b] slots: one query per sample (decode) attends to any prefix; several
    /// (prefill) attend causally.
    /// </summary>
    public static Tensor AttentionCached(Tape tape, Tensor q, Tensor kCache, Tensor vCache, int tk, Tensor keyLengths)
    {
        const string op = "AttentionCached";
        using var range = Profiler.Range(tape.Backend, op);
        if (tape.IsRecording) throw new InvalidOperationException($"{op}: the KV cache is for inference; no gradients flow through it");
        Check.Rank(op, "q", q, 4);
        Check.Rank(op, "kCache", kCache, 4);
        int b = q.Shape[0], tq = q.Shape[1], h = q.Shape[2], d = q.Shape[3], s = kCache.Shape[1], hkv = kCache.Shape[2];
        Check.Shape(op, "kCache", kCache, b, s, hkv, d);
        Check.Shape(op, "vCache", vCache, b, s, hkv, d);
        if (hkv == 0 || h % hkv != 0) throw new ArgumentException($"{op}: {h} query heads are not a multiple of {hkv} kv heads");
        if (tk < tq || tk > s) throw new ArgumentException($"{op}: {tk} keys in use for {tq} queries and capacity {s}");
        CheckIndexTensor(op, "keyLengths", keyLengths, b);
        var o = tape.Arena.Allocate(q.Shape);
        var lse = tape.Arena.Allocate(b, h, tq);
        tape.Backend.AttentionForward(o, lse, q, kCache, vCache, keyLengths, b, tq, tk, s, h, hkv, d, tq > 1, 1f / MathF.Sqrt(d));
        return o;
    }

    /// <summary>Rotate-half RoPE: x [B,T,H,D], positions host [B·T] → [B,T,H,D].</summary>
    public static Tensor Rope(Tape tape, Tensor x, ReadOnlySpan<int> positions, float theta)
    {
        const string op = "Rope";
        Check.Rank(op, "x", x, 4);
        Check.Count(op, "positions", positions.Length, x.Shape[0] * x.Shape[1]);
        Check.Indices(op, "positions", positions, 0, int.MaxValue);
        return Rope(tape, x, tape.Indices(positions), theta);
    }

    /// <summary>Rotate-half RoPE: x [B,T,H,D], positions I32 [B·T] on the device (non-negative) → [B,T,H,D].</summary>
    public static Tensor Rope(Tape tape, Tensor x, Tensor positions, float theta)
    {
        const string op = "Rope";
        using var range = Profiler.Range(tape.Backend, op);
        Check.Rank(op, "x", x, 4);
        int b = x.Shape[0], t = x.Shape[1], h = x.Shape[2], d = x.Shape[3];
        if (d % 2 != 0) throw new ArgumentException($"{op}: head dim {d} must be even");
        CheckIndexTensor(op, "positions", positions, (long)b * t);
        bool grad = AnyGrad(tape, x);
        var y = Output(tape, x.Shape, grad);
        tape.Backend.RopeForward(y, x, positions, b, t, h, d, theta);
        if (grad) tape.Record(new TapeNode { Backward = RopeBackward, Output = y, X0 = x, X1 = positions, I0 = b, I1 = t, I2 = h, I3 = d, F0 = theta });
        return y;
    }

    private static void RopeBackward(Tape tape, in TapeNode node)
    {
        var dy = tape.Grad(node.Output);
        if (tape.GradOrNull(node.X0, out bool overwrite) is { } dx)
            tape.Backend.RopeBackward(dx, dy, node.X1!, node.I0, node.I1, node.I2, node.I3, node.F0, !overwrite);
    }

    /// <summary>img [B,Cin,Hi,Wi] with w [C,Cin,P,P] (stride-P convolution, no bias) → [B, (Hi/P)(Wi/P), C].</summary>
    public static Tensor PatchEmbed(Tape tape, Tensor img, Tensor w)
    {
        const string op = "PatchEmbed";
        using var range = Profiler.Range(tape.Backend, op);
        Check.Rank(op, "img", img, 4);
        Check.Rank(op, "w", w, 4);
        int b = img.Shape[0], cin = img.Shape[1], hi = img.Shape[2], wi = img.Shape[3];
        int c = w.Shape[0], p = w.Shape[2];
        Check.Shape(op, "w", w, c, cin, p, p);
        if (p == 0 || hi % p != 0 || wi % p != 0)
            throw new ArgumentException($"{op}: image {hi}x{wi} is not a multiple of patch {p}");
        int np = hi / p * (wi / p);
        var be = tape.Backend;
        bool grad = AnyGrad(tape, w);
        if (tape.RequiresGrad(img)) throw new NotSupportedException($"{op}: gradients with respect to the image are not computed");
        var y = Output(tape, new Shape(b, np, c), grad);
        be.PatchEmbedForward(y, img, w, b, cin, hi, wi, p, c);
        if (grad)
            tape.Record(new TapeNode
            {
                Backward = PatchEmbedBackward, Output = y, X0 = img, X1 = w, I0 = b, I1 = cin, I2 = hi, I3 = wi, I4 = p, I5 = c,
            });
        return y;
    }

    private static void PatchEmbedBackward(Tape tape, in TapeNode node) =>
        tape.Backend.PatchEmbedBackward(tape.Grad(node.X1!), tape.Grad(node.Output), node.X0!, node.I0, node.I1, node.I2, node.I3, node.I4, node.I5);

    /// <summary>
    /// Row gather: map host [R] picks srcA [SA,C] rows (≥0), srcB [SB,C] rows (−2−m for m ≤ −2) or zeros (−1) → [R,C].
    /// Token embedding, the LLaVA image splice and CLS dropping are all this op.
    /// </summary>
    public static Tensor Gather(Tape tape, Tensor srcA, Tensor? srcB, ReadOnlySpan<int> map)
    {
        const string op = "Gather";
        Check.Rank(op, "srcA", srcA, 2);
        int sa = srcA.Shape[0], sb = srcB?.Shape[0] ?? 0;
        for (int i = 0; i < map.Length; i++)
        {
            int m = map[i];
            if (m >= sa || (m <= -2 && -2 - m >= sb))
                throw new ArgumentOutOfRangeException(nameof(map), $"{op}: map[{i}] = {m} is out of range (srcA has {sa} rows, srcB {sb})");
        }
        return Gather(tape, srcA, srcB, tape.Indices(map), map.Length);
    }

    /// <summary>
    /// Row gather with map I32 [≥ rows] on the device, its values in range (not checked here) → [rows, C]. When no map
    /// entry repeats a row of srcA and srcB is null, <paramref name="inverse"/> I32 [≥ SA] may give, for each srcA row,
    /// the output row that reads it or −1 (also not checked): the backward, when it is the first to reach srcA's
    /// gradient, then gathers dy's rows by it into every row of that gradient instead of zeroing it and scatter-adding
    /// (a padded batch's packing and unpacking, a few times a layer).
    /// </summary>
    public static Tensor Gather(Tape tape, Tensor srcA, Tensor? srcB, Tensor map, int rows, Tensor? inverse = null)
    {
        const string op = "Gather";
        using var range = Profiler.Range(tape.Backend, op);
        Check.Rank(op, "srcA", srcA, 2);
        int c = srcA.Shape[1];
        if (srcB is not null)
        {
            Check.Rank(op, "srcB", srcB, 2);
            if (srcB.Shape[1] != c) throw new ArgumentException($"{op}: srcA {srcA.Shape} and srcB {srcB.Shape} differ in width");
            if (inverse is not null) throw new ArgumentException($"{op}: an inverse map covers srcA alone, and srcB is given");
        }
        CheckIndexTensor(op, "map", map, rows);
        if (inverse is not null) CheckIndexTensor(op, "inverse", inverse, srcA.Shape[0]);
        bool grad = AnyGrad(tape, srcA, srcB);
        var y = Output(tape, new Shape(rows, c), grad);
        tape.Backend.GatherRows(y, srcA, srcB, map, rows, c);
        if (grad) tape.Record(new TapeNode { Backward = GatherBackward, Output = y, X0 = srcA, X1 = srcB, X2 = map, X3 = inverse, I0 = rows, I1 = c });
        return y;
    }

    // With an inverse map, a stored gradient row is dy's row as is (or zeros), where the scatter adds that row to zeros.
    private static void GatherBackward(Tape tape, in TapeNode node)
    {
        Tensor srcA = node.X0!, dy = tape.Grad(node.Output);
        bool overwrite = false;
        var dA = node.X3 is null ? tape.GradOrNull(srcA) : tape.GradOrNull(srcA, out overwrite);
        if (overwrite) tape.Backend.GatherRows(dA!, dy, null, node.X3!, srcA.Shape[0], node.I1);
        else tape.Backend.GatherRowsBackward(dA, tape.GradOrNull(node.X1), dy, node.X2!, node.I0, node.I1);
    }

    /// <summary>Row softmax: x [N,V] → p [N,V].</summary>
    public static Tensor Softmax(Tape tape, Tensor x)
    {
        const string op = "Softmax";
        using var range = Profiler.Range(tape.Backend, op);
        Check.Rank(op, "x", x, 2);
        int n = x.Shape[0], v = x.Shape[1];
        var be = tape.Backend;
        bool grad = AnyGrad(tape, x);
        var y = Output(tape, x.Shape, grad);
        be.SoftmaxForward(y, x, n, v);
        if (grad) tape.Record(new TapeNode { Backward = SoftmaxBackward, Output = y, X0 = x, I0 = n, I1 = v });
        return y;
    }

    private static void SoftmaxBackward(Tape tape, in TapeNode node) =>
        tape.Backend.SoftmaxBackward(tape.Grad(node.X0!), tape.Grad(node.Output), node.Output, node.I0, node.I1);

    /// <summary>
    /// Mean softmax cross-entropy of logits [N,V] against targets host [N] (−100 ignored) times weight. The loss is a
    /// root: when recording, its gradient (weight/count)·(softmax − onehot) is written into logits' gradient now.
    /// A batch with no counted row gives 0 and no gradient.
    /// </summary>
    public static LossResult CrossEntropy(Tape tape, Tensor logits, ReadOnlySpan<int> targets, float weight = 1f)
    {
        const string op = "CrossEntropy";
        using var range = Profiler.Range(tape.Backend, op);
        Check.Rank(op, "logits", logits, 2);
        int n = logits.Shape[0], v = logits.Shape[1];
        Check.Count(op, "targets", targets.Length, n);
        IndexChecks.Targets(op, targets, v);
        int count = 0;
        foreach (int t in targets) if (t != IndexChecks.IgnoreIndex) count++;
        var tg = tape.Indices(targets);
        var losses = tape.Arena.Allocate(n);
        float scale = count == 0 ? 0f : weight / count;
        bool overwrite = false;
        var dlogits = count > 0 ? tape.GradOrNull(logits, out overwrite) : null;
        tape.Backend.CrossEntropy(losses, dlogits, logits, tg, n, v, scale, !overwrite);
        return new LossResult(count == 0 ? 0 : SumInOrder(tape, losses) / count, count, losses);
    }

    /// <summary>
    /// Mean squared error of x [N,C] against target [N,C] over all N·C entries, times weight. A root like CrossEntropy:
    /// when recording, its gradient (2·weight/(N·C))·(x − target) is added to x's gradient now.
    /// </summary>
    public static LossResult SquaredError(Tape tape, Tensor x, Tensor target, float weight = 1f)
    {
        const string op = "SquaredError";
        using var range = Profiler.Range(tape.Backend, op);
        Check.Rank(op, "x", x, 2);
        Check.F32(op, "x", x);
        Check.F32(op, "target", target);
        if (target.Shape != x.Shape) throw new ArgumentException($"{op}: target has shape {target.Shape}, expected {x.Shape}");
        var be = tape.Backend;
        var diff = tape.Arena.Allocate(x.Shape);
        be.Copy(diff, x, x.Numel);
        be.Axpy(diff, target, x.Numel, -1f);
        var sum = tape.Arena.Allocate(1);
        be.SumSquares(sum, 0, diff, x.Numel);
        if (tape.GradOrNull(x) is { } dx) be.Axpy(dx, diff, x.Numel, 2f * weight / x.Numel);
        return new LossResult(SumInOrder(tape, sum) / x.Numel, x.Shape[0], null);
    }

    /// <summary>
    /// VW-LMM visual-word loss: mean over pairs host [N·2] = (lmRow, vmRow) of KL(p‖q) (forward) or KL(q‖p) (reverse),
    /// p = softmax(vmLogits [Nimg,V] row), q = softmax(lmLogits [R,V] row), times weight. A root like CrossEntropy;
    /// detach stops the gradient into the VM logits. N = 0 gives 0, not NaN (METHOD §6.6).
    /// </summary>
    public static LossResult VisualWordKl(Tape tape, Tensor lmLogits, Tensor vmLogits, ReadOnlySpan<int> pairs,
                                          float weight = 1f, bool reverse = false, bool detach = false)
    {
        const string op = "VisualWordKl";
        using var range = Profiler.Range(tape.Backend, op);
        Check.Rank(op, "lmLogits", lmLogits, 2);
        Check.Rank(op, "vmLogits", vmLogits, 2);
        int v = lmLogits.Shape[1];
        if (vmLogits.Shape[1] != v) throw new ArgumentException($"{op}: lmLogits {lmLogits.Shape} and vmLogits {vmLogits.Shape} differ in vocabulary");
        if (pairs.Length % 2 != 0) throw new ArgumentException($"{op}: pairs has odd length {pairs.Length}");
        int n = pairs.Length / 2;
        IndexChecks.VisualWordPairs(op, pairs, lmLogits.Shape[0], vmLogits.Shape[0]);
        var losses = tape.Arena.Allocate(Math.Max(1, n));
        if (n == 0) return new LossResult(0, 0, losses);
        var pr = tape.Indices(pairs);
        float scale = weight / n;
        tape.Backend.VisualWordKl(losses, tape.GradOrNull(lmLogits), detach ? null : tape.GradOrNull(vmLogits),
                                  lmLogits, vmLogits, pr, n, v, reverse, scale);
        return new LossResult(SumInOrder(tape, losses.View(0, new Shape(n))) / n, n, losses);
    }

    // Losses are summed on the host in double, in row order: bit-identical across backends' thread counts.
    private static double SumInOrder(Tape tape, Tensor t)
    {
        var host = tape.HostScratch(checked((int)t.Numel));
        tape.Backend.Download<float>(t, host);
        double s = 0;
        foreach (float x in host) s += x;
        return s;
    }
}
