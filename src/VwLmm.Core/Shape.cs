namespace VwLmm.Core;

/// <summary>Immutable row-major shape. Dimensions are ints; the element count is a long.</summary>
public readonly struct Shape : IEquatable<Shape>
{
    private readonly int[] _dims;

    public Shape(params int[] dims)
    {
        foreach (int d in dims)
            if (d < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(",", dims)}]");
        _dims = (int[])dims.Clone();
    }

    public int Rank => _dims?.Length ?? 0;
    public int this[int i] => _dims[i < 0 ? _dims.Length + i : i];
    public ReadOnlySpan<int> Dims => _dims;

    public long Numel
    {
        get
        {
            long n = 1;
            foreach (int d in _dims ?? []) n *= d;
            return n;
        }
    }

    public bool Equals(Shape other) => Dims.SequenceEqual(other.Dims);
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (int d in _dims ?? []) h.Add(d);
        return h.ToHashCode();
    }
    public static bool operator ==(Shape a, Shape b) => a.Equals(b);
    public static bool operator !=(Shape a, Shape b) => !a.Equals(b);
    public override string ToString() => "[" + string.Join(",", _dims ?? []) + "]";
}
