namespace VwLmm.Tests.Ops.Reference;

/// <summary>AdamW and the sum of squares in double.</summary>
public static class OptimizerReference
{
    /// <summary>One AdamW step (decoupled weight decay, bias-corrected), updating p, m, v in place.</summary>
    public static void AdamW(double[] p, double[] m, double[] v, float[] grad, double lr, double beta1, double beta2,
                             double eps, double weightDecay, int step, double gradScale)
    {
        for (int i = 0; i < p.Length; i++)
        {
            double g = grad[i] * gradScale;
            m[i] = beta1 * m[i] + (1 - beta1) * g;
            v[i] = beta2 * v[i] + (1 - beta2) * g * g;
            double mHat = m[i] / (1 - Math.Pow(beta1, step));
            double vHat = v[i] / (1 - Math.Pow(beta2, step));
            p[i] -= lr * (mHat / (Math.Sqrt(vHat) + eps) + weightDecay * p[i]);
        }
    }

    public static double SumSquares(float[] x)
    {
        double s = 0;
        foreach (float v in x) s += (double)v * v;
        return s;
    }
}
