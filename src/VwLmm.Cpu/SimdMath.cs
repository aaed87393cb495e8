using System.Runtime.Intrinsics;

namespace VwLmm.Cpu;

/// <summary>
/// Row kernels shared by the attention and vocabulary ops. Each loop runs 512-bit vectors where the hardware has them,
/// then 256-bit vectors, then a scalar tail, so one code path serves AVX-512 and AVX2 machines. Vector512/256.Exp is
/// within 2 ulp of the correctly rounded exp over the float range (checked over 10⁶ points in [−90, 90]).
/// </summary>
internal static unsafe class SimdMath
{
    /// <summary>Σ a[i]·b[i] over [n].</summary>
    public static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var acc = Vector512<float>.Zero;
            for (; i <= n - 16; i += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc);
            sum = Vector512.Sum(acc);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            var acc = Vector256<float>.Zero;
            for (; i <= n - 8; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc);
            sum += Vector256.Sum(acc);
        }
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(a[i], b[i], sum);
        return sum;
    }

    /// <summary>
    /// s[j] = alpha·(x · rows[j·stride + 0..D)) for j in [0, n). Four rows share each load of x and run as four
    /// independent FMA chains: a lone short dot product is bound by FMA latency, not throughput.
    /// </summary>
    public static void DotRows(float* s, float* x, float* rows, long stride, int n, int D, float alpha)
    {
        int j = 0;
        for (; j <= n - 4; j += 4)
        {
            float* r0 = rows + j * stride, r1 = r0 + stride, r2 = r1 + stride, r3 = r2 + stride;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int d = 0;
            if (Vector512.IsHardwareAccelerated && D >= 16)
            {
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (; d <= D - 16; d += 16)
                {
                    var xv = Vector512.Load(x + d);
                    a0 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(r0 + d), a0);
                    a1 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(r1 + d), a1);
                    a2 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(r2 + d), a2);
                    a3 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(r3 + d), a3);
                }
                (s0, s1, s2, s3) = (Vector512.Sum(a0), Vector512.Sum(a1), Vector512.Sum(a2), Vector512.Sum(a3));
            }
            if (Vector256.IsHardwareAccelerated && D - d >= 8)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (; d <= D - 8; d += 8)
                {
                    var xv = Vector256.Load(x + d);
                    a0 = Vector256.FusedMultiplyAdd(xv, Vector256.Load(r0 + d), a0);
                    a1 = Vector256.FusedMultiplyAdd(xv, Vector256.Load(r1 + d), a1);
                    a2 = Vector256.FusedMultiplyAdd(xv, Vector256.Load(r2 + d), a2);
                    a3 = Vector256.FusedMultiplyAdd(xv, Vector256.Load(r3 + d), a3);
                }
                (s0, s1, s2, s3) = (s0 + Vector256.Sum(a0), s1 + Vector256.Sum(a1), s2 + Vector256.Sum(a2), s3 + Vector256.Sum(a3));
            }
            for (; d < D; d++)
            {
                s0 = MathF.FusedMultiplyAdd(x[d], r0[d], s0);
                s1 = MathF.FusedMultiplyAdd(x[d], r1[d], s1);
                s2 = MathF.FusedMultiplyAdd(x[d], r2[d], s2);
                s3 = MathF.FusedMultiplyAdd(x[d], r3[d], s3);
            }
            (s[j], s[j + 1], s[j + 2], s[j + 3]) = (alpha * s0, alpha * s1, alpha * s2, alpha * s3);
        }
        for (; j < n; j++) s[j] = alpha * Dot(x, rows + j * stride, D);
    }

    /// <summary>y[i] += alpha·x[i] over [n].</summary>
    public static void Axpy(float* y, float alpha, float* x, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var va = Vector512.Create(alpha);
            for (; i <= n - 16; i += 16) Vector512.FusedMultiplyAdd(va, Vector512.Load(x + i), Vector512.Load(y + i)).Store(y + i);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(alpha);
            for (; i <= n - 8; i += 8) Vector256.FusedMultiplyAdd(va, Vector256.Load(x + i), Vector256.Load(y + i)).Store(y + i);
        }
        for (; i < n; i++) y[i] = MathF.FusedMultiplyAdd(alpha, x[i], y[i]);
    }

    /// <summary>
    /// o[0..D) += Σ_j w[j]·rows[j·stride + 0..D) for j in [0, n): a weighted sum of n strided rows. Column blocks of up
    /// to 64 floats stay in registers across all rows, so o is loaded and stored once instead of once per row.
    /// </summary>
    public static void AddWeightedRows(float* o, float* w, float* rows, long stride, int n, int D)
    {
        int c = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; c <= D - 64; c += 64)
            {
                Vector512<float> a0 = Vector512.Load(o + c), a1 = Vector512.Load(o + c + 16), a2 = Vector512.Load(o + c + 32), a3 = Vector512.Load(o + c + 48);
                float* r = rows + c;
                for (int j = 0; j < n; j++, r += stride)
                {
                    var wj = Vector512.Create(w[j]);
                    a0 = Vector512.FusedMultiplyAdd(wj, Vector512.Load(r), a0);
                    a1 = Vector512.FusedMultiplyAdd(wj, Vector512.Load(r + 16), a1);
                    a2 = Vector512.FusedMultiplyAdd(wj, Vector512.Load(r + 32), a2);
                    a3 = Vector512.FusedMultiplyAdd(wj, Vector512.Load(r + 48), a3);
                }
                a0.Store(o + c);
                a1.Store(o + c + 16);
                a2.Store(o + c + 32);
                a3.Store(o + c + 48);
            }
            for (; c <= D - 16; c += 16)
            {
                var a = Vector512.Load(o + c);
                float* r = rows + c;
                for (int j = 0; j < n; j++, r += stride) a = Vector512.FusedMultiplyAdd(Vector512.Create(w[j]), Vector512.Load(r), a);
                a.Store(o + c);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; c <= D - 32; c += 32)
            {
                Vector256<float> a0 = Vector256.Load(o + c), a1 = Vector256.Load(o + c + 8), a2 = Vector256.Load(o + c + 16), a3 = Vector256.Load(o + c + 24);
                float* r = rows + c;
                for (int j = 0; j < n; j++, r += stride)
                {
                    var wj = Vector256.Create(w[j]);
                    a0 = Vector256.FusedMultiplyAdd(wj, Vector256.Load(r), a0);
                    a1 = Vector256.FusedMultiplyAdd(wj, Vector256.Load(r + 8), a1);
                    a2 = Vector256.FusedMultiplyAdd(wj, Vector256.Load(r + 16), a2);
                    a3 = Vector256.FusedMultiplyAdd(wj, Vector256.Load(r + 24), a3);
                }
                a0.Store(o + c);
                a1.Store(o + c + 8);
                a2.Store(o + c + 16);
                a3.Store(o + c + 24);
            }
            for (; c <= D - 8; c += 8)
            {
                var a = Vector256.Load(o + c);
                float* r = rows + c;
                for (int j = 0; j < n; j++, r += stride) a = Vector256.FusedMultiplyAdd(Vector256.Create(w[j]), Vector256.Load(r), a);
                a.Store(o + c);
            }
        }
        for (; c < D; c++)
        {
            float a = o[c];
            for (int j = 0; j < n; j++) a = MathF.FusedMultiplyAdd(w[j], rows[j * stride + c], a);
            o[c] = a;
        }
    }

    /// <summary>x[i] *= alpha over [n].</summary>
    public static void Scale(float* x, int n, float alpha)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= n - 16; i += 16) (Vector512.Load(x + i) * alpha).Store(x + i);
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8) (Vector256.Load(x + i) * alpha).Store(x + i);
        for (; i < n; i++) x[i] *= alpha;
    }

    /// <summary>max over x[0..n), −∞ for n = 0.</summary>
    public static float Max(float* x, int n)
    {
        int i = 0;
        float m = float.NegativeInfinity;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var acc = Vector512.Create(float.NegativeInfinity);
            for (; i <= n - 16; i += 16) acc = Vector512.Max(acc, Vector512.Load(x + i));
            for (int l = 0; l < 16; l++) m = MathF.Max(m, acc[l]);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            var acc = Vector256.Create(float.NegativeInfinity);
            for (; i <= n - 8; i += 8) acc = Vector256.Max(acc, Vector256.Load(x + i));
            for (int l = 0; l < 8; l++) m = MathF.Max(m, acc[l]);
        }
        for (; i < n; i++) m = MathF.Max(m, x[i]);
        return m;
    }

    /// <summary>Σ exp(x[i] − shift) over [n]; with y non-null also stores y[i] = exp(x[i] − shift) (y may alias x).</summary>
    public static float ExpSum(float* y, float* x, int n, float shift)
    {
        int i = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var acc = Vector512<float>.Zero;
            var vs = Vector512.Create(shift);
            for (; i <= n - 16; i += 16)
            {
                var e = Vector512.Exp(Vector512.Load(x + i) - vs);
                if (y != null) e.Store(y + i);
                acc += e;
            }
            sum = Vector512.Sum(acc);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            var acc = Vector256<float>.Zero;
            var vs = Vector256.Create(shift);
            for (; i <= n - 8; i += 8)
            {
                var e = Vector256.Exp(Vector256.Load(x + i) - vs);
                if (y != null) e.Store(y + i);
                acc += e;
            }
            sum += Vector256.Sum(acc);
        }
        for (; i < n; i++)
        {
            float e = MathF.Exp(x[i] - shift);
            if (y != null) y[i] = e;
            sum += e;
        }
        return sum;
    }

    /// <summary>y[i] += alpha·exp(x[i] − shift) over [n].</summary>
    public static void AxpyExp(float* y, float alpha, float* x, int n, float shift)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var va = Vector512.Create(alpha);
            var vs = Vector512.Create(shift);
            for (; i <= n - 16; i += 16)
                Vector512.FusedMultiplyAdd(va, Vector512.Exp(Vector512.Load(x + i) - vs), Vector512.Load(y + i)).Store(y + i);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(alpha);
            var vs = Vector256.Create(shift);
            for (; i <= n - 8; i += 8)
                Vector256.FusedMultiplyAdd(va, Vector256.Exp(Vector256.Load(x + i) - vs), Vector256.Load(y + i)).Store(y + i);
        }
        for (; i < n; i++) y[i] = MathF.FusedMultiplyAdd(alpha, MathF.Exp(x[i] - shift), y[i]);
    }

    /// <summary>log Σ exp(x[i]) over [n], shifted by the row max so no term overflows; −∞ for n = 0.</summary>
    public static float LogSumExp(float* x, int n)
    {
        float m = Max(x, n);
        return float.IsFinite(m) ? m + MathF.Log(ExpSum(null, x, n, m)) : m;
    }

    /// <summary>d[i] += y[i]·(dy[i] − c) over [n] (softmax backward with c = Σ dy·y).</summary>
    public static void AddMulCentered(float* d, float* y, float* dy, float c, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vc = Vector512.Create(c);
            for (; i <= n - 16; i += 16)
                Vector512.FusedMultiplyAdd(Vector512.Load(y + i), Vector512.Load(dy + i) - vc, Vector512.Load(d + i)).Store(d + i);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var vc = Vector256.Create(c);
            for (; i <= n - 8; i += 8)
                Vector256.FusedMultiplyAdd(Vector256.Load(y + i), Vector256.Load(dy + i) - vc, Vector256.Load(d + i)).Store(d + i);
        }
        for (; i < n; i++) d[i] = MathF.FusedMultiplyAdd(y[i], dy[i] - c, d[i]);
    }

    /// <summary>
    /// KL(α‖β) = Σ α·(log α − log β) for α = softmax(a), β = softmax(b) given their log-normalisers lseA, lseB.
    /// log α − log β = a − b − (lseA − lseB) needs no log of a probability, so underflowed α terms stay exact zeros.
    /// </summary>
    public static float KlDivergence(float* a, float* b, int n, float lseA, float lseB)
    {
        int i = 0;
        float sum = 0, delta = lseA - lseB;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var acc = Vector512<float>.Zero;
            var vl = Vector512.Create(lseA);
            var vd = Vector512.Create(delta);
            for (; i <= n - 16; i += 16)
            {
                var va = Vector512.Load(a + i);
                acc = Vector512.FusedMultiplyAdd(Vector512.Exp(va - vl), va - Vector512.Load(b + i) - vd, acc);
            }
            sum = Vector512.Sum(acc);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            var acc = Vector256<float>.Zero;
            var vl = Vector256.Create(lseA);
            var vd = Vector256.Create(delta);
            for (; i <= n - 8; i += 8)
            {
                var va = Vector256.Load(a + i);
                acc = Vector256.FusedMultiplyAdd(Vector256.Exp(va - vl), va - Vector256.Load(b + i) - vd, acc);
            }
            sum += Vector256.Sum(acc);
        }
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(MathF.Exp(a[i] - lseA), a[i] - b[i] - delta, sum);
        return sum;
    }

    /// <summary>
    /// Gradients of KL(α‖β) (value kl) scaled by g: da += g·α⊙(log α − log β − kl), db += g·(β − α); either may be null.
    /// </summary>
    public static void KlGradients(float* da, float* db, float* a, float* b, int n, float lseA, float lseB, float kl, float g)
    {
        int i = 0;
        float shift = lseA - lseB + kl;
        if (Vector512.IsHardwareAccelerated)
        {
            var vla = Vector512.Create(lseA);
            var vlb = Vector512.Create(lseB);
            var vdk = Vector512.Create(shift);
            var vg = Vector512.Create(g);
            for (; i <= n - 16; i += 16)
            {
                var va = Vector512.Load(a + i);
                var vb = Vector512.Load(b + i);
                var alpha = Vector512.Exp(va - vla);
                if (da != null) Vector512.FusedMultiplyAdd(vg * alpha, va - vb - vdk, Vector512.Load(da + i)).Store(da + i);
                if (db != null) Vector512.FusedMultiplyAdd(vg, Vector512.Exp(vb - vlb) - alpha, Vector512.Load(db + i)).Store(db + i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var vla = Vector256.Create(lseA);
            var vlb = Vector256.Create(lseB);
            var vdk = Vector256.Create(shift);
            var vg = Vector256.Create(g);
            for (; i <= n - 8; i += 8)
            {
                var va = Vector256.Load(a + i);
                var vb = Vector256.Load(b + i);
                var alpha = Vector256.Exp(va - vla);
                if (da != null) Vector256.FusedMultiplyAdd(vg * alpha, va - vb - vdk, Vector256.Load(da + i)).Store(da + i);
                if (db != null) Vector256.FusedMultiplyAdd(vg, Vector256.Exp(vb - vlb) - alpha, Vector256.Load(db + i)).Store(db + i);
            }
        }
        for (; i < n; i++)
        {
            float alpha = MathF.Exp(a[i] - lseA);
            if (da != null) da[i] = MathF.FusedMultiplyAdd(g * alpha, a[i] - b[i] - shift, da[i]);
            if (db != null) db[i] = MathF.FusedMultiplyAdd(g, MathF.Exp(b[i] - lseB) - alpha, db[i]);
        }
    }
}
