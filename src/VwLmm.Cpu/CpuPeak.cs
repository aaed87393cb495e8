using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace VwLmm.Cpu;

/// <summary>
/// This machine's fp32 FMA peak, measured rather than assumed: "% of peak" is only honest against the core it ran on.
/// Zen 4 executes a 512-bit FMA in two halves (112 GFLOP/s per core at 3.5 GHz); Zen 5 has full-width units and
/// reaches twice that, as does anything else the benchmarks may land on.
/// </summary>
public static class CpuPeak
{
    // Independent FMA chains per thread: at least latency × pipes (4 × 2 on both Zens) keep every FMA pipe busy.
    private const int Chains = 12;

    /// <summary>
    /// GFLOP/s of <paramref name="threads"/> threads each running <see cref="Chains"/> FMA chains at the widest
    /// accelerated vector width (the backend's, 512 or 256 bits), started together; the best of <paramref name="tries"/> runs of
    /// about 10 ms, so a busy moment lowers only one try.
    /// </summary>
    public static double MeasureGflops(int threads, int tries = 10)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        const long Iterations = 1 << 21;
        bool wide = Vector512.IsHardwareAccelerated;
        int lanes = wide ? V512.Count : V256.Count;
        double flops = 2.0 * Chains * lanes * Iterations * threads, best = 0;
        var starts = new long[threads];
        var ends = new long[threads];
        for (int t = 0; t < tries; t++)
        {
            // Each worker stamps its own start and end: with every core busy, the dispatching thread would run only
            // after the workers finish, too late to start a clock.
            using var start = new Barrier(threads);
            var workers = Enumerable.Range(0, threads).Select(i => new Thread(() =>
            {
                start.SignalAndWait();
                starts[i] = Stopwatch.GetTimestamp();
                Sink = wide ? Chain<V512>(Iterations) : Chain<V256>(Iterations);
                ends[i] = Stopwatch.GetTimestamp();
            })).ToArray();
            foreach (var w in workers) w.Start();
            foreach (var w in workers) w.Join();
            double seconds = (double)(ends.Max() - starts.Min()) / Stopwatch.Frequency;
            best = Math.Max(best, flops / seconds / 1e9);
        }
        return best;
    }

    // Written by the workers so the JIT cannot drop their loops.
    private static volatile float Sink;

    // Fully optimised from the first call: tier-0 code of this loop keeps the chains in memory and measures the JIT.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Chain<TV>(long n) where TV : unmanaged, IVec<TV>
    {
        TV m = TV.Create(0.9999999f), c = TV.Create(1e-7f), x0 = TV.Create(1), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0,
           x6 = x0, x7 = x0, x8 = x0, x9 = x0, x10 = x0, x11 = x0;
        for (long i = 0; i < n; i++)
        {
            x0 = TV.Fma(x0, m, c); x1 = TV.Fma(x1, m, c); x2 = TV.Fma(x2, m, c); x3 = TV.Fma(x3, m, c);
            x4 = TV.Fma(x4, m, c); x5 = TV.Fma(x5, m, c); x6 = TV.Fma(x6, m, c); x7 = TV.Fma(x7, m, c);
            x8 = TV.Fma(x8, m, c); x9 = TV.Fma(x9, m, c); x10 = TV.Fma(x10, m, c); x11 = TV.Fma(x11, m, c);
        }
        return TV.Sum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11);
    }
}
