using VwLmm.Core;

namespace VwLmm.Data.ShapesGrid;

/// <summary>Index-addressable random streams over Core's <see cref="Rng"/> (never System.Random), and the draws the world needs.</summary>
internal static class Streams
{
    /// <summary>The generator of stream (seed, keys…): each key re-seeds from the first output of the previous level.</summary>
    public static Rng Derive(ulong seed, params ReadOnlySpan<ulong> keys)
    {
        ulong h = seed;
        foreach (ulong k in keys) h = new Rng(h ^ k).NextUInt64();
        return new Rng(h);
    }

    /// <summary>Uniform integer in [lo, hi].</summary>
    public static int Next(this Rng rng, int lo, int hi) => lo + rng.NextInt(hi - lo + 1);

    public static T Pick<T>(this Rng rng, IReadOnlyList<T> items) => items[rng.NextInt(items.Count)];
}
