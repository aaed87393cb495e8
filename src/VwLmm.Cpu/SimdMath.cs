using System.Runtime.CompilerServices;

namespace VwLmm.Cpu;

/// <summary>
/// Vector math and row kernels of the CPU ops, written once over <see cref="IVec{TSelf}"/>; the calling job picks the
/// width (see <see cref="WidestSimd{TJob}"/>). Row kernels run whole vectors, then a scalar tail that continues the
/// same accumulation, so a row's result depends only on its length.
/// </summary>
internal static unsafe class SimdMath
{
    /// <summary>
    /// eˣ in float, within 1 ulp over the whole float range, subnormal results included; ±∞ and NaN behave as in
    /// MathF.Exp. Cody–Waite reduction x = n·ln2 + r (ln2 split in two so n·ln2 is exact), Cephes' degree-7 polynomial
    /// for eʳ on |r| ≤ ln2/2, then the exponent. About 1.5× as fast as Vector512.Exp, which evaluates in double.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exp<TV>(TV x) where TV : unmanaged, IVec<TV>
    {
        // e^88.8 overflows and e^−104 underflows to 0 in float, so clamping there changes no result.
        x = TV.Max(TV.Min(x, TV.Create(88.8f)), TV.Create(-104f));
        TV n = TV.Round(x * TV.Create(1.44269504f));
        TV r = TV.Fma(n, TV.Create(-0.693359375f), x);
        r = TV.Fma(n, TV.Create(2.12194440e-4f), r);
        TV p = TV.Create(1.9875691500e-4f);
        p = TV.Fma(p, r, TV.Create(1.3981999507e-3f));
        p = TV.Fma(p, r, TV.Create(8.3334519073e-3f));
        p = TV.Fma(p, r, TV.Create(4.1665795894e-2f));
        p = TV.Fma(p, r, TV.Create(1.6666665459e-1f));
        p = TV.Fma(p, r, TV.Create(5.0000001201e-1f));
        return TV.ScaleB(TV.Fma(p, r * r, r) + TV.Create(1f), n);
    }

    /// <summary>
    /// erf(x) in float, max error 1.2 ulp / 7e-8 absolute. Two branch-free pieces, blended per lane:
    /// |x| &lt; 0.921875: x + x·P(x²) (degree-5 minimax of erf(x)/x − 1);
    /// otherwise: 1 − exp(Q(|x|)) with Q a degree-8 minimax of log(erfc(t)) on [0.921875, 3.925], beyond which erf
    /// rounds to ±1 in float. Coefficients fitted in double (Lawson's iteration) and rounded to float.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Erf<TV>(TV x) where TV : unmanaged, IVec<TV>
    {
        TV t = TV.Abs(x);
        TV s = x * x;
        TV p = TV.Create(-6.01408072e-4f);
        p = TV.Fma(p, s, TV.Create(4.99813585e-3f));
        p = TV.Fma(p, s, TV.Create(-2.67703235e-2f));
        p = TV.Fma(p, s, TV.Create(1.12819299e-1f));
        p = TV.Fma(p, s, TV.Create(-3.76125067e-1f));
        p = TV.Fma(p, s, TV.Create(1.28379151e-1f));
        TV small = TV.Fma(p, x, x);

        TV u = TV.Min(t, TV.Create(3.925f));
        TV q = TV.Create(1.63080608e-6f);
        q = TV.Fma(q, u, TV.Create(-4.58965660e-5f));
        q = TV.Fma(q, u, TV.Create(5.95135731e-4f));
        q = TV.Fma(q, u, TV.Create(-4.75030718e-3f));
        q = TV.Fma(q, u, TV.Create(2.63905358e-2f));
        q = TV.Fma(q, u, TV.Create(-1.10018753e-1f));
        q = TV.Fma(q, u, TV.Create(-6.31899178e-1f));
        q = TV.Fma(q, u, TV.Create(-1.13018596f));
        q = TV.Fma(q, u, TV.Create(3.07277776e-4f));
        TV large = TV.CopySign(TV.Create(1f) - Exp(q), x);

        return TV.SelectLess(t, TV.Create(0.921875f), small, large);
    }

    /// <summary>σ(x) = 1/(1+e^−x); saturates cleanly to 0 and 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Sigmoid<TV>(TV x) where TV : unmanaged, IVec<TV>
    {
        TV one = TV.Create(1f);
        return one / (one + Exp(TV.Zero - x));
    }

    /// <summary>Σ x[0..n).</summary>
    public static float Sum<TV>(float* x, int n) where TV : unmanaged, IVec<TV>
    {
        TV acc = TV.Zero;
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count) acc += TV.Load(x + i);
        float sum = TV.Sum(acc);
        for (; i < n; i++) sum += x[i];
        return sum;
    }

    /// <summary>Σ (x[i] − mu)² over [0..n).</summary>
    public static float SumSquaredDeviation<TV>(float* x, float mu, int n) where TV : unmanaged, IVec<TV>
    {
        TV acc = TV.Zero, vmu = TV.Create(mu);
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count)
        {
            TV d = TV.Load(x + i) - vmu;
            acc = TV.Fma(d, d, acc);
        }
        float sum = TV.Sum(acc);
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i] - mu, x[i] - mu, sum);
        return sum;
    }

    /// <summary>Σ a[i]·b[i] over [0..n).</summary>
    public static float Dot<TV>(float* a, float* b, int n) where TV : unmanaged, IVec<TV> => Dot<TV, F32>(a, (F32*)b, n);

    /// <summary>Σ a[i]·b[i] over [0..n), b stored as <typeparamref name="TB"/>.</summary>
    public static float Dot<TV, TB>(float* a, TB* b, int n) where TV : unmanaged, IVec<TV> where TB : unmanaged, IFloatStorage<TB>
    {
        TV acc = TV.Zero;
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count) acc = TV.Fma(TV.Load(a + i), TB.Load<TV>(b + i), acc);
        float sum = TV.Sum(acc);
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(a[i], TB.ToSingle(b[i]), sum);
        return sum;
    }

    /// <summary>s[j] = alpha·(x · rows[j·stride + 0..D)) for j in [0, n) (see <see cref="DotRows{TV, TR}"/>).</summary>
    public static void DotRows<TV>(float* s, float* x, float* rows, long stride, int n, int D, float alpha) where TV : unmanaged, IVec<TV> =>
        DotRows<TV, F32>(s, x, (F32*)rows, stride, n, D, alpha);

    /// <summary>
    /// s[j] = alpha·(x · rows[j·stride + 0..D)) for j in [0, n), rows stored as <typeparamref name="TR"/>, each dot
    /// bit-identical to <see cref="Dot{TV, TB}"/>. Four rows share each load of x and run as four independent FMA
    /// chains: a lone short dot product is bound by FMA latency, not throughput.
    /// </summary>
    public static void DotRows<TV, TR>(float* s, float* x, TR* rows, long stride, int n, int D, float alpha)
        where TV : unmanaged, IVec<TV> where TR : unmanaged, IFloatStorage<TR>
    {
        int j = 0;
        for (; j <= n - 4; j += 4)
        {
            TR* r0 = rows + j * stride, r1 = r0 + stride, r2 = r1 + stride, r3 = r2 + stride;
            TV a0 = TV.Zero, a1 = TV.Zero, a2 = TV.Zero, a3 = TV.Zero;
            int d = 0;
            for (; d <= D - TV.Count; d += TV.Count)
            {
                TV xv = TV.Load(x + d);
                a0 = TV.Fma(xv, TR.Load<TV>(r0 + d), a0);
                a1 = TV.Fma(xv, TR.Load<TV>(r1 + d), a1);
                a2 = TV.Fma(xv, TR.Load<TV>(r2 + d), a2);
                a3 = TV.Fma(xv, TR.Load<TV>(r3 + d), a3);
            }
            float s0 = TV.Sum(a0), s1 = TV.Sum(a1), s2 = TV.Sum(a2), s3 = TV.Sum(a3);
            for (; d < D; d++)
            {
                s0 = MathF.FusedMultiplyAdd(x[d], TR.ToSingle(r0[d]), s0);
                s1 = MathF.FusedMultiplyAdd(x[d], TR.ToSingle(r1[d]), s1);
                s2 = MathF.FusedMultiplyAdd(x[d], TR.ToSingle(r2[d]), s2);
                s3 = MathF.FusedMultiplyAdd(x[d], TR.ToSingle(r3[d]), s3);
            }
            (s[j], s[j + 1], s[j + 2], s[j + 3]) = (alpha * s0, alpha * s1, alpha * s2, alpha * s3);
        }
        for (; j < n; j++) s[j] = alpha * Dot<TV, TR>(x, rows + j * stride, D);
    }

    /// <summary>dst[0..n) = src[0..n) widened exactly to f32.</summary>
    public static void Widen<TV>(float* dst, BF16* src, int n) where TV : unmanaged, IVec<TV>
    {
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count) BF16.Load<TV>(src + i).Store(dst + i);
        for (; i < n; i++) dst[i] = BF16.ToSingle(src[i]);
    }

    /// <summary>dst[0..n) += src[0..n).</summary>
    public static void AddInto<TV>(float* dst, float* src, int n) where TV : unmanaged, IVec<TV>
    {
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count) (TV.Load(dst + i) + TV.Load(src + i)).Store(dst + i);
        for (; i < n; i++) dst[i] += src[i];
    }

    /// <summary>
    /// o[0..D) += Σ_j w[j]·rows[j·stride + 0..D) for j in [0, n): a weighted sum of n strided rows, each element
    /// accumulated over j in order. Column blocks of four vectors (then two, then one) stay in registers across all
    /// rows, so o is loaded and stored once instead of once per row, with several FMA chains in flight.
    /// </summary>
    public static void AddWeightedRows<TV>(float* o, float* w, float* rows, long stride, int n, int D) where TV : unmanaged, IVec<TV>
    {
        int W = TV.Count, c = 0;
        for (; c <= D - 4 * W; c += 4 * W)
        {
            TV a0 = TV.Load(o + c), a1 = TV.Load(o + c + W), a2 = TV.Load(o + c + 2 * W), a3 = TV.Load(o + c + 3 * W);
            float* r = rows + c;
            for (int j = 0; j < n; j++, r += stride)
            {
                TV wj = TV.Create(w[j]);
                a0 = TV.Fma(wj, TV.Load(r), a0);
                a1 = TV.Fma(wj, TV.Load(r + W), a1);
                a2 = TV.Fma(wj, TV.Load(r + 2 * W), a2);
                a3 = TV.Fma(wj, TV.Load(r + 3 * W), a3);
            }
            a0.Store(o + c);
            a1.Store(o + c + W);
            a2.Store(o + c + 2 * W);
            a3.Store(o + c + 3 * W);
        }
        for (; c <= D - 2 * W; c += 2 * W)
        {
            TV a0 = TV.Load(o + c), a1 = TV.Load(o + c + W);
            float* r = rows + c;
            for (int j = 0; j < n; j++, r += stride)
            {
                TV wj = TV.Create(w[j]);
                a0 = TV.Fma(wj, TV.Load(r), a0);
                a1 = TV.Fma(wj, TV.Load(r + W), a1);
            }
            a0.Store(o + c);
            a1.Store(o + c + W);
        }
        for (; c <= D - W; c += W)
        {
            TV a = TV.Load(o + c);
            float* r = rows + c;
            for (int j = 0; j < n; j++, r += stride) a = TV.Fma(TV.Create(w[j]), TV.Load(r), a);
            a.Store(o + c);
        }
        for (; c < D; c++)
        {
            float a = o[c];
            for (int j = 0; j < n; j++) a = MathF.FusedMultiplyAdd(w[j], rows[j * stride + c], a);
            o[c] = a;
        }
    }

    /// <summary>x[i] *= alpha over [0..n).</summary>
    public static void Scale<TV>(float* x, int n, float alpha) where TV : unmanaged, IVec<TV>
    {
        TV va = TV.Create(alpha);
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count) (TV.Load(x + i) * va).Store(x + i);
        for (; i < n; i++) x[i] *= alpha;
    }

    /// <summary>max over x[0..n), −∞ for n = 0; NaN propagates.</summary>
    public static float Max<TV>(float* x, int n) where TV : unmanaged, IVec<TV>
    {
        TV acc = TV.Create(float.NegativeInfinity);
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count) acc = TV.Max(acc, TV.Load(x + i));
        float m = TV.MaxAcross(acc);
        for (; i < n; i++) m = MathF.Max(m, x[i]);
        return m;
    }

    /// <summary>Σ exp(x[i] − shift) over [0..n); with y non-null also stores y[i] = exp(x[i] − shift) (y may alias x).</summary>
    public static float ExpSum<TV>(float* y, float* x, int n, float shift) where TV : unmanaged, IVec<TV>
    {
        TV acc = TV.Zero, vs = TV.Create(shift);
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count)
        {
            TV e = Exp(TV.Load(x + i) - vs);
            if (y != null) e.Store(y + i);
            acc += e;
        }
        float sum = TV.Sum(acc);
        for (; i < n; i++)
        {
            float e = MathF.Exp(x[i] - shift);
            if (y != null) y[i] = e;
            sum += e;
        }
        return sum;
    }

    /// <summary>y[i] += alpha·exp(x[i] − shift) over [0..n); y[i] = 0 + … without accumulate (y is not read).</summary>
    public static void AxpyExp<TV>(float* y, float alpha, float* x, int n, float shift, bool accumulate) where TV : unmanaged, IVec<TV>
    {
        TV va = TV.Create(alpha), vs = TV.Create(shift);
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count)
            TV.Fma(va, Exp(TV.Load(x + i) - vs), accumulate ? TV.Load(y + i) : TV.Zero).Store(y + i);
        for (; i < n; i++) y[i] = MathF.FusedMultiplyAdd(alpha, MathF.Exp(x[i] - shift), accumulate ? y[i] : 0f);
    }

    /// <summary>log Σ exp(x[i]) over [0..n), shifted by the row max so no term overflows; −∞ for n = 0.</summary>
    public static float LogSumExp<TV>(float* x, int n) where TV : unmanaged, IVec<TV>
    {
        float m = Max<TV>(x, n);
        return float.IsFinite(m) ? m + MathF.Log(ExpSum<TV>(null, x, n, m)) : m;
    }

    /// <summary>d[i] += y[i]·(dy[i] − c) over [0..n) (softmax backward with c = Σ dy·y).</summary>
    public static void AddMulCentered<TV>(float* d, float* y, float* dy, float c, int n) where TV : unmanaged, IVec<TV>
    {
        TV vc = TV.Create(c);
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count)
            TV.Fma(TV.Load(y + i), TV.Load(dy + i) - vc, TV.Load(d + i)).Store(d + i);
        for (; i < n; i++) d[i] = MathF.FusedMultiplyAdd(y[i], dy[i] - c, d[i]);
    }

    /// <summary>
    /// KL(α‖β) = Σ α·(log α − log β) for α = softmax(a), β = softmax(b) given their log-normalisers lseA, lseB.
    /// log α − log β = a − b − (lseA − lseB) needs no log of a probability, so underflowed α terms stay exact zeros.
    /// </summary>
    public static float KlDivergence<TV>(float* a, float* b, int n, float lseA, float lseB) where TV : unmanaged, IVec<TV>
    {
        float delta = lseA - lseB;
        TV acc = TV.Zero, vl = TV.Create(lseA), vd = TV.Create(delta);
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count)
        {
            TV va = TV.Load(a + i);
            acc = TV.Fma(Exp(va - vl), va - TV.Load(b + i) - vd, acc);
        }
        float sum = TV.Sum(acc);
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(MathF.Exp(a[i] - lseA), a[i] - b[i] - delta, sum);
        return sum;
    }

    /// <summary>
    /// Gradients of KL(α‖β) (value kl) scaled by g: da += g·α⊙(log α − log β − kl), db += g·(β − α); either may be null.
    /// </summary>
    public static void KlGradients<TV>(float* da, float* db, float* a, float* b, int n, float lseA, float lseB, float kl, float g)
        where TV : unmanaged, IVec<TV>
    {
        float shift = lseA - lseB + kl;
        TV vla = TV.Create(lseA), vlb = TV.Create(lseB), vdk = TV.Create(shift), vg = TV.Create(g);
        int i = 0;
        for (; i <= n - TV.Count; i += TV.Count)
        {
            TV va = TV.Load(a + i), vb = TV.Load(b + i);
            TV alpha = Exp(va - vla);
            if (da != null) TV.Fma(vg * alpha, va - vb - vdk, TV.Load(da + i)).Store(da + i);
            if (db != null) TV.Fma(vg, Exp(vb - vlb) - alpha, TV.Load(db + i)).Store(db + i);
        }
        for (; i < n; i++)
        {
            float alpha = MathF.Exp(a[i] - lseA);
            if (da != null) da[i] = MathF.FusedMultiplyAdd(g * alpha, a[i] - b[i] - shift, da[i]);
            if (db != null) db[i] = MathF.FusedMultiplyAdd(g, MathF.Exp(b[i] - lseB) - alpha, db[i]);
        }
    }
}
