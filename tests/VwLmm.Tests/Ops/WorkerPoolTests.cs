using NUnit.Framework;
using VwLmm.Cpu;

namespace VwLmm.Tests.Ops;

/// <summary>
/// The pool's hand-off between dispatcher and workers: every item runs exactly once, whether a dispatch finds the
/// workers parked or still finishing the previous one, and a worker's failure and Dispose reach the caller.
/// </summary>
public sealed class WorkerPoolTests
{
    private unsafe struct CountJob : IRangeJob
    {
        public int* Counts;

        public readonly void Execute(int start, int end)
        {
            for (int i = start; i < end; i++) Counts[i]++;
        }
    }

    private struct ThrowJob : IRangeJob
    {
        public readonly void Execute(int start, int end)
        {
            if (start > 0) throw new InvalidOperationException("chunk failed");
        }
    }

    /// <summary>
    /// Dispatches of random sizes and chunkings (so some leave workers out), back to back and after pauses of
    /// 0–300 µs, so some find a worker parked and some find it on its way to park.
    /// </summary>
    [TestCase(2, 0)]
    [TestCase(3, 0)]
    [TestCase(4, 0)]
    [TestCase(2, 100)]
    [TestCase(3, 100)]
    public unsafe void EveryItemRunsOnceAcrossDispatches(int threads, int spinMicroseconds)
    {
        using var pool = new WorkerPool(threads, TimeSpan.FromMicroseconds(spinMicroseconds));
        var rng = new Random(threads);
        int[] counts = new int[1000];
        const int Rounds = 3000;
        fixed (int* c = counts)
        {
            for (int round = 0; round < Rounds; round++)
            {
                int count = rng.Next(1, counts.Length + 1);
                pool.For(count, new CountJob { Counts = c }, minChunk: rng.Next(1, 64));
                for (int i = 0; i < count; i++)
                    if (c[i] != 1) Assert.Fail($"round {round}: item {i} of {count} ran {c[i]} times");
                new Span<int>(c, count).Clear();
                if (rng.Next(4) == 0) PauseMicroseconds(rng.Next(300));
            }
        }
    }

    [Test]
    public void WorkerFailureReachesTheCaller()
    {
        using var pool = new WorkerPool(2);
        var e = Assert.Throws<AggregateException>(() => pool.For(100, new ThrowJob()))!;
        Assert.That(e.InnerException, Is.TypeOf<InvalidOperationException>());
        int[] counts = new int[100];
        RunCount(pool, counts);
        Assert.That(counts, Is.All.EqualTo(1), "the pool still works after a failed dispatch");
    }

    [TestCase(0)]
    [TestCase(100_000)]
    public void DisposeStopsParkedWorkers(int spinMicroseconds)
    {
        var pool = new WorkerPool(3, TimeSpan.FromMicroseconds(spinMicroseconds));
        RunCount(pool, new int[100]);
        var disposing = Task.Run(pool.Dispose);
        Assert.That(disposing.Wait(TimeSpan.FromSeconds(10)), Is.True, "Dispose returned");
    }

    private static unsafe void RunCount(WorkerPool pool, int[] counts)
    {
        fixed (int* c = counts) pool.For(counts.Length, new CountJob { Counts = c });
    }

    private static void PauseMicroseconds(int us)
    {
        long until = System.Diagnostics.Stopwatch.GetTimestamp() + us * System.Diagnostics.Stopwatch.Frequency / 1_000_000;
        while (System.Diagnostics.Stopwatch.GetTimestamp() < until) Thread.SpinWait(8);
    }
}
