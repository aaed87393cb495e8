using VwLmm.Core;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>
/// Double-precision references for the CUDA kernels tested here, written from the math alone (not from the kernels).
/// Row-major [N,C]. Backward functions return fresh gradients; callers add the tensors' initial contents.
/// </summary>
internal static class Reference
{
    private static double Erf(double x)
    {
        // .NET has no erf: Maclaurin series below 3, the continued fraction of erfc above (both good to ~1e-12).
        double ax = Math.Abs(x);
        double r;
        if (ax < 3)
        {
            double term = ax, sum = ax;
            for (int n = 1; n < 200; n++)
            {
                term *= -ax * ax / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-18) break;
            }
            r = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            // erfc(x) = exp(−x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …)))) (Lentz-free backward evaluation).
            double f = ax;
            for (int k = 60; k >= 1; k--) f = ax + k / 2.0 / f;
            r = 1 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / f;
        }
        return x < 0 ? -r : r;
    }

    private static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    public static double Act(Activation act, double x) => act switch
    {
        Activation.Gelu => 0.5 * x * (1 + Erf(x / Math.Sqrt(2))),
        Activation.QuickGelu => x * Sigmoid(1.702 * x),
        Activation.Silu => x * Sigmoid(x),
        _ => throw new ArgumentOutOfRangeException(nameof(act)),
    };

    public static double ActGrad(Activation act, double x) => act switch
    {
        Activation.Gelu => 0.5 * (1 + Erf(x / Math.Sqrt(2))) + x * Math.Exp(-0.5 * x * x) / Math.Sqrt(2 * Math.PI),
        Activation.QuickGelu => Sigmoid(1.702 * x) * (1 + 1.702 * x * (1 - Sigmoid(1.702 * x))),
        Activation.Silu => Sigmoid(x) * (1 + x * (1 - Sigmoid(x))),
        _ => throw new ArgumentOutOfRangeException(nameof(act)),
    };

    /// <summary>LayerNorm (centered) or RMSNorm per row: y, mean (0 for RMSNorm), rstd.</summary>
    public static (double[] y, double[] mean, double[] rstd) NormForward(bool centered, double[] x, double[] gamma, double[]? beta, int N, int C, double eps)
    {
        var y = new double[N * C];
        var mean = new double[N];
        var rstd = new double[N];
        for (int n = 0; n < N; n++)
        {
            double m = 0;
            if (centered)
            {
                for (int c = 0; c < C; c++) m += x[n * C + c];
                m /= C;
            }
            double v = 0;
            for (int c = 0; c < C; c++) v += (x[n * C + c] - m) * (x[n * C + c] - m);
            double r = 1 / Math.Sqrt(v / C + eps);
            for (int c = 0; c < C; c++) y[n * C + c] = (x[n * C + c] - m) * r * gamma[c] + (beta?[c] ?? 0);
            mean[n] = m;
            rstd[n] = r;
        }
        return (y, mean, rstd);
    }

    /// <summary>Gradients of LayerNorm/RMSNorm for upstream dy, from the exact row statistics.</summary>
    public static (double[] dx, double[] dgamma, double[] dbeta) NormBackward(bool centered, double[] dy, double[] x, double[] gamma, int N, int C, double eps)
    {
        var (_, mean, rstd) = NormForward(centered, x, gamma, null, N, C, eps);
        var dx = new double[N * C];
        var dgamma = new double[C];
        var dbeta = new double[C];
        for (int n = 0; n < N; n++)
        {
            double a = 0, b = 0;
            for (int c = 0; c < C; c++)
            {
                double xhat = (x[n * C + c] - mean[n]) * rstd[n], dn = dy[n * C + c] * gamma[c];
                a += dn;
                b += dn * xhat;
                dgamma[c] += dy[n * C + c] * xhat;
                dbeta[c] += dy[n * C + c];
            }
            a = centered ? a / C : 0;
            b /= C;
            for (int c = 0; c < C; c++)
            {
                double xhat = (x[n * C + c] - mean[n]) * rstd[n];
                dx[n * C + c] = rstd[n] * (dy[n * C + c] * gamma[c] - a - xhat * b);
            }
        }
        return (dx, dgamma, dbeta);
    }

    /// <summary>dbias [P,C] = Σ over rows n ≡ p (mod P) of dy [N,C].</summary>
    public static double[] BiasBackward(double[] dy, int N, int C, int P)
    {
        var d = new double[P * C];
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) d[n % P * C + c] += dy[n * C + c];
        return d;
    }

    /// <summary>Row-major C [M,N] (pitch ldc) = alpha·op(A)·op(B) + beta·C for one batch item.</summary>
    public static void Gemm(bool transA, bool transB, int M, int N, int K, double alpha, double[] A, int lda, long offA,
                            double[] B, int ldb, long offB, double beta, double[] Cm, int ldc, long offC)
    {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                double s = 0;
                for (int k = 0; k < K; k++)
                    s += A[offA + (transA ? k * lda + i : i * lda + k)] * B[offB + (transB ? j * ldb + k : k * ldb + j)];
                Cm[offC + i * ldc + j] = alpha * s + beta * Cm[offC + i * ldc + j];
            }
    }
}
