using VwLmm.Core;

namespace VwLmm.Bench;

/// <summary>Backend tensors filled with seeded uniform values for benchmarks.</summary>
public static class BenchTensors
{
    public static Tensor Random(IBackend backend, int seed, float scale, params int[] dims)
    {
        var t = Empty(backend, dims);
        var rng = new Random(seed);
        var data = new float[t.Numel];
        for (int i = 0; i < data.Length; i++) data[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        backend.Upload<float>(t, data);
        return t;
    }

    public static Tensor Empty(IBackend backend, params int[] dims) => Empty(backend, DType.F32, dims);

    public static Tensor Empty(IBackend backend, DType dtype, params int[] dims)
    {
        var shape = new Shape(dims);
        return Tensor.FromBuffer(backend, backend.Allocate(shape.Numel * dtype.Size()), shape, dtype);
    }

    public static Tensor Ints(IBackend backend, int[] values)
    {
        var t = Empty(backend, DType.I32, values.Length);
        backend.Upload<int>(t, values);
        return t;
    }
}
