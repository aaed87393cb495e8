using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace VwLmm.Core;

/// <summary>
/// Immutable row-major shape of rank ≤ <see cref="MaxRank"/>. Dimensions are ints; the element count is a long. The
/// dimensions are stored inline, so making a shape allocates nothing (ops build several per call).
/// </summary>
public readonly struct Shape : IEquatable<Shape>
{
    public const int MaxRank = 8;

    [InlineArray(MaxRank)]
    private struct DimBuffer { private int _first; }

    private readonly DimBuffer _dims;

    public Shape(params ReadOnlySpan<int> dims)
    {
        if (dims.Length > MaxRank) throw new ArgumentException($"shape [{string.Join(",", dims.ToArray())}] has rank {dims.Length}, at most {MaxRank} is supported");
        foreach (int d in dims)
            if (d < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(",", dims.ToArray())}]");
        Rank = dims.Length;
        dims.CopyTo(_dims);
    }

    public int Rank { get; }
    public int this[int i] => Dims[i < 0 ? Rank + i : i];

    [UnscopedRef]
    public ReadOnlySpan<int> Dims => ((ReadOnlySpan<int>)_dims)[..Rank];

    public long Numel
    {
        get
        {
            long n = 1;
            foreach (int d in Dims) n *= d;
            return n;
        }
    }

    /// <summary>This shape with the last dimension replaced by <paramref name="size"/>.</summary>
    public Shape WithLast(int size)
    {
        Span<int> d = stackalloc int[MaxRank];
        Dims.CopyTo(d);
        d[Rank - 1] = size;
        return new Shape(d[..Rank]);
    }

    public bool Equals(Shape other) => Dims.SequenceEqual(other.Dims);
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (int d in Dims) h.Add(d);
        return h.ToHashCode();
    }
    public static bool operator ==(Shape a, Shape b) => a.Equals(b);
    public static bool operator !=(Shape a, Shape b) => !a.Equals(b);
    public override string ToString() => "[" + string.Join(",", Dims.ToArray()) + "]";
}
