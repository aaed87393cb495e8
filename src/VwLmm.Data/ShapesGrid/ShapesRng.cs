namespace VwLmm.Data.ShapesGrid;

/// <summary>
/// xoshiro256** seeded through SplitMix64, so generated data depends only on this code, never on System.Random.
/// <see cref="Derive"/> gives independent streams per (seed, key…), which makes every sample reproducible by index.
/// </summary>
public sealed class ShapesRng
{
    private ulong _s0, _s1, _s2, _s3;

    public ShapesRng(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix64(ref x);
        _s1 = SplitMix64(ref x);
        _s2 = SplitMix64(ref x);
        _s3 = SplitMix64(ref x);
    }

    /// <summary>A generator for the stream named by <paramref name="keys"/> under <paramref name="seed"/>.</summary>
    public static ShapesRng Derive(ulong seed, params ReadOnlySpan<ulong> keys)
    {
        ulong h = seed;
        foreach (ulong k in keys)
        {
            ulong x = h ^ k;
            h = SplitMix64(ref x);
        }
        return new ShapesRng(h);
    }

    /// <summary>One SplitMix64 step: advances <paramref name="state"/> and returns the mixed output.</summary>
    public static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform integer in [0, n) (Lemire's multiply-high; bias below n / 2^64).</summary>
    public int Next(int n)
    {
        if (n <= 0) throw new ArgumentException($"range must be positive, got {n}", nameof(n));
        return (int)Math.BigMul(NextUInt64(), (ulong)n, out _);
    }

    /// <summary>Uniform integer in [lo, hi].</summary>
    public int Next(int lo, int hi) => lo + Next(hi - lo + 1);

    /// <summary>Uniform double in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    public T Pick<T>(IReadOnlyList<T> items) => items[Next(items.Count)];
}
