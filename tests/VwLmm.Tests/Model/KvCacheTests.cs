using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Model;

namespace VwLmm.Tests.Model;

/// <summary>
/// Where the KV cache puts a step's rows and what its queries see, in the device indices a recorded decode step
/// reads (<see cref="KvCache.Slots"/>), and the steps it refuses.
/// </summary>
public class KvCacheTests : CpuFixture
{
    private const int Capacity = 10, Hkv = 2, D = 4;

    private static int[] Ints(IBackend be, Tensor t, int n)
    {
        var host = new int[n];
        be.Download<int>(t, host);
        return host;
    }

    [Test]
    public void APrefillPlacesEverySampleAtItsStart()
    {
        using var cache = new KvCache(Cpu, layers: 1, batch: 2, Capacity, Hkv, D);
        using var arena = new Arena(Cpu, 1 << 16);
        var tape = new Tape(Cpu, arena, record: false);
        var slots = cache.Place(tape, 3, [4, 4], [3, 2]);
        Assert.That(Ints(Cpu, slots.Rows, 6), Is.EqualTo(new[] { 4, 5, 6, 14, 15, 16 }), "row b·Capacity + start + t");
        Assert.That(Ints(Cpu, slots.AttendLengths, 2), Is.EqualTo(new[] { 7, 6 }), "start + key length");
        Assert.That(slots.Tk, Is.EqualTo(7));
    }

    [Test]
    public void ADecodeStepWritesEachSampleAtItsNextSlot()
    {
        using var cache = new KvCache(Cpu, layers: 1, batch: 3, Capacity, Hkv, D);
        cache.Advance([5, 0, 9]);
        Span<int> positions = stackalloc int[3], rows = stackalloc int[3], attend = stackalloc int[3];
        int tk = cache.DecodeSlots(positions, rows, attend);
        Assert.That(positions.ToArray(), Is.EqualTo(new[] { 5, 0, 9 }));
        Assert.That(rows.ToArray(), Is.EqualTo(new[] { 5, 10, 29 }));
        Assert.That(attend.ToArray(), Is.EqualTo(new[] { 6, 1, 10 }));
        Assert.That(tk, Is.EqualTo(10));
    }

    [Test]
    public void StepsThatDoNotFitOrDisagreeAreRefused()
    {
        using var cache = new KvCache(Cpu, layers: 1, batch: 2, Capacity, Hkv, D);
        using var arena = new Arena(Cpu, 1 << 16);
        var tape = new Tape(Cpu, arena, record: false);
        Assert.That(() => cache.Place(tape, 3, [0, 2], [3, 3]),
                    Throws.ArgumentException.With.Message.Contains("a multi-token step needs one start for the batch (sample 1 starts at 2"));
        Assert.That(() => cache.Place(tape, 3, [0, 0], [3, 4]),
                    Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("keyLengths[1] = 4 is outside [0, 3]"));
        Assert.That(() => cache.Place(tape, 3, [8, 8], [3, 3]),
                    Throws.InvalidOperationException.With.Message.Contains("sample 0 needs 11 positions, capacity is 10"));
        Assert.That(() => cache.Place(tape, 1, [0], [1]), Throws.ArgumentException.With.Message.Contains("1 starts and 1 key lengths for a batch of 2"));
        cache.Advance([Capacity, 3]);
        var positions = new int[2];
        Assert.That(() => cache.DecodeSlots(positions, new int[2], new int[2]),
                    Throws.InvalidOperationException.With.Message.Contains("sample 0 needs 11 positions, capacity is 10"));
    }
}
