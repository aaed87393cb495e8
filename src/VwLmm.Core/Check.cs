namespace VwLmm.Core;

/// <summary>Argument validation for <see cref="Ops"/>: every failure names the op, the argument and the shapes.</summary>
internal static class Check
{
    public static void Alive(string op, string arg, Tensor? t)
    {
        if (t is not null && !t.IsAlive)
            throw new InvalidOperationException($"{op}: {arg} {t.Shape} was freed (arena reset or buffer disposed) before use");
    }

    public static void F32(string op, string arg, Tensor t)
    {
        Alive(op, arg, t);
        if (t.DType != DType.F32) throw new ArgumentException($"{op}: {arg} is {t.DType}, expected F32 (shape {t.Shape})");
    }

    /// <summary>
    /// A linear layer's weight of the given rank: F32, or BF16 stored for inference, whose backward (dx = dy·W) the
    /// backends do not run, so it is refused when the op records a gradient.
    /// </summary>
    public static void Weight(string op, string arg, Tensor w, int rank, bool recordsGrad)
    {
        Alive(op, arg, w);
        if (w.DType == DType.BF16 && recordsGrad)
            throw new InvalidOperationException($"{op}: {arg} {w.Shape} is stored as BF16 for inference; gradients need F32 weights");
        if (w.DType is not (DType.F32 or DType.BF16)) throw new ArgumentException($"{op}: {arg} is {w.DType}, expected F32 or BF16 (shape {w.Shape})");
        if (w.Shape.Rank != rank) throw new ArgumentException($"{op}: {arg} has shape {w.Shape}, expected rank {rank}");
    }

    public static void SameBackend(string op, IBackend backend, string arg, Tensor? t)
    {
        if (t is not null && !ReferenceEquals(t.Backend, backend))
            throw new ArgumentException($"{op}: {arg} lives on backend '{t.Backend.Name}', expected '{backend.Name}'");
    }

    /// <summary>Requires exactly the given dims; −1 matches any size.</summary>
    public static void Shape(string op, string arg, Tensor t, params ReadOnlySpan<int> dims)
    {
        F32(op, arg, t);
        bool ok = t.Shape.Rank == dims.Length;
        for (int i = 0; ok && i < dims.Length; i++) ok = dims[i] < 0 || t.Shape[i] == dims[i];
        if (!ok)
            throw new ArgumentException($"{op}: {arg} has shape {t.Shape}, expected [{string.Join(",", dims.ToArray().Select(d => d < 0 ? "*" : d.ToString()))}]");
    }

    public static void Rank(string op, string arg, Tensor t, int rank)
    {
        F32(op, arg, t);
        if (t.Shape.Rank != rank) throw new ArgumentException($"{op}: {arg} has shape {t.Shape}, expected rank {rank}");
    }

    public static void Indices(string op, string arg, ReadOnlySpan<int> values, int lo, int hi, params ReadOnlySpan<int> allowed)
    {
        for (int i = 0; i < values.Length; i++)
        {
            int v = values[i];
            if ((v < lo || v >= hi) && allowed.IndexOf(v) < 0)
                throw new ArgumentOutOfRangeException(arg, $"{op}: {arg}[{i}] = {v} is outside [{lo}, {hi})");
        }
    }

    public static void Count(string op, string arg, int actual, int expected)
    {
        if (actual != expected) throw new ArgumentException($"{op}: {arg} has {actual} elements, expected {expected}");
    }
}
