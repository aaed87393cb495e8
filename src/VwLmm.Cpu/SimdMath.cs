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
