namespace VwLmm.Tests.Ops.Reference;

/// <summary>Stride-P convolution without bias as direct loops in double: img [B,Cin,Hi,Wi], w [C,Cin,P,P], y [B,Np,C].</summary>
public static class PatchEmbedReference
{
    public static double[] Forward(double[] img, double[] w, int B, int Cin, int Hi, int Wi, int P, int C)
    {
        int gh = Hi / P, gw = Wi / P;
        var y = new double[B * gh * gw * C];
        for (int b = 0; b < B; b++)
        for (int oy = 0; oy < gh; oy++)
        for (int ox = 0; ox < gw; ox++)
        for (int c = 0; c < C; c++)
        {
            double sum = 0;
            for (int ci = 0; ci < Cin; ci++)
            for (int ky = 0; ky < P; ky++)
            for (int kx = 0; kx < P; kx++)
                sum += w[((c * Cin + ci) * P + ky) * P + kx] * img[((b * Cin + ci) * Hi + oy * P + ky) * Wi + ox * P + kx];
            y[((b * gh + oy) * gw + ox) * C + c] = sum;
        }
        return y;
    }

    /// <summary>dw [C,Cin,P,P] for output gradient dy [B,Np,C].</summary>
    public static double[] BackwardWeight(double[] dy, double[] img, int B, int Cin, int Hi, int Wi, int P, int C)
    {
        int gh = Hi / P, gw = Wi / P;
        var dw = new double[C * Cin * P * P];
        for (int c = 0; c < C; c++)
        for (int ci = 0; ci < Cin; ci++)
        for (int ky = 0; ky < P; ky++)
        for (int kx = 0; kx < P; kx++)
        {
            double sum = 0;
            for (int b = 0; b < B; b++)
            for (int oy = 0; oy < gh; oy++)
            for (int ox = 0; ox < gw; ox++)
                sum += dy[((b * gh + oy) * gw + ox) * C + c] * img[((b * Cin + ci) * Hi + oy * P + ky) * Wi + ox * P + kx];
            dw[((c * Cin + ci) * P + ky) * P + kx] = sum;
        }
        return dw;
    }
}
