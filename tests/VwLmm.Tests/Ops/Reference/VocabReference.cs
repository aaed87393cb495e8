namespace VwLmm.Tests.Ops.Reference;

/// <summary>
/// Vocabulary-row losses in double. Gradients go through the log-softmax Jacobian (∂L/∂x_k = g_k − softmax_k·Σ g)
/// from ∂L/∂logprob, a different route from the closed forms the backends use.
/// </summary>
public static class VocabReference
{
    public const int IgnoreIndex = -100;

    public static double[] LogSoftmax(ReadOnlySpan<double> x)
    {
        double max = double.NegativeInfinity;
        foreach (double v in x) max = Math.Max(max, v);
        double sum = 0;
        foreach (double v in x) sum += Math.Exp(v - max);
        double lse = max + Math.Log(sum);
        var r = new double[x.Length];
        for (int i = 0; i < x.Length; i++) r[i] = x[i] - lse;
        return r;
    }

    /// <summary>softmax of each row of x [N,V].</summary>
    public static double[] Softmax(double[] x, int N, int V)
    {
        var y = new double[N * V];
        for (int n = 0; n < N; n++)
        {
            var l = LogSoftmax(x.AsSpan(n * V, V));
            for (int v = 0; v < V; v++) y[n * V + v] = Math.Exp(l[v]);
        }
        return y;
    }

    /// <summary>Backpropagates ∂L/∂logprob (g) through log-softmax of logits x into dx.</summary>
    private static void LogSoftmaxBackward(Span<double> dx, ReadOnlySpan<double> g, ReadOnlySpan<double> logProb)
    {
        double sum = 0;
        foreach (double v in g) sum += v;
        for (int k = 0; k < g.Length; k++) dx[k] += g[k] - Math.Exp(logProb[k]) * sum;
    }

    /// <summary>losses [N] (0 where ignored) and d(Σ losses)/dlogits [N,V].</summary>
    public static (double[] Losses, double[] DLogits) CrossEntropy(double[] logits, int[] targets, int N, int V)
    {
        var losses = new double[N];
        var d = new double[N * V];
        for (int n = 0; n < N; n++)
        {
            if (targets[n] == IgnoreIndex) continue;
            var l = LogSoftmax(logits.AsSpan(n * V, V));
            losses[n] = -l[targets[n]];
            var g = new double[V];
            g[targets[n]] = -1;
            LogSoftmaxBackward(d.AsSpan(n * V, V), g, l);
        }
        return (losses, d);
    }

    /// <summary>
    /// Per pair (lmRow, vmRow): q = softmax(lm row), p = softmax(vm row), loss KL(p‖q) or (reverse) KL(q‖p), and
    /// d(Σ losses) with respect to lm [lmRows,V] and vm [vmRows,V], accumulated over pairs sharing a row.
    /// </summary>
    public static (double[] Losses, double[] DLm, double[] DVm) VisualWordKl(double[] lm, double[] vm, int[] pairs, int N, int V, bool reverse)
    {
        var losses = new double[N];
        var dLm = new double[lm.Length];
        var dVm = new double[vm.Length];
        for (int i = 0; i < N; i++)
        {
            int lmRow = pairs[2 * i], vmRow = pairs[2 * i + 1];
            var logQ = LogSoftmax(lm.AsSpan(lmRow * V, V));
            var logP = LogSoftmax(vm.AsSpan(vmRow * V, V));
            var (logA, logB) = reverse ? (logQ, logP) : (logP, logQ);
            // KL(α‖β) = Σ α(log α − log β): ∂/∂log α = α(log α − log β) + α, ∂/∂log β = −α.
            var gA = new double[V];
            var gB = new double[V];
            for (int v = 0; v < V; v++)
            {
                double a = Math.Exp(logA[v]);
                losses[i] += a * (logA[v] - logB[v]);
                gA[v] = a * (logA[v] - logB[v]) + a;
                gB[v] = -a;
            }
            var (gQ, gP) = reverse ? (gA, gB) : (gB, gA);
            LogSoftmaxBackward(dLm.AsSpan(lmRow * V, V), gQ, logQ);
            LogSoftmaxBackward(dVm.AsSpan(vmRow * V, V), gP, logP);
        }
        return (losses, dLm, dVm);
    }

    /// <summary>dx [N,V] of Σ dy·softmax(x) given y = softmax(x): the Jacobian-vector product written out in full.</summary>
    public static double[] SoftmaxBackward(double[] dy, double[] y, int N, int V)
    {
        var dx = new double[N * V];
        for (int n = 0; n < N; n++)
        for (int k = 0; k < V; k++)
        {
            double s = 0;
            for (int v = 0; v < V; v++) s += dy[n * V + v] * y[n * V + v] * ((v == k ? 1 : 0) - y[n * V + k]);
            dx[n * V + k] = s;
        }
        return dx;
    }
}
