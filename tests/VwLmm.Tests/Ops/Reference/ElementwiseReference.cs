using VwLmm.Core;

namespace VwLmm.Tests.Ops.Reference;

/// <summary>Double-precision elementwise ops and activations, written from the textbook definitions.</summary>
public static class ElementwiseReference
{
    /// <summary>erf in double: below 6, the series 2/√π·e^(−x²)·Σ 2ⁿx^(2n+1)/(2n+1)!! (positive terms, so no
    /// cancellation: ~1e-16 relative); above, Laplace's continued fraction for erfc.</summary>
    public static double Erf(double x)
    {
        double a = Math.Abs(x);
        if (a < 6)
        {
            double term = a, sum = a;
            for (int n = 1; n < 1000 && term > 1e-17 * sum; n++)
            {
                term *= 2 * a * a / (2 * n + 1);
                sum += term;
            }
            return Math.CopySign(2 / Math.Sqrt(Math.PI) * Math.Exp(-a * a) * sum, x);
        }
        double f = a;
        for (int k = 120; k >= 1; k--) f = a + k / 2.0 / f;
        return Math.CopySign(1 - Math.Exp(-a * a) / (Math.Sqrt(Math.PI) * f), x);
    }

    public static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    /// <summary>
    /// Dropout's keep mask for elements [0, n) from the textbook sequential SplitMix64 (state += 0x9E3779B97F4A7C15,
    /// then the finaliser, once per element): element i is kept when the high word of the i-th output is at least
    /// round(rate·2³²).
    /// </summary>
    public static bool[] DropoutKeeps(ulong seed, int n, double rate)
    {
        ulong threshold = (ulong)Math.Round(rate * 4294967296.0), state = seed;
        var keep = new bool[n];
        for (int i = 0; i < n; i++)
        {
            ulong z = state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            keep[i] = (z ^ (z >> 31)) >> 32 >= threshold;
        }
        return keep;
    }

    public static double Act(Activation act, double x) => act switch
    {
        Activation.Gelu => 0.5 * x * (1 + Erf(x / Math.Sqrt(2))),
        Activation.QuickGelu => x * Sigmoid(1.702 * x),
        Activation.Silu => x * Sigmoid(x),
        _ => throw new ArgumentOutOfRangeException(nameof(act)),
    };

    public static double ActGrad(Activation act, double x)
    {
        switch (act)
        {
            case Activation.Gelu:
                return 0.5 * (1 + Erf(x / Math.Sqrt(2))) + x * Math.Exp(-0.5 * x * x) / Math.Sqrt(2 * Math.PI);
            case Activation.QuickGelu:
            {
                double s = Sigmoid(1.702 * x);
                return s + 1.702 * x * s * (1 - s);
            }
            case Activation.Silu:
            {
                double s = Sigmoid(x);
                return s + x * s * (1 - s);
            }
            default: throw new ArgumentOutOfRangeException(nameof(act));
        }
    }

    public static double[] Act(Activation act, float[] x) => Array.ConvertAll(x, v => Act(act, v));

    /// <summary>dx0 + dy·act'(x), all [n].</summary>
    public static double[] ActBackward(Activation act, float[] dx0, float[] dy, float[] x)
    {
        var dx = new double[x.Length];
        for (int i = 0; i < x.Length; i++) dx[i] = dx0[i] + (double)dy[i] * ActGrad(act, x[i]);
        return dx;
    }

    /// <summary>y [n] = silu(gate)·up.</summary>
    public static double[] SwiGlu(float[] gate, float[] up)
    {
        var y = new double[gate.Length];
        for (int i = 0; i < y.Length; i++) y[i] = Act(Activation.Silu, gate[i]) * up[i];
        return y;
    }

    /// <summary>(dgate, dup) [n] = (dy·up·silu'(gate), dy·silu(gate)).</summary>
    public static (double[] DGate, double[] DUp) SwiGluBackward(float[] dy, float[] gate, float[] up)
    {
        var dg = new double[gate.Length];
        var du = new double[gate.Length];
        for (int i = 0; i < dg.Length; i++)
        {
            dg[i] = (double)dy[i] * up[i] * ActGrad(Activation.Silu, gate[i]);
            du[i] = (double)dy[i] * Act(Activation.Silu, gate[i]);
        }
        return (dg, du);
    }

    /// <summary>x [N,C] + bias [P,C] with row n taking bias row n mod P.</summary>
    public static double[] BiasAdd(float[] x, float[] bias, int N, int C, int P)
    {
        var y = new double[(long)N * C];
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                y[n * C + c] = (double)x[n * C + c] + bias[n % P * C + c];
        return y;
    }

    /// <summary>dbias [P,C] = Σ over rows n ≡ p (mod P) of dy [N,C].</summary>
    public static double[] BiasBackward(float[] dy, int N, int C, int P)
    {
        var db = new double[P * C];
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                db[n % P * C + c] += dy[n * C + c];
        return db;
    }
}
