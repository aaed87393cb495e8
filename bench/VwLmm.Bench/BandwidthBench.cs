using System.Numerics;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace VwLmm.Bench;

/// <summary>
/// The machine's memory bandwidth, STREAM style, to read the memory-bound ops' GB/s against: Scale (b = s·a) and
/// Triad (a = b + s·c) over float arrays of <see cref="MiB"/> each, split in two halves for the two cores, as the CPU
/// backend splits its norms. 4 and 16 MiB are NormBench's x at C = 256 and 1024 (cache-resident on a 32 MiB L3);
/// 256 MiB streams from DRAM.
/// </summary>
[Config(typeof(ThroughputConfig))]
public class BandwidthBench : IThroughput
{
    private const int Threads = 2;

    [Params(4, 16, 256)]
    public int MiB { get; set; }

    private float[] _a = [], _b = [], _c = [];

    private int Length => MiB << 18;

    [GlobalSetup]
    public void Setup()
    {
        _a = new float[Length];
        _b = new float[Length];
        _c = new float[Length];
        Array.Fill(_a, 1f);
        Array.Fill(_b, 2f);
        Array.Fill(_c, 3f);
    }

    /// <summary>Reads a, writes b: like a norm's forward (read x, write y).</summary>
    [Benchmark]
    public void Scale() => Parallel.For(0, Threads, part =>
    {
        var (lo, n) = Half(part);
        var src = MemoryMarshal.Cast<float, Vector<float>>(_a.AsSpan(lo, n));
        var dst = MemoryMarshal.Cast<float, Vector<float>>(_b.AsSpan(lo, n));
        var s = new Vector<float>(3f);
        for (int i = 0; i < src.Length; i++) dst[i] = s * src[i];
    });

    /// <summary>Reads b and c, writes a.</summary>
    [Benchmark]
    public void Triad() => Parallel.For(0, Threads, part =>
    {
        var (lo, n) = Half(part);
        var b = MemoryMarshal.Cast<float, Vector<float>>(_b.AsSpan(lo, n));
        var c = MemoryMarshal.Cast<float, Vector<float>>(_c.AsSpan(lo, n));
        var a = MemoryMarshal.Cast<float, Vector<float>>(_a.AsSpan(lo, n));
        var s = new Vector<float>(3f);
        for (int i = 0; i < a.Length; i++) a[i] = b[i] + s * c[i];
    });

    private (int Start, int Length) Half(int part) => (part * (Length / Threads), Length / Threads);

    /// <summary>STREAM's count: bytes read plus bytes written, no write-allocate traffic.</summary>
    public Work WorkOf(string method) => Work.Bytes(4.0 * Length * (method == nameof(Triad) ? 3 : 2));
}
