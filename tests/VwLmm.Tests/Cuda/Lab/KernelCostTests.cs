using NUnit.Framework;
using VwLmm.Cuda;

namespace VwLmm.Tests.Cuda.Lab;

/// <summary>The kernel lab's cost model against hand counts and docs/KERNELS.md's worked bounds, the peak table against
/// driver device names, and the emulated runtime's timing events.</summary>
public class KernelCostTests
{
    private static readonly DevicePeak H100Sxm = DevicePeaks.Find("NVIDIA H100 80GB HBM3")!;

    [Test]
    public void VisiblePairsCountTheScoredTriangle()
    {
        Assert.That(KernelCost.VisiblePairs(5, 5, causal: false), Is.EqualTo(25));
        Assert.That(KernelCost.VisiblePairs(5, 5, causal: true), Is.EqualTo(1 + 2 + 3 + 4 + 5));
        // Bottom-right alignment: 2 new queries after 3 cached keys see 4 and 5 keys.
        Assert.That(KernelCost.VisiblePairs(2, 5, causal: true), Is.EqualTo(4 + 5));
        Assert.That(KernelCost.VisiblePairs(1, 600, causal: true), Is.EqualTo(600));
    }

    [Test]
    public void GemmAndAttentionByHand()
    {
        // [2,4]·[4,3]: 2·2·3·4 flops; A 8, B 12, C 6 floats (C twice when accumulating).
        Assert.That(KernelCost.Gemm(2, 3, 4), Is.EqualTo(new KernelCost(4 * 26, 48)));
        Assert.That(KernelCost.Gemm(2, 3, 4, batch: 2, accumulate: true), Is.EqualTo(new KernelCost(2 * 4 * 32, 96)));
        // The same product with B in bf16: A 8 and C 6 floats, B 12 two-byte elements.
        Assert.That(KernelCost.GemmBf16(2, 3, 4), Is.EqualTo(new KernelCost(4 * 14 + 2 * 12, 48)));
        Assert.That(KernelCost.GemmBf16(2, 3, 4, batch: 2), Is.EqualTo(new KernelCost(2 * 80, 96)));
        // Causal self-attention, B=2, T=3, H=2, D=16: 6 pairs per head → 4·16 flops each; q,o 2·3·2·16, k,v the same, lse 12.
        var fwd = KernelCost.AttentionForward(2, 3, 3, 2, 2, 16, causal: true);
        Assert.That(fwd.Flops, Is.EqualTo(2 * 2 * 6 * 4 * 16));
        Assert.That(fwd.Bytes, Is.EqualTo(4 * (2 * 192 + 2 * 192 + 12)));
        Assert.That(KernelCost.AttentionBackward(2, 3, 3, 2, 2, 16, causal: true).Flops, Is.EqualTo(3.5 * fwd.Flops));
        // Zeroing 10 floats writes 40 bytes and computes nothing.
        Assert.That(KernelCost.Fill(10), Is.EqualTo(new KernelCost(40, 0)));
        // Scattering 2 rows of 3 floats: 6 floats read, 6 written, 2 slot indices read; no arithmetic.
        Assert.That(KernelCost.ScatterRows(2, 3), Is.EqualTo(new KernelCost(4 * (6 + 6 + 2), 0)));
    }

    // docs/KERNELS.md's worked bounds on an H100 SXM (3.35 TB/s).
    [TestCase("cross-entropy + dlogits, V=32000, 16384 rows", 2.5)]
    [TestCase("KL + both gradients, V=32000, 9216 pairs", 2.8)]
    [TestCase("AdamW, 7e9 parameters", 58)]
    [TestCase("sum of squares, 7e9 gradients", 8.4)]
    [TestCase("gather, R=16384, C=4096", 0.16)]
    public void MemoryBoundsMatchKernelsMd(string what, double documentedMs)
    {
        var cost = what.Split(',')[0] switch
        {
            "cross-entropy + dlogits" => KernelCost.CrossEntropyWithGradient(16384, 32000),
            "KL + both gradients" => KernelCost.VisualWordKlWithGradients(9216, 32000),
            "AdamW" => KernelCost.AdamW(7_000_000_000),
            "sum of squares" => KernelCost.SumSquares(7_000_000_000),
            _ => KernelCost.GatherRows(16384, 4096),
        };
        double ms = cost.Bytes / (H100Sxm.BandwidthGBs * 1e6);
        Assert.That(ms, Is.EqualTo(documentedMs).Within(documentedMs * 0.03), what);
    }

    [TestCase("NVIDIA A100-SXM4-40GB", "A100 40GB SXM")]
    [TestCase("NVIDIA A100-SXM4-80GB", "A100 80GB SXM")]
    [TestCase("NVIDIA A100-PCIE-40GB", "A100 40GB PCIe")]
    [TestCase("NVIDIA A100 80GB PCIe", "A100 80GB PCIe")]
    [TestCase("NVIDIA H100 80GB HBM3", "H100 SXM")]
    [TestCase("NVIDIA H100 PCIe", "H100 PCIe")]
    [TestCase("NVIDIA H100 NVL", "H100 NVL")]
    [TestCase("NVIDIA H200", "H200 SXM")]
    [TestCase("NVIDIA H200 NVL", "H200 NVL")]
    [TestCase("NVIDIA GH200 480GB", null)]
    [TestCase("NVIDIA GeForce RTX 4090", null)]
    [TestCase("emu", null)]
    public void PeakTableIsKeyedByDriverName(string name, string? model) =>
        Assert.That(DevicePeaks.Find(name)?.Model, Is.EqualTo(model));

    [Test]
    public void RooflineNamesTheBindingLimit()
    {
        // 3.35 GB at 3.35 TB/s is 1 ms: measured 2 ms is 50 % of the memory bound.
        var streaming = new KernelTiming("x", "x", "", 2, new KernelCost(3.35e9, 1e9));
        Assert.That(streaming.OfPeak(H100Sxm), Is.EqualTo(("memory", 50.0)));
        // 67 GFLOP at 67 TFLOP/s is 1 ms, far above 1 MB of traffic: 4 ms is 25 % of the fp32 bound.
        var dense = new KernelTiming("x", "x", "", 4, new KernelCost(1e6, 67e9));
        Assert.That(dense.OfPeak(H100Sxm), Is.EqualTo(("fp32", 25.0)));
        Assert.That(H100Sxm.RidgeFlopsPerByte, Is.EqualTo(20).Within(0.1));
    }

    [Test]
    public void EmulatedEventsMeasureHostTime()
    {
        using var runtime = new EmulatedRuntime();
        nint start = runtime.CreateEvent(), end = runtime.CreateEvent();
        try
        {
            runtime.RecordEvent(start);
            Thread.Sleep(30);
            runtime.RecordEvent(end);
            Assert.That(runtime.ElapsedMilliseconds(start, end), Is.InRange(29f, 2000f));
            Assert.That(runtime.L2CacheBytes, Is.Positive);
        }
        finally
        {
            runtime.DestroyEvent(start);
            runtime.DestroyEvent(end);
        }
    }
}
