using BenchmarkDotNet.Attributes;
using VwLmm.Core;
using VwLmm.Cpu;

namespace VwLmm.Bench;

/// <summary>Row-major sgemm C [M,N] = A [M,K]·B [K,N] through CpuBackend (OpenBLAS, all cores).</summary>
[Config(typeof(ThroughputConfig))]
public class GemmBench : IThroughput
{
    public readonly record struct Dims(int M, int N, int K)
    {
        public override string ToString() => $"{M}x{N}x{K}";
    }

    public static IEnumerable<Dims> Shapes =>
        [new(256, 256, 256), new(512, 512, 512), new(1024, 1024, 1024), new(2048, 2048, 2048), new(1024, 2048, 256), new(1024, 256, 2048)];

    [ParamsSource(nameof(Shapes))]
    public Dims Shape { get; set; }

    private CpuBackend _backend = null!;
    private Tensor _a = null!, _b = null!, _c = null!;

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        _a = BenchTensors.Random(_backend, 1, 1f, Shape.M, Shape.K);
        _b = BenchTensors.Random(_backend, 2, 1f, Shape.K, Shape.N);
        _c = BenchTensors.Empty(_backend, Shape.M, Shape.N);
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();

    [Benchmark]
    public void Gemm() =>
        _backend.Gemm(false, false, Shape.M, Shape.N, Shape.K, 1f, _a, Shape.K, 0, _b, Shape.N, 0, 0f, _c, Shape.N, 0, 1);

    public Work WorkOf(string method) => Work.Flops(2.0 * Shape.M * Shape.N * Shape.K);
}
