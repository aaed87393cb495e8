using BenchmarkDotNet.Attributes;
using VwLmm.Core;
using VwLmm.Cpu;

namespace VwLmm.Bench;

/// <summary>Causal fused attention forward, q,k,v [B,T,H,D], through the IBackend contract.</summary>
[Config(typeof(ThroughputConfig))]
public class AttentionBench : IThroughput
{
    private const int B = 8, T = 128, H = 4, D = 64;

    private IBackend _backend = null!;
    private Tensor _q = null!, _k = null!, _v = null!, _o = null!, _lse = null!;

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        _q = BenchTensors.Random(_backend, 1, 1f, B, T, H, D);
        _k = BenchTensors.Random(_backend, 2, 1f, B, T, H, D);
        _v = BenchTensors.Random(_backend, 3, 1f, B, T, H, D);
        _o = BenchTensors.Empty(_backend, B, T, H, D);
        _lse = BenchTensors.Empty(_backend, B, H, T);
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();

    [Benchmark]
    public void AttentionForward() =>
        _backend.AttentionForward(_o, _lse, _q, _k, _v, null, B, T, T, T, H, H, D, causal: true, 1f / MathF.Sqrt(D));

    /// <summary>Q·Kᵀ and P·V over the causal triangle: 2 matmuls × 2 flops × B·H·D·T(T+1)/2.</summary>
    public Work WorkOf(string method) => Work.Flops(2.0 * B * H * D * T * (T + 1));
}
