namespace VwLmm.Tests.Ops.Reference;

/// <summary>Rotate-half RoPE in double on [B,T,H,D] rows, angle pos·theta^(−2i/D) for the pair (i, i+D/2).</summary>
public static class RopeReference
{
    /// <summary>Rotates every pair by +angle (forward) or −angle (the transpose, i.e. the backward).</summary>
    public static double[] Rotate(double[] x, int[] positions, int B, int T, int H, int D, double theta, bool inverse = false)
    {
        var y = new double[x.Length];
        int half = D / 2;
        for (int bt = 0; bt < B * T; bt++)
        for (int h = 0; h < H; h++)
        for (int i = 0; i < half; i++)
        {
            double angle = positions[bt] * Math.Pow(theta, -2.0 * i / D) * (inverse ? -1 : 1);
            int a = (bt * H + h) * D + i, b = a + half;
            y[a] = x[a] * Math.Cos(angle) - x[b] * Math.Sin(angle);
            y[b] = x[b] * Math.Cos(angle) + x[a] * Math.Sin(angle);
        }
        return y;
    }
}
