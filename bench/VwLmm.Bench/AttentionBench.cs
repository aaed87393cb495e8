using BenchmarkDotNet.Attributes;
using VwLmm.Core;
using VwLmm.Cpu;

namespace VwLmm.Bench;

/// <summary>
/// Fused attention forward and backward, q,k,v [B,T,H,D], through the IBackend contract, at bench-5m's two shapes:
/// the decoder's (causal, T 128, D 64) and the vision tower's (bidirectional, T 65, D 32).
/// </summary>
[Config(typeof(ThroughputConfig))]
public class AttentionBench : IThroughput
{
    public enum Layer { Decoder, Vision }

    private const int B = 8, H = 4;

    [Params(Layer.Decoder, Layer.Vision)]
    public Layer Shape { get; set; }

    private int T => Shape == Layer.Decoder ? 128 : 65;
    private int D => Shape == Layer.Decoder ? 64 : 32;
    private bool Causal => Shape == Layer.Decoder;

    private IBackend _backend = null!;
    private Tensor _q = null!, _k = null!, _v = null!, _o = null!, _lse = null!, _dO = null!, _dq = null!, _dk = null!, _dv = null!;

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        _q = BenchTensors.Random(_backend, 1, 1f, B, T, H, D);
        _k = BenchTensors.Random(_backend, 2, 1f, B, T, H, D);
        _v = BenchTensors.Random(_backend, 3, 1f, B, T, H, D);
        _dO = BenchTensors.Random(_backend, 4, 1f, B, T, H, D);
        _o = BenchTensors.Empty(_backend, B, T, H, D);
        _lse = BenchTensors.Empty(_backend, B, H, T);
        _dq = BenchTensors.Empty(_backend, B, T, H, D);
        _dk = BenchTensors.Empty(_backend, B, T, H, D);
        _dv = BenchTensors.Empty(_backend, B, T, H, D);
        AttentionForward();
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();

    [Benchmark]
    public void AttentionForward() =>
        _backend.AttentionForward(_o, _lse, _q, _k, _v, null, B, T, T, T, H, H, D, Causal, 1f / MathF.Sqrt(D));

    [Benchmark]
    public void AttentionBackward() =>
        _backend.AttentionBackward(_dq, _dk, _dv, _dO, _q, _k, _v, _o, _lse, null, B, T, T, T, H, H, D, Causal,
                                   1f / MathF.Sqrt(D), accumulate: false);

    /// <summary>Q·Kᵀ and P·V over the visible pairs, 2 flops × D each; the backward's five products 5/2 of that.</summary>
    public Work WorkOf(string method)
    {
        double pairs = Causal ? T * (T + 1) / 2.0 : (double)T * T, forward = 4.0 * B * H * D * pairs;
        return Work.Flops(method == nameof(AttentionBackward) ? 2.5 * forward : forward);
    }
}
