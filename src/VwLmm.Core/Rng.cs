namespace VwLmm.Core;

/// <summary>
/// xoshiro256** with SplitMix64 seeding: a fixed, documented generator so that initialisation, sampling and data
/// order are bit-identical across runs, platforms and .NET versions (System.Random promises none of that). The whole
/// state is four ulongs, saved in training checkpoints for exact resume.
/// </summary>
public sealed class Rng
{
    private ulong _s0, _s1, _s2, _s3;

    public Rng(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix(ref x);
        _s1 = SplitMix(ref x);
        _s2 = SplitMix(ref x);
        _s3 = SplitMix(ref x);
    }

    /// <summary>SplitMix64's state increment and its finaliser's two multipliers (vector forms of the draw use them).</summary>
    public const ulong Gamma = 0x9E3779B97F4A7C15UL, Mix1 = 0xBF58476D1CE4E5B9UL, Mix2 = 0x94D049BB133111EBUL;

    private static ulong SplitMix(ref ulong x) => Finalize(x += Gamma);

    /// <summary>
    /// Output <paramref name="index"/> (0-based) of SplitMix64 started from state <paramref name="seed"/>, computed
    /// without the outputs before it: a counter-based draw, which gives dropout the same mask on every backend and in
    /// any order of elements (<see cref="DropoutMask"/>).
    /// </summary>
    public static ulong SplitMix64(ulong seed, long index) => Finalize(seed + (ulong)(index + 1) * Gamma);

    private static ulong Finalize(ulong z)
    {
        z = (z ^ (z >> 30)) * Mix1;
        z = (z ^ (z >> 27)) * Mix2;
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

    /// <summary>Uniform in [0,1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [0, n) without modulo bias.</summary>
    public int NextInt(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n));
        ulong limit = ulong.MaxValue - ulong.MaxValue % (ulong)n;
        ulong r;
        do r = NextUInt64(); while (r >= limit);
        return (int)(r % (ulong)n);
    }

    /// <summary>Standard normal (Box–Muller; one draw per call keeps the state simple to save).</summary>
    public double NextNormal()
    {
        double u1 = 1.0 - NextDouble(), u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    public void Shuffle<T>(Span<T> items)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    public ulong[] GetState() => [_s0, _s1, _s2, _s3];

    public void SetState(ReadOnlySpan<ulong> s)
    {
        if (s.Length != 4 || (s[0] | s[1] | s[2] | s[3]) == 0) throw new ArgumentException("rng state must be 4 words, not all zero");
        (_s0, _s1, _s2, _s3) = (s[0], s[1], s[2], s[3]);
    }
}
