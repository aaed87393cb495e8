using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using VwLmm.Core;

namespace VwLmm.Cpu;

// Elementwise ops and activations. Flat [n] work is cut into fixed blocks of ElementBlock elements, so where the
// vector loop ends and the padded tail begins depends on n alone: every result bit is independent of the thread count.
public sealed unsafe partial class CpuBackend
{
    private const int ElementBlock = 2048;

    /// <summary>A pure function of up to four input streams producing one output stream.</summary>
    private interface IMap
    {
        static abstract int Inputs { get; }
        TV Apply<TV>(TV a, TV b, TV c, TV d) where TV : unmanaged, IVec<TV>;
    }

    private struct MapJob<TOp> : ISimdJob where TOp : struct, IMap
    {
        public TOp Op;
        public float* Y, A, B, C, D;
        public long N;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            long i = (long)start * ElementBlock, hi = Math.Min((long)end * ElementBlock, N);
            for (; i + TV.Count <= hi; i += TV.Count) Step<TV>(Y + i, A + i, B + i, C + i, D + i);
            if (i < hi) Tail<TV>(i, (int)(hi - i));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private readonly void Step<TV>(float* y, float* a, float* b, float* c, float* d) where TV : unmanaged, IVec<TV>
        {
            TV va = TV.Load(a);
            TV vb = TOp.Inputs > 1 ? TV.Load(b) : TV.Zero;
            TV vc = TOp.Inputs > 2 ? TV.Load(c) : TV.Zero;
            TV vd = TOp.Inputs > 3 ? TV.Load(d) : TV.Zero;
            Op.Apply(va, vb, vc, vd).Store(y);
        }

        // The last partial vector goes through the same vector code on zero-padded copies, so a tail element gets
        // exactly the bits it would get inside a full vector.
        private readonly void Tail<TV>(long i, int rem) where TV : unmanaged, IVec<TV>
        {
            const int W = 16;
            float* buf = stackalloc float[5 * W];
            new Span<float>(buf, 5 * W).Clear();
            CopyIn(buf + 1 * W, A + i, rem, 1);
            CopyIn(buf + 2 * W, B + i, rem, 2);
            CopyIn(buf + 3 * W, C + i, rem, 3);
            CopyIn(buf + 4 * W, D + i, rem, 4);
            Step<TV>(buf, buf + W, buf + 2 * W, buf + 3 * W, buf + 4 * W);
            new Span<float>(buf, rem).CopyTo(new Span<float>(Y + i, rem));
        }

        private static void CopyIn(float* dst, float* src, int rem, int input)
        {
            if (TOp.Inputs >= input) new Span<float>(src, rem).CopyTo(new Span<float>(dst, rem));
        }
    }

    private static int BlockCount(long n) => checked((int)((n + ElementBlock - 1) / ElementBlock));

    private void Map<TOp>(TOp op, float* y, long n, float* a, float* b = null, float* c = null, float* d = null)
        where TOp : struct, IMap
    {
        var job = new MapJob<TOp> { Op = op, Y = y, A = a, B = b, C = c, D = d, N = n };
        ParallelFor(BlockCount(n), job, MinTasksPerChunk(ElementBlock));
    }

    private struct FillJob : IRangeJob
    {
        public float* X;
        public long N;
        public float Value;

        public void Execute(int start, int end)
        {
            long lo = (long)start * ElementBlock, hi = Math.Min((long)end * ElementBlock, N);
            new Span<float>(X + lo, (int)(hi - lo)).Fill(Value);
        }
    }

    private struct CopyJob : IRangeJob
    {
        public float* Dst, Src;
        public long N;

        public void Execute(int start, int end)
        {
            long lo = (long)start * ElementBlock, hi = Math.Min((long)end * ElementBlock, N);
            long bytes = (hi - lo) * sizeof(float);
            Buffer.MemoryCopy(Src + lo, Dst + lo, bytes, bytes);
        }
    }

    public void Fill(Tensor x, float value)
    {
        var job = new FillJob { X = F(x), N = x.Numel, Value = value };
        Pool.For(BlockCount(x.Numel), job, MinTasksPerChunk(ElementBlock));
    }

    public void Copy(Tensor dst, Tensor src, long n)
    {
        var job = new CopyJob { Dst = F(dst), Src = F(src), N = n };
        Pool.For(BlockCount(n), job, MinTasksPerChunk(ElementBlock));
    }

    public void Add(Tensor y, Tensor a, Tensor b, long n) => Map(new AddOp(), F(y), n, F(a), F(b));

    public void Axpy(Tensor y, Tensor x, long n, float alpha) => Map(new AxpyOp(alpha), F(y), n, F(y), F(x));

    public void Scale(Tensor x, long n, float alpha) => Map(new ScaleOp(alpha), F(x), n, F(x));

    private struct BiasAddJob : ISimdJob
    {
        public float* X, Bias;
        public int C, P;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            for (int n = start; n < end; n++) SimdMath.AddInto<TV>(X + (long)n * C, Bias + (long)(n % P) * C, C);
        }
    }

    public void BiasAdd(Tensor x, Tensor bias, int N, int C, int P)
    {
        var job = new BiasAddJob { X = F(x), Bias = F(bias), C = C, P = P };
        ParallelFor(N, job, MinTasksPerChunk(C));
    }

    public void BiasBackward(Tensor dbias, Tensor dy, int N, int C, int P) =>
        ScatterAddRows(F(dbias), null, null, P, F(dy), N, C);

    public void ActivationForward(Tensor y, Tensor x, long n, Activation act)
    {
        switch (act)
        {
            case Activation.Gelu: Map(new GeluForward(), F(y), n, F(x)); break;
            case Activation.QuickGelu: Map(new QuickGeluForward(), F(y), n, F(x)); break;
            case Activation.Silu: Map(new SiluForward(), F(y), n, F(x)); break;
            default: throw new ArgumentOutOfRangeException(nameof(act), act, "unknown activation");
        }
    }

    public void ActivationBackward(Tensor dx, Tensor dy, Tensor x, long n, Activation act, bool accumulate)
    {
        // A store reads dy in dx's place and adds zero instead: the fused multiply-add keeps the bits of adding to zeros.
        float* prior = accumulate ? F(dx) : F(dy);
        switch (act)
        {
            case Activation.Gelu: Map(new GeluBackward { Accumulate = accumulate }, F(dx), n, prior, F(dy), F(x)); break;
            case Activation.QuickGelu: Map(new QuickGeluBackward { Accumulate = accumulate }, F(dx), n, prior, F(dy), F(x)); break;
            case Activation.Silu: Map(new SiluBackward { Accumulate = accumulate }, F(dx), n, prior, F(dy), F(x)); break;
            default: throw new ArgumentOutOfRangeException(nameof(act), act, "unknown activation");
        }
    }

    private struct DropoutJob : IRangeJob
    {
        public float* Y, X;
        public long N;
        public ulong Seed;
        public uint Threshold;
        public float Scale;
        public bool Accumulate;

        public readonly void Execute(int start, int end)
        {
            long i = (long)start * ElementBlock, hi = Math.Min((long)end * ElementBlock, N);
            // 16 elements at a time where 64-bit lanes multiply in hardware; the hash's integer steps and the one float
            // multiply are those of DropoutMask, so every element gets the scalar loop's bits.
            if (Avx512DQ.IsSupported)
                for (; i + 16 <= hi; i += 16)
                {
                    var high = Vector512.Narrow(Hash(i) >>> 32, Hash(i + 8) >>> 32);
                    var keep = Vector512.GreaterThanOrEqual(high, Vector512.Create(Threshold)).AsSingle();
                    var v = Vector512.ConditionalSelect(keep, Vector512.Load(X + i) * Scale, Vector512<float>.Zero);
                    (Accumulate ? Vector512.Load(Y + i) + v : v).Store(Y + i);
                }
            for (; i < hi; i++)
            {
                float v = DropoutMask.Keeps(Seed, i, Threshold) ? X[i] * Scale : 0f;
                Y[i] = Accumulate ? Y[i] + v : v;
            }
        }

        /// <summary>SplitMix64 outputs i … i + 7 from Seed, as <see cref="Rng.SplitMix64"/> computes each.</summary>
        private readonly Vector512<ulong> Hash(long i)
        {
            var z = Vector512.Create(Seed) + (Vector512.Create((ulong)i) + Vector512.Create(1UL, 2, 3, 4, 5, 6, 7, 8)) * Rng.Gamma;
            z = (z ^ (z >>> 30)) * Rng.Mix1;
            z = (z ^ (z >>> 27)) * Rng.Mix2;
            return z ^ (z >>> 31);
        }
    }

    public void Dropout(Tensor y, Tensor x, long n, float rate, ulong seed, bool accumulate)
    {
        var job = new DropoutJob
        {
            Y = F(y), X = F(x), N = n, Seed = seed, Threshold = DropoutMask.Threshold(rate), Scale = DropoutMask.Scale(rate),
            Accumulate = accumulate,
        };
        Pool.For(BlockCount(n), job, MinTasksPerChunk(ElementBlock));
    }

    public void SwiGluForward(Tensor y, Tensor gate, Tensor up, long n) => Map(new SwiGluOp(), F(y), n, F(gate), F(up));

    public void SwiGluBackward(Tensor? dgate, Tensor? dup, Tensor dy, Tensor gate, Tensor up, long n, bool accumulate)
    {
        // The joint pass computes both before storing either (its tail through copies), so one buffer for both (the
        // gradient of silu(x)·x) takes the two passes, the second adding to what the first left.
        if (dgate is not null && dup is not null && dgate.Ptr != dup.Ptr)
        {
            var job = new SwiGluBackwardJob { DGate = F(dgate), DUp = F(dup), DY = F(dy), Gate = F(gate), Up = F(up), N = n, Accumulate = accumulate };
            ParallelFor(BlockCount(n), job, MinTasksPerChunk(ElementBlock));
            return;
        }
        if (dgate is not null) Map(new SwiGluGateBackward { Accumulate = accumulate }, F(dgate), n, accumulate ? F(dgate) : F(dy), F(dy), F(gate), F(up));
        if (dup is not null) Map(new SwiGluUpBackward { Accumulate = accumulate }, F(dup), n, accumulate ? F(dup) : F(dy), F(dy), F(gate));
    }

    /// <summary>
    /// Both SwiGLU input gradients in one pass: the gate's sigmoid, the op's costliest part, is computed once and dy,
    /// gate and up are read once, where one pass per gradient did both twice. Same operations as
    /// <see cref="SwiGluGateBackward"/> and <see cref="SwiGluUpBackward"/>, so the same bits.
    /// </summary>
    private struct SwiGluBackwardJob : ISimdJob
    {
        public float* DGate, DUp, DY, Gate, Up;
        public long N;
        public bool Accumulate;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            long i = (long)start * ElementBlock, hi = Math.Min((long)end * ElementBlock, N);
            for (; i + TV.Count <= hi; i += TV.Count) Step<TV>(DGate + i, DUp + i, DY + i, Gate + i, Up + i, Accumulate);
            if (i == hi) return;
            // The tail through zero-padded copies, as MapJob's: a tail element gets the bits of a full vector's.
            const int W = 16;
            int rem = (int)(hi - i);
            float* buf = stackalloc float[5 * W];
            new Span<float>(buf, 5 * W).Clear();
            float** streams = stackalloc float*[] { DGate + i, DUp + i, DY + i, Gate + i, Up + i };
            for (int k = 0; k < 5; k++) new Span<float>(streams[k], rem).CopyTo(new Span<float>(buf + k * W, rem));
            Step<TV>(buf, buf + W, buf + 2 * W, buf + 3 * W, buf + 4 * W, Accumulate);
            new Span<float>(buf, rem).CopyTo(new Span<float>(DGate + i, rem));
            new Span<float>(buf + W, rem).CopyTo(new Span<float>(DUp + i, rem));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Step<TV>(float* dgate, float* dup, float* dy, float* gate, float* up, bool accumulate) where TV : unmanaged, IVec<TV>
        {
            TV g = TV.Load(gate), d = TV.Load(dy), s = SimdMath.Sigmoid(g);
            TV.Fma(d * TV.Load(up), SiluDerivative(g, s), accumulate ? TV.Load(dgate) : TV.Zero).Store(dgate);
            TV.Fma(d, g * s, accumulate ? TV.Load(dup) : TV.Zero).Store(dup);
        }
    }

    private const float InvSqrt2 = 0.70710678118654752f;
    private const float InvSqrt2Pi = 0.39894228040143268f;
    private const float QuickGeluAlpha = 1.702f;

    private readonly struct AddOp : IMap
    {
        public static int Inputs => 2;
        public TV Apply<TV>(TV a, TV b, TV c, TV d) where TV : unmanaged, IVec<TV> => a + b;
    }

    private readonly struct AxpyOp(float alpha) : IMap
    {
        public static int Inputs => 2;
        public TV Apply<TV>(TV y, TV x, TV c, TV d) where TV : unmanaged, IVec<TV> => TV.Fma(TV.Create(alpha), x, y);
    }

    private readonly struct ScaleOp(float alpha) : IMap
    {
        public static int Inputs => 1;
        public TV Apply<TV>(TV x, TV b, TV c, TV d) where TV : unmanaged, IVec<TV> => x * TV.Create(alpha);
    }

    // gelu(x) = x·Φ(x), Φ(x) = ½(1 + erf(x/√2)); gelu'(x) = Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π).
    private readonly struct GeluForward : IMap
    {
        public static int Inputs => 1;
        public TV Apply<TV>(TV x, TV b, TV c, TV d) where TV : unmanaged, IVec<TV> => x * Cdf(x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Cdf<TV>(TV x) where TV : unmanaged, IVec<TV>
        {
            TV half = TV.Create(0.5f);
            return TV.Fma(half, SimdMath.Erf(x * TV.Create(InvSqrt2)), half);
        }
    }

    // The backward maps take (dx, dy, x[, up]) and add to dx, or to zero where Accumulate is false.
    private readonly struct GeluBackward : IMap
    {
        public bool Accumulate { get; init; }
        public static int Inputs => 3;
        public TV Apply<TV>(TV dx, TV dy, TV x, TV d) where TV : unmanaged, IVec<TV>
        {
            TV pdf = SimdMath.Exp(x * x * TV.Create(-0.5f)) * TV.Create(InvSqrt2Pi);
            return TV.Fma(dy, TV.Fma(x, pdf, GeluForward.Cdf(x)), Accumulate ? dx : TV.Zero);
        }
    }

    // quick_gelu(x) = x·σ(1.702x); derivative σ(ax)·(1 + ax·(1 − σ(ax))).
    private readonly struct QuickGeluForward : IMap
    {
        public static int Inputs => 1;
        public TV Apply<TV>(TV x, TV b, TV c, TV d) where TV : unmanaged, IVec<TV> =>
            x * SimdMath.Sigmoid(x * TV.Create(QuickGeluAlpha));
    }

    private readonly struct QuickGeluBackward : IMap
    {
        public bool Accumulate { get; init; }
        public static int Inputs => 3;
        public TV Apply<TV>(TV dx, TV dy, TV x, TV d) where TV : unmanaged, IVec<TV> =>
            TV.Fma(dy, SiluDerivative(x * TV.Create(QuickGeluAlpha)), Accumulate ? dx : TV.Zero);
    }

    // silu(x) = x·σ(x); silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
    private readonly struct SiluForward : IMap
    {
        public static int Inputs => 1;
        public TV Apply<TV>(TV x, TV b, TV c, TV d) where TV : unmanaged, IVec<TV> => x * SimdMath.Sigmoid(x);
    }

    private readonly struct SiluBackward : IMap
    {
        public bool Accumulate { get; init; }
        public static int Inputs => 3;
        public TV Apply<TV>(TV dx, TV dy, TV x, TV d) where TV : unmanaged, IVec<TV> =>
            TV.Fma(dy, SiluDerivative(x), Accumulate ? dx : TV.Zero);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV SiluDerivative<TV>(TV x) where TV : unmanaged, IVec<TV> => SiluDerivative(x, SimdMath.Sigmoid(x));

    // silu'(x) = σ(x)·(1 + x·(1 − σ(x))), given s = σ(x).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV SiluDerivative<TV>(TV x, TV s) where TV : unmanaged, IVec<TV>
    {
        TV one = TV.Create(1f);
        return s * TV.Fma(x, one - s, one);
    }

    private readonly struct SwiGluOp : IMap
    {
        public static int Inputs => 2;
        public TV Apply<TV>(TV gate, TV up, TV c, TV d) where TV : unmanaged, IVec<TV> => gate * SimdMath.Sigmoid(gate) * up;
    }

    private readonly struct SwiGluGateBackward : IMap
    {
        public bool Accumulate { get; init; }
        public static int Inputs => 4;
        public TV Apply<TV>(TV dgate, TV dy, TV gate, TV up) where TV : unmanaged, IVec<TV> =>
            TV.Fma(dy * up, SiluDerivative(gate), Accumulate ? dgate : TV.Zero);
    }

    private readonly struct SwiGluUpBackward : IMap
    {
        public bool Accumulate { get; init; }
        public static int Inputs => 3;
        public TV Apply<TV>(TV dup, TV dy, TV gate, TV d) where TV : unmanaged, IVec<TV> =>
            TV.Fma(dy, gate * SimdMath.Sigmoid(gate), Accumulate ? dup : TV.Zero);
    }
}
