namespace VwLmm.Core;

/// <summary>Small reductions over host rows (logits read back from a backend).</summary>
public static class HostMath
{
    /// <summary>x [N] → index of the largest element; ties go to the lowest index (greedy decoding's rule).</summary>
    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    /// <summary>x [N] → the indices of its k largest elements, largest first; ties go to the lower index, as in <see cref="ArgMax"/>.</summary>
    public static int[] TopK(ReadOnlySpan<float> x, int k)
    {
        var best = new List<int>(k + 1);
        for (int i = 0; i < x.Length; i++)
        {
            int pos = best.Count;
            while (pos > 0 && x[best[pos - 1]] < x[i]) pos--;
            if (pos >= k) continue;
            best.Insert(pos, i);
            if (best.Count > k) best.RemoveAt(k);
        }
        return best.ToArray();
    }

    /// <summary>
    /// logits [N] → the k most probable indices under softmax(logits), most probable first, with their probabilities in
    /// double: ranked by the logits, so a saturated float softmax (0 for all but one) cannot leave them in arbitrary order.
    /// </summary>
    public static (int Index, double P)[] TopSoftmax(ReadOnlySpan<float> logits, int k)
    {
        double lse = LogSumExp(logits);
        var top = TopK(logits, k);
        var result = new (int, double)[top.Length];
        for (int r = 0; r < top.Length; r++) result[r] = (top[r], Math.Exp(logits[top[r]] - lse));
        return result;
    }

    /// <summary>x [N] → log Σ exp(x) in double, so that exp(x_i − LogSumExp(x)) is softmax(x)_i without overflow.</summary>
    public static double LogSumExp(ReadOnlySpan<float> x)
    {
        double max = double.NegativeInfinity;
        foreach (float v in x) max = Math.Max(max, v);
        if (double.IsNegativeInfinity(max)) return max;
        double sum = 0;
        foreach (float v in x) sum += Math.Exp(v - max);
        return max + Math.Log(sum);
    }
}
