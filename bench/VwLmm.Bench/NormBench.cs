using BenchmarkDotNet.Attributes;
using VwLmm.Core;
using VwLmm.Cpu;

namespace VwLmm.Bench;

/// <summary>LayerNorm / RMSNorm forward and backward on x [N,C] (memory-bound: reported in GB/s).</summary>
[Config(typeof(ThroughputConfig))]
public class NormBench : IThroughput
{
    private const int N = 4096;

    [Params(256, 1024)]
    public int C { get; set; }

    private CpuBackend _backend = null!;
    private Tensor _x = null!, _y = null!, _gamma = null!, _beta = null!, _mean = null!, _rstd = null!;
    private Tensor _dy = null!, _dx = null!, _dgamma = null!, _dbeta = null!;

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        _x = BenchTensors.Random(_backend, 1, 1f, N, C);
        _dy = BenchTensors.Random(_backend, 2, 1f, N, C);
        _gamma = BenchTensors.Random(_backend, 3, 1f, C);
        _beta = BenchTensors.Random(_backend, 4, 1f, C);
        _y = BenchTensors.Empty(_backend, N, C);
        _dx = BenchTensors.Random(_backend, 5, 1f, N, C);
        _dgamma = BenchTensors.Random(_backend, 6, 1f, C);
        _dbeta = BenchTensors.Random(_backend, 7, 1f, C);
        _mean = BenchTensors.Empty(_backend, N);
        _rstd = BenchTensors.Empty(_backend, N);
        _backend.LayerNormForward(_y, _mean, _rstd, _x, _gamma, _beta, N, C, 1e-5f);
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();

    [Benchmark]
    public void LayerNormForward() => _backend.LayerNormForward(_y, _mean, _rstd, _x, _gamma, _beta, N, C, 1e-5f);

    [Benchmark]
    public void LayerNormBackward() => _backend.LayerNormBackward(_dx, _dgamma, _dbeta, _dy, _x, _gamma, _mean, _rstd, N, C);

    [Benchmark]
    public void RmsNormForward() => _backend.RmsNormForward(_y, _rstd, _x, _gamma, N, C, 1e-5f);

    [Benchmark]
    public void RmsNormBackward() => _backend.RmsNormBackward(_dx, _dgamma, _dy, _x, _gamma, _rstd, N, C);

    /// <summary>Compulsory traffic: forward reads x and writes y; backward reads dy and x and reads+writes dx.</summary>
    public Work WorkOf(string method) =>
        Work.Bytes(4.0 * N * C * (method.EndsWith("Forward", StringComparison.Ordinal) ? 2 : 4));
}
