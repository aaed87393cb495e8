namespace VwLmm.Core;

/// <summary>
/// Dropout's mask, defined once for every backend so that backward recomputes it and nothing is stored: element i of a
/// call with seed s is kept when the high 32 bits of <see cref="Rng.SplitMix64"/>(s, i) are at least round(rate·2³²),
/// and a kept element is scaled by 1/(1 − rate). Each element's draw depends only on (s, i), not on the thread or GPU
/// block that computes it.
/// </summary>
public static class DropoutMask
{
    /// <summary>The least high word that keeps an element: round(rate·2³²), rate in [0, 1).</summary>
    public static uint Threshold(float rate) => (uint)Math.Min(Math.Round(rate * 4294967296.0), uint.MaxValue);

    /// <summary>The factor a kept element is multiplied by, 1/(1 − rate) rounded to float.</summary>
    public static float Scale(float rate) => 1f / (1f - rate);

    public static bool Keeps(ulong seed, long i, uint threshold) => (uint)(Rng.SplitMix64(seed, i) >> 32) >= threshold;
}

/// <summary>
/// Dropout for one forward pass: the rate, and the seed from which each dropout site draws its own mask
/// (<see cref="SiteSeed"/>). Rate 0, as in the default value that inference passes, leaves every site out.
/// </summary>
public readonly record struct DropoutPlan(float Rate, ulong Seed)
{
    public bool IsActive => Rate > 0;

    /// <summary>The mask seed of site <paramref name="site"/> (0, 1, … in the model's order): unrelated masks per site.</summary>
    public ulong SiteSeed(int site) => Rng.SplitMix64(Seed, site);
}
