namespace VwLmm.Tests.Ops.Reference;

/// <summary>LayerNorm and RMSNorm over rows of x [N,C] in double; backward recomputes the statistics in double.</summary>
public static class NormReference
{
    public static (double[] Y, double[] Mean, double[] Rstd) LayerNorm(double[] x, double[] gamma, double[] beta, int N, int C, double eps)
    {
        var y = new double[N * C];
        var mean = new double[N];
        var rstd = new double[N];
        for (int n = 0; n < N; n++)
        {
            double mu = 0, var = 0;
            for (int c = 0; c < C; c++) mu += x[n * C + c];
            mu /= C;
            for (int c = 0; c < C; c++) var += (x[n * C + c] - mu) * (x[n * C + c] - mu);
            double r = 1 / Math.Sqrt(var / C + eps);
            for (int c = 0; c < C; c++) y[n * C + c] = (x[n * C + c] - mu) * r * gamma[c] + beta[c];
            mean[n] = mu;
            rstd[n] = r;
        }
        return (y, mean, rstd);
    }

    /// <summary>(dx [N,C], dgamma [C], dbeta [C]) of Σ dy·y.</summary>
    public static (double[] Dx, double[] DGamma, double[] DBeta) LayerNormBackward(double[] dy, double[] x, double[] gamma, int N, int C, double eps)
    {
        var (_, mean, rstd) = LayerNorm(x, gamma, new double[C], N, C, eps);
        var dx = new double[N * C];
        var dgamma = new double[C];
        var dbeta = new double[C];
        for (int n = 0; n < N; n++)
        {
            double sg = 0, sgx = 0;
            for (int c = 0; c < C; c++)
            {
                double h = (x[n * C + c] - mean[n]) * rstd[n];
                double g = dy[n * C + c] * gamma[c];
                sg += g;
                sgx += g * h;
                dgamma[c] += dy[n * C + c] * h;
                dbeta[c] += dy[n * C + c];
            }
            for (int c = 0; c < C; c++)
            {
                double h = (x[n * C + c] - mean[n]) * rstd[n];
                dx[n * C + c] = rstd[n] * (dy[n * C + c] * gamma[c] - sg / C - h * sgx / C);
            }
        }
        return (dx, dgamma, dbeta);
    }

    public static (double[] Y, double[] Rstd) RmsNorm(double[] x, double[] gamma, int N, int C, double eps)
    {
        var y = new double[N * C];
        var rstd = new double[N];
        for (int n = 0; n < N; n++)
        {
            double ss = 0;
            for (int c = 0; c < C; c++) ss += x[n * C + c] * x[n * C + c];
            double r = 1 / Math.Sqrt(ss / C + eps);
            for (int c = 0; c < C; c++) y[n * C + c] = x[n * C + c] * r * gamma[c];
            rstd[n] = r;
        }
        return (y, rstd);
    }

    /// <summary>(dx [N,C], dgamma [C]) of Σ dy·y.</summary>
    public static (double[] Dx, double[] DGamma) RmsNormBackward(double[] dy, double[] x, double[] gamma, int N, int C, double eps)
    {
        var (_, rstd) = RmsNorm(x, gamma, N, C, eps);
        var dx = new double[N * C];
        var dgamma = new double[C];
        for (int n = 0; n < N; n++)
        {
            double sgx = 0;
            for (int c = 0; c < C; c++)
            {
                double h = x[n * C + c] * rstd[n];
                sgx += dy[n * C + c] * gamma[c] * h;
                dgamma[c] += dy[n * C + c] * h;
            }
            for (int c = 0; c < C; c++)
                dx[n * C + c] = rstd[n] * (dy[n * C + c] * gamma[c] - x[n * C + c] * rstd[n] * sgx / C);
        }
        return (dx, dgamma);
    }
}
