using BenchmarkDotNet.Attributes;
using VwLmm.Core;
using VwLmm.Cpu;

namespace VwLmm.Bench;

/// <summary>Softmax cross-entropy with gradient on logits [N,V] through the IBackend contract (memory-bound: GB/s).</summary>
[Config(typeof(ThroughputConfig))]
public class VocabBench : IThroughput
{
    public readonly record struct Rows(int N, int V)
    {
        public override string ToString() => $"{N}x{V}";
    }

    public static IEnumerable<Rows> Shapes => [new(1024, 2048), new(256, 32000)];

    [ParamsSource(nameof(Shapes))]
    public Rows Shape { get; set; }

    private IBackend _backend = null!;
    private Tensor _logits = null!, _dlogits = null!, _losses = null!, _targets = null!;

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        _logits = BenchTensors.Random(_backend, 1, 4f, Shape.N, Shape.V);
        _dlogits = BenchTensors.Random(_backend, 2, 1f, Shape.N, Shape.V);
        _losses = BenchTensors.Empty(_backend, Shape.N);
        var rng = new Random(3);
        _targets = BenchTensors.Ints(_backend, Enumerable.Range(0, Shape.N).Select(_ => rng.Next(Shape.V)).ToArray());
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();

    [Benchmark]
    public void CrossEntropy() => _backend.CrossEntropy(_losses, _dlogits, _logits, _targets, Shape.N, Shape.V, 1f / Shape.N, accumulate: true);

    /// <summary>Compulsory traffic: read logits, read and write dlogits.</summary>
    public Work WorkOf(string method) => Work.Bytes(12.0 * Shape.N * Shape.V);
}
