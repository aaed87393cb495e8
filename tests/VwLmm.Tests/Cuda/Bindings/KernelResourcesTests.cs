using NUnit.Framework;
using VwLmm.Cuda;

namespace VwLmm.Tests.Cuda.Bindings;

public class KernelResourcesTests
{
    // ptxas -v output as NVRTC 11.8 returns it: a non-inlined device function (no entry line), one entry with a stack
    // frame and spills, one without a smem figure.
    private const string Log = """
        ptxas info    : 0 bytes gmem
        ptxas info    : Function properties for helper
        ptxas         .     16 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
        ptxas info    : Compiling entry function 'attention_forward_f32' for 'sm_90'
        ptxas info    : Function properties for attention_forward_f32
        ptxas         .     256 bytes stack frame, 40 bytes spill stores, 44 bytes spill loads
        ptxas info    : Used 255 registers, 49152 bytes smem, 400 bytes cmem[0]
        ptxas info    : Compiling entry function 'fill_f32' for 'sm_90'
        ptxas info    : Function properties for fill_f32
        ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
        ptxas info    : Used 8 registers, 360 bytes cmem[0]
        """;

    // CUDA's occupancy rule for compute capability 8.x and 9.x: 65,536 registers per block, 256 per warp at a time.
    [TestCase(8, 1024)]
    [TestCase(32, 1024)]
    [TestCase(64, 1024)]
    [TestCase(65, 896)]
    [TestCase(72, 896)]
    [TestCase(128, 512)]
    [TestCase(138, 448)]
    [TestCase(255, 256)]
    public void RegistersBoundTheThreadsOfABlock(int registers, int threads) =>
        Assert.That(new KernelResources("m", "k", "sm_90", registers, 0, 0, 0, 0).MaxThreadsPerBlock, Is.EqualTo(threads));

    [Test]
    public void PtxasLogIsParsed()
    {
        var rows = KernelResources.ParsePtxasLog("attention", "sm_90", Log);
        Assert.That(rows, Is.EqualTo(new[]
        {
            new KernelResources("attention", "attention_forward_f32", "sm_90", 255, 49152, 256, 40, 44),
            new KernelResources("attention", "fill_f32", "sm_90", 8, 0, 0, 0, 0),
        }));
    }

    [Test]
    public void ReportLinesRoundTrip()
    {
        var row = new KernelResources("layernorm", "layernorm_forward_f32", "sm_80", 32, 1024, 0, 0, 0);
        Assert.That(row.ToString(), Is.EqualTo("layernorm layernorm_forward_f32 sm_80 32 1024 0 0 0"));
        Assert.That(KernelResources.ParseReport("# header\n" + row + "\n"), Is.EqualTo(new[] { row }));
    }

    [Test]
    public void MalformedReportLineIsAnError()
    {
        var e = Assert.Throws<InvalidDataException>(() => KernelResources.ParseReport("layernorm k sm_80 32 x 0 0 0\n"))!;
        Assert.That(e.Message, Does.Contain("resources.txt"));
    }
}
