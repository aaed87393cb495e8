using NUnit.Framework;
using VwLmm.Cpu;

namespace VwLmm.Tests.Perf;

/// <summary>
/// <see cref="CpuBandwidth"/> reads any size on any number of threads (each thread's part rounded up to whole rounds
/// of lines, allocated, never read past) and rejects what cannot be measured. Its rate is the bench's business, not a
/// test's: only that it is a rate.
/// </summary>
public class CpuBandwidthTests
{
    [TestCase(1, 1)]
    [TestCase(3, 1000)]
    [TestCase(2, 64 * 8 * 2 + 1)]
    [TestCase(2, 1 << 20)]
    public void AnySizeOnAnyThreadsGivesARate(int threads, long bytes)
    {
        double gbs = CpuBandwidth.MeasureReadGBs(threads, bytes, tries: 2);
        Assert.That(double.IsFinite(gbs) && gbs > 0, $"{gbs} GB/s");
    }

    [TestCase(0, 1024, 1)]
    [TestCase(2, 0, 1)]
    [TestCase(2, 1024, 0)]
    public void NothingToMeasureIsRejected(int threads, long bytes, int tries) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuBandwidth.MeasureReadGBs(threads, bytes, tries));
}
