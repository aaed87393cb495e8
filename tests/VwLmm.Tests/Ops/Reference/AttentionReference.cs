namespace VwLmm.Tests.Ops.Reference;

/// <summary>
/// Textbook softmax attention in double: the full score matrix per (sample, head) with −∞ at masked keys, a plain
/// softmax, and the matrix-form backward (dS = P⊙(dP − rowsum(dO⊙O))). Layouts follow the op contract:
/// q, o [B,Tq,H,D]; k, v [B,S,Hkv,D]; lse [B,H,Tq].
/// </summary>
public sealed record AttentionProblem(int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool Causal, int[]? KeyLengths)
{
    public double Scale => 1.0 / Math.Sqrt(D);

    public bool Visible(int b, int t, int j) =>
        j < Tk && (KeyLengths is null || j < KeyLengths[b]) && (!Causal || j <= t + Tk - Tq);

    public int Q(int b, int t, int h) => ((b * Tq + t) * H + h) * D;
    public int Kv(int b, int j, int h) => ((b * S + j) * Hkv + h / (H / Hkv)) * D;
}

public static class AttentionReference
{
    /// <summary>Scores, probabilities and lse of one (b, h): p[t][j] (0 where masked), lse[t] (−∞ when nothing is visible).</summary>
    private static (double[,] P, double[] Lse) Probabilities(AttentionProblem a, double[] q, double[] k, int b, int h)
    {
        var p = new double[a.Tq, a.Tk];
        var lse = new double[a.Tq];
        for (int t = 0; t < a.Tq; t++)
        {
            var s = new double[a.Tk];
            double max = double.NegativeInfinity;
            for (int j = 0; j < a.Tk; j++)
            {
                s[j] = double.NegativeInfinity;
                if (!a.Visible(b, t, j)) continue;
                double dot = 0;
                for (int d = 0; d < a.D; d++) dot += q[a.Q(b, t, h) + d] * k[a.Kv(b, j, h) + d];
                s[j] = dot * a.Scale;
                max = Math.Max(max, s[j]);
            }
            if (double.IsNegativeInfinity(max))
            {
                lse[t] = double.NegativeInfinity;
                continue;
            }
            double sum = 0;
            for (int j = 0; j < a.Tk; j++) sum += Math.Exp(s[j] - max);
            for (int j = 0; j < a.Tk; j++) p[t, j] = Math.Exp(s[j] - max) / sum;
            lse[t] = max + Math.Log(sum);
        }
        return (p, lse);
    }

    /// <summary>o [B,Tq,H,D] and lse [B,H,Tq].</summary>
    public static (double[] O, double[] Lse) Forward(AttentionProblem a, double[] q, double[] k, double[] v)
    {
        var o = new double[a.B * a.Tq * a.H * a.D];
        var lse = new double[a.B * a.H * a.Tq];
        for (int b = 0; b < a.B; b++)
        for (int h = 0; h < a.H; h++)
        {
            var (p, l) = Probabilities(a, q, k, b, h);
            for (int t = 0; t < a.Tq; t++)
            {
                lse[(b * a.H + h) * a.Tq + t] = l[t];
                for (int j = 0; j < a.Tk; j++)
                for (int d = 0; d < a.D; d++)
                    o[a.Q(b, t, h) + d] += p[t, j] * v[a.Kv(b, j, h) + d];
            }
        }
        return (o, lse);
    }

    /// <summary>dq [B,Tq,H,D], dk, dv [B,S,Hkv,D] (rows ≥ Tk zero) for output gradient dO.</summary>
    public static (double[] Dq, double[] Dk, double[] Dv) Backward(AttentionProblem a, double[] q, double[] k, double[] v, double[] dO)
    {
        var (o, _) = Forward(a, q, k, v);
        var dq = new double[q.Length];
        var dk = new double[k.Length];
        var dv = new double[v.Length];
        for (int b = 0; b < a.B; b++)
        for (int h = 0; h < a.H; h++)
        {
            var (p, _) = Probabilities(a, q, k, b, h);
            for (int t = 0; t < a.Tq; t++)
            {
                double rowDot = 0;
                for (int d = 0; d < a.D; d++) rowDot += dO[a.Q(b, t, h) + d] * o[a.Q(b, t, h) + d];
                for (int j = 0; j < a.Tk; j++)
                {
                    if (p[t, j] == 0) continue;
                    double dp = 0;
                    for (int d = 0; d < a.D; d++) dp += dO[a.Q(b, t, h) + d] * v[a.Kv(b, j, h) + d];
                    double ds = p[t, j] * (dp - rowDot) * a.Scale;
                    for (int d = 0; d < a.D; d++)
                    {
                        dq[a.Q(b, t, h) + d] += ds * k[a.Kv(b, j, h) + d];
                        dk[a.Kv(b, j, h) + d] += ds * q[a.Q(b, t, h) + d];
                        dv[a.Kv(b, j, h) + d] += p[t, j] * dO[a.Q(b, t, h) + d];
                    }
                }
            }
        }
        return (dq, dk, dv);
    }
}
