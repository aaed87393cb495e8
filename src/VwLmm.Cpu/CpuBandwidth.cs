using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace VwLmm.Cpu;

/// <summary>
/// The rate at which this machine's cores read a buffer of a given size, measured rather than assumed: a decoded token
/// reads every weight once, so its bound is the bandwidth of whichever level of the memory holds that many bytes, and
/// that level differs between machines and between VMs on one machine (a 16 MiB buffer streamed at 97 GB/s on one
/// Zen 4 and at 24–38 GB/s on a Zen 5 VM with a smaller share of its L3; docs/BENCHMARKS.md, sessions 17 and 48).
/// </summary>
public static class CpuBandwidth
{
    // Independent sums per thread, so that the loads, not the add latency, set the pace.
    private const int Chains = 8;

    /// <summary>
    /// GB/s of <paramref name="threads"/> threads reading a buffer of <paramref name="bytes"/> (rounded up to whole
    /// 64-byte lines), each its own contiguous part, over and over, as a decoded token reads the weights it read the
    /// token before: the best of <paramref name="tries"/> runs of at least about 10 ms, started together.
    /// </summary>
    public static unsafe double MeasureReadGBs(int threads, long bytes, int tries = 5)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tries, 1);
        const int Line = 64;
        long lines = (bytes + Line - 1) / Line;
        // Each thread's part is a whole number of chains × lines, so the read loop has no tail.
        long perThread = (lines + threads - 1) / threads;
        perThread = (perThread + Chains - 1) / Chains * Chains;
        nuint total = (nuint)(perThread * threads * Line);
        float* buffer = (float*)NativeMemory.AlignedAlloc(total, Line);
        try
        {
            // Written, so that every page is resident before the clock starts.
            for (long at = 0; at < (long)total; at += int.MaxValue)
                new Span<byte>((byte*)buffer + at, (int)Math.Min(int.MaxValue, (long)total - at)).Fill(1);
            bool wide = Vector512.IsHardwareAccelerated;
            // Passes per try: about 10 ms at 100 GB/s, and at least two, so that the first pass's misses do not dominate.
            long passes = Math.Max(2, 1_000_000_000 / (long)total);
            var starts = new long[threads];
            var ends = new long[threads];
            double best = 0;
            for (int t = 0; t < tries; t++)
            {
                using var start = new Barrier(threads);
                var workers = Enumerable.Range(0, threads).Select(i => new Thread(() =>
                {
                    float* part = buffer + i * perThread * (Line / sizeof(float));
                    start.SignalAndWait();
                    starts[i] = Stopwatch.GetTimestamp();
                    float sum = 0;
                    for (long p = 0; p < passes; p++) sum += wide ? Read<V512>(part, perThread) : Read<V256>(part, perThread);
                    ends[i] = Stopwatch.GetTimestamp();
                    Sink = sum;
                })).ToArray();
                foreach (var w in workers) w.Start();
                foreach (var w in workers) w.Join();
                double seconds = (double)(ends.Max() - starts.Min()) / Stopwatch.Frequency;
                best = Math.Max(best, (double)total * passes / seconds / 1e9);
            }
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    // Written by the workers so the JIT cannot drop their loops.
    private static volatile float Sink;

    /// <summary>
    /// The sum of <paramref name="lines"/> 64-byte lines (a multiple of <see cref="Chains"/>), one line per chain a
    /// round: one 512-bit load, or two 256-bit ones.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe float Read<TV>(float* p, long lines) where TV : unmanaged, IVec<TV>
    {
        const int Floats = 16;
        TV s0 = TV.Zero, s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
        for (long i = 0; i < lines; i += Chains, p += Chains * Floats)
            for (int half = 0; half < Floats; half += TV.Count)
            {
                float* q = p + half;
                s0 += TV.Load(q);
                s1 += TV.Load(q + Floats);
                s2 += TV.Load(q + 2 * Floats);
                s3 += TV.Load(q + 3 * Floats);
                s4 += TV.Load(q + 4 * Floats);
                s5 += TV.Load(q + 5 * Floats);
                s6 += TV.Load(q + 6 * Floats);
                s7 += TV.Load(q + 7 * Floats);
            }
        return TV.Sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
    }
}
