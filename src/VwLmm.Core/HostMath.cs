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
}
