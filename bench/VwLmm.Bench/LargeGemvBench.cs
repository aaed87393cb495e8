using BenchmarkDotNet.Attributes;
using VwLmm.Core;
using VwLmm.Cpu;

namespace VwLmm.Bench;

/// <summary>
/// One weight matrix of a 7B LLaMA (the 11008×4096 MLP projection, far larger than the caches) times M rows of x
/// through CpuBackend.Gemm's matrix-vector path, stored F32 or BF16: decoding one prompt (M = 1) or a batch of four.
/// Throughput is the matrix's bytes over the call's time, so a product that reads it once per row of x shows 1/M of
/// the bandwidth a product that reads it once shows.
/// </summary>
[Config(typeof(ThroughputConfig))]
public class LargeGemvBench : IThroughput
{
    private const int N = 11008, K = 4096;

    [Params(1, 4)]
    public int M { get; set; }

    [Params(DType.F32, DType.BF16)]
    public DType Weights { get; set; }

    private CpuBackend _backend = null!;
    private Tensor _w = null!, _x = null!, _y = null!;

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend(2);
        _w = BenchTensors.Empty(_backend, Weights, N, K);
        var rng = new Random(1);
        if (Weights == DType.F32)
            _backend.Upload<float>(_w, Enumerable.Range(0, N * K).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray());
        else
            _backend.Upload<ushort>(_w, Enumerable.Range(0, N * K).Select(_ => FloatConversions.FloatToBf16((float)(rng.NextDouble() - 0.5))).ToArray());
        _x = BenchTensors.Random(_backend, 2, 1f, M, K);
        _y = BenchTensors.Empty(_backend, M, N);
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();

    [Benchmark]
    public void Product() => _backend.Gemm(false, true, M, N, K, 1f, _x, K, 0, _w, K, 0, 0f, _y, N, 0, 1);

    public Work WorkOf(string method) => Work.Bytes((double)N * K * Weights.Size());
}
