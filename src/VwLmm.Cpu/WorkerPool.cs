using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace VwLmm.Cpu;

/// <summary>A range of work items [start,end) executed by one worker.</summary>
public interface IRangeJob
{
    void Execute(int start, int end);
}

/// <summary>
/// Persistent worker threads for row-parallel CPU ops. Parallel.For costs ~1.5 ms per call on small work; this pool
/// hands chunks to its threads through one flag per worker instead and runs jobs given as structs, so a dispatch
/// allocates nothing. The partition of [0,count) into contiguous chunks depends only on count and the thread count,
/// which keeps every reduction deterministic for a given thread count. The calling thread runs chunk 0. Waiting
/// busy-polls a flag for at most the pool's spin time on either side, then parks in SemaphoreSlim.Wait: with no spin
/// time (beside OpenBLAS, whose threads need the cores during GEMMs) at once.
/// <para>
/// An empty two-thread dispatch and join take 1.2 µs with the other side polling, where a semaphore hand-off each
/// way took 2.0 µs; a decoded token of bench-5m makes about 20 of them (docs/BENCHMARKS.md, session 21). Parking is a
/// handshake that cannot lose a wake-up: the waiter announces itself (an interlocked write) and then looks at its
/// flag once more; the setter writes the flag and then takes the announcement (an interlocked exchange), releasing
/// the semaphore only if it found one, so that each side sees the other's write. The dispatcher parks the same way on
/// the count of running workers, which holds its announcement in the same word.
/// </para>
/// </summary>
public sealed class WorkerPool : IDisposable
{
    private interface IRunner { void Run(int start, int end); }

    private sealed class Runner<TJob> : IRunner where TJob : struct, IRangeJob
    {
        public TJob Job;
        public void Run(int start, int end) => Job.Execute(start, end);
    }

    private readonly Thread[] _threads;
    // Per worker: the go flag of its next chunk, its parked announcement, the semaphore it parks on.
    private readonly int[] _go, _parked;
    private readonly SemaphoreSlim[] _wake;
    private readonly SemaphoreSlim _done = new(0);
    // Participants still running, plus DispatcherParked while the dispatcher waits: one word, so that the last
    // worker's decrement and its look at whether the dispatcher waits are one atomic step. As two words, a worker
    // preempted between them could find the next dispatch's dispatcher waiting and release it before its items ran.
    private const int DispatcherParked = 1 << 30;
    private int _state;
    private readonly Dictionary<Type, IRunner> _runners = new();
    private readonly object _dispatch = new();
    private IRunner? _current;
    private int _count;
    private int _chunks;
    private volatile bool _stopping;
    private Exception? _failure;
    private readonly long _spinTicks;

    /// <param name="threads">workers, the calling thread included.</param>
    /// <param name="spin">how long a worker that finished a chunk, and the dispatcher waiting for workers, poll before
    /// they park: ops follow each other microseconds apart, and a parked thread takes 5–50 µs to wake.</param>
    public WorkerPool(int threads, TimeSpan spin = default)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "thread count must be ≥ 1");
        Threads = threads;
        _spinTicks = (long)(spin.TotalSeconds * Stopwatch.Frequency);
        _threads = new Thread[threads - 1];
        _go = new int[threads - 1];
        _parked = new int[threads - 1];
        _wake = new SemaphoreSlim[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int worker = i;
            _wake[i] = new SemaphoreSlim(0);
            _threads[i] = new Thread(() => WorkerLoop(worker)) { IsBackground = true, Name = $"vwlmm-cpu-{worker + 1}" };
            _threads[i].Start();
        }
    }

    public int Threads { get; }

    /// <summary>Runs job over [0,count) split into at most Threads chunks of at least minChunk items.</summary>
    public void For<TJob>(int count, in TJob job, int minChunk = 1) where TJob : struct, IRangeJob
    {
        if (count <= 0) return;
        int chunks = Math.Min(Threads, Math.Max(1, count / Math.Max(1, minChunk)));
        if (chunks == 1)
        {
            var local = job;
            local.Execute(0, count);
            return;
        }
        lock (_dispatch)
        {
            Runner<TJob> runner = GetRunner<TJob>();
            runner.Job = job;
            _current = runner;
            _count = count;
            _chunks = chunks;
            _failure = null;
            Volatile.Write(ref _state, chunks - 1);
            // Chunk c goes to worker c − 1; the flag's release write publishes the fields above.
            for (int w = 0; w < chunks - 1; w++)
            {
                Volatile.Write(ref _go[w], 1);
                if (Interlocked.Exchange(ref _parked[w], 0) == 1) _wake[w].Release();
            }
            try
            {
                RunChunk(runner, 0);
            }
            finally
            {
                WaitForWorkers();
                _current = null;
            }
            if (_failure is { } f) throw new AggregateException("worker failed", f);
        }
    }

    private Runner<TJob> GetRunner<TJob>() where TJob : struct, IRangeJob
    {
        if (!_runners.TryGetValue(typeof(TJob), out var r))
        {
            r = new Runner<TJob>();
            _runners.Add(typeof(TJob), r);
        }
        return Unsafe.As<Runner<TJob>>(r);
    }

    private void RunChunk(IRunner runner, int chunk)
    {
        int start = (int)((long)_count * chunk / _chunks);
        int end = (int)((long)_count * (chunk + 1) / _chunks);
        if (start < end) runner.Run(start, end);
    }

    private void WaitForWorkers()
    {
        if (Poll(ref _state, 0)) return;
        // If the last worker finished between the poll and the announcement, the sum is the flag alone and nobody will
        // release; otherwise the last worker's decrement leaves exactly the flag, and it releases.
        if (Interlocked.Add(ref _state, DispatcherParked) != DispatcherParked) _done.Wait();
        Interlocked.Add(ref _state, -DispatcherParked);
    }

    private void WorkerLoop(int worker)
    {
        while (true)
        {
            if (!Poll(ref _go[worker], 1))
            {
                Interlocked.Exchange(ref _parked[worker], 1);
                // As in WaitForWorkers: a flag set after the poll either finds the announcement (and releases) or is seen here.
                if ((Volatile.Read(ref _go[worker]) == 0 && !_stopping) || Interlocked.Exchange(ref _parked[worker], 0) == 0)
                    _wake[worker].Wait();
            }
            if (_stopping) return;
            Volatile.Write(ref _go[worker], 0);
            try
            {
                RunChunk(_current!, worker + 1);
            }
            catch (Exception e)
            {
                _failure = e;
            }
            finally
            {
                if (Interlocked.Decrement(ref _state) == DispatcherParked) _done.Release();
            }
        }
    }

    // Polls until value equals target (true) or the spin time is up or the pool is stopping (false).
    private bool Poll(ref int value, int target)
    {
        if (Volatile.Read(ref value) == target) return true;
        if (_spinTicks == 0) return false;
        long deadline = Stopwatch.GetTimestamp() + _spinTicks;
        while (!_stopping)
        {
            for (int i = 0; i < 64; i++)
            {
                if (Volatile.Read(ref value) == target) return true;
                Thread.SpinWait(1);
            }
            if (Stopwatch.GetTimestamp() >= deadline) return false;
        }
        return false;
    }

    public void Dispose()
    {
        _stopping = true;
        Interlocked.MemoryBarrier();
        for (int w = 0; w < _threads.Length; w++)
            if (Interlocked.Exchange(ref _parked[w], 0) == 1) _wake[w].Release();
        foreach (var t in _threads) t.Join();
        foreach (var w in _wake) w.Dispose();
        _done.Dispose();
    }
}
