using BenchmarkDotNet.Attributes;
using VwLmm.Core;
using VwLmm.Cpu;

namespace VwLmm.Bench;

/// <summary>
/// The 29 weight matrices of one bench-5m decode step (4 LLaMA layers of q, k, v, o [256×256], gate, up [768×256] and
/// down [256×768], then the 2048×256 LM head) as one matrix-vector product each through CpuBackend.Gemm at M = 1, so
/// the 15.7 MB stream from L3 as in decoding. Decoding itself batches q/k/v and gate/up (ParameterStack, 17 calls);
/// the bytes are the same, and this separate form is the stream's baseline. Throughput is the weights' GB/s.
/// </summary>
[Config(typeof(ThroughputConfig))]
public class DecodeGemvBench : IThroughput
{
    private static readonly (int N, int K)[] TokenProducts =
    [
        .. Enumerable.Repeat<(int, int)[]>([(256, 256), (256, 256), (256, 256), (256, 256), (768, 256), (768, 256), (256, 768)], 4)
            .SelectMany(layer => layer),
        (2048, 256),
    ];

    [Params(1, 2)]
    public int Threads { get; set; }

    private CpuBackend _backend = null!;
    private Tensor[] _weights = null!;
    private Tensor _x = null!, _y = null!;

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend(Threads);
        _weights = TokenProducts.Select((p, i) => BenchTensors.Random(_backend, i, 1f, p.N, p.K)).ToArray();
        _x = BenchTensors.Random(_backend, 100, 1f, 768);
        _y = BenchTensors.Empty(_backend, 2048);
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();

    [Benchmark]
    public void Token()
    {
        for (int i = 0; i < TokenProducts.Length; i++)
        {
            var (n, k) = TokenProducts[i];
            _backend.Gemm(false, true, 1, n, k, 1f, _x, k, 0, _weights[i], k, 0, 0f, _y, n, 0, 1);
        }
    }

    public Work WorkOf(string method) => Work.Bytes(TokenProducts.Sum(p => 4.0 * p.N * p.K));
}
