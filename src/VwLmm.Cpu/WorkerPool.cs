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
/// hands chunks to parked threads instead and runs jobs given as structs, so a dispatch allocates nothing. The partition
/// of [0,count) into contiguous chunks depends only on count and the thread count, which keeps every reduction
/// deterministic for a given thread count. The calling thread runs chunk 0.
/// <para>
/// Hand-off: the dispatcher raises a worker's go flag, and a worker that finishes lowers the pending count; each side
/// polls the other's word for at most the pool's spin time, then blocks on a semaphore. A semaphore is only a wake-up
/// hint, released when the other side said it was about to block (a full fence on both sides, so that one of them
/// always sees the other's write), and every wait re-checks its word: a hand-off between polling threads is two cache
/// lines, not two semaphore operations (a dispatch of two empty chunks, old and new pool back to back: 1.0 → 0.27 µs).
/// With no spin time (beside OpenBLAS, whose threads need the cores during GEMMs) both sides block at once.
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
    private readonly SemaphoreSlim[] _wake;
    private readonly int[] _go, _parked;
    private readonly SemaphoreSlim _done = new(0);
    private int _dispatcherParked;
    private readonly Dictionary<Type, IRunner> _runners = new();
    private readonly object _dispatch = new();
    private IRunner? _current;
    private int _count;
    private int _chunks;
    private int _pending;
    private volatile bool _stopping;
    private Exception? _failure;
    private readonly long _spinTicks;

    /// <param name="threads">workers, the calling thread included.</param>
    /// <param name="spin">how long a worker that finished a chunk, and the dispatcher waiting for workers, poll before
    /// they block: ops follow each other microseconds apart, and a blocked thread takes 5–50 µs to wake.</param>
    public WorkerPool(int threads, TimeSpan spin = default)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "thread count must be ≥ 1");
        Threads = threads;
        _spinTicks = (long)(spin.TotalSeconds * Stopwatch.Frequency);
        _threads = new Thread[threads - 1];
        _wake = new SemaphoreSlim[threads - 1];
        _go = new int[threads - 1];
        _parked = new int[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int chunk = i + 1;
            _wake[i] = new SemaphoreSlim(0);
            _threads[i] = new Thread(() => WorkerLoop(chunk)) { IsBackground = true, Name = $"vwlmm-cpu-{chunk}" };
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
            Volatile.Write(ref _pending, chunks - 1);
            for (int i = 0; i < chunks - 1; i++) Volatile.Write(ref _go[i], 1);
            Interlocked.MemoryBarrier();
            for (int i = 0; i < chunks - 1; i++)
                if (Volatile.Read(ref _parked[i]) == 1) _wake[i].Release();
            try
            {
                RunChunk(runner, 0);
            }
            finally
            {
                WaitUntil(ref _pending, 0, ref _dispatcherParked, _done);
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

    private void WorkerLoop(int chunk)
    {
        int i = chunk - 1;
        while (true)
        {
            WaitUntil(ref _go[i], 1, ref _parked[i], _wake[i]);
            if (_stopping) return;
            Volatile.Write(ref _go[i], 0);
            try
            {
                RunChunk(_current!, chunk);
            }
            catch (Exception e)
            {
                _failure = e;
            }
            finally
            {
                if (Interlocked.Decrement(ref _pending) == 0 && Volatile.Read(ref _dispatcherParked) == 1) _done.Release();
            }
        }
    }

    /// <summary>
    /// Returns once <paramref name="word"/> holds <paramref name="value"/> (or the pool is stopping): polls for the spin
    /// time, then says so in <paramref name="parked"/> and blocks on <paramref name="hint"/>, re-checking after every
    /// wake-up (a release may be left over from an earlier hand-off).
    /// </summary>
    private void WaitUntil(ref int word, int value, ref int parked, SemaphoreSlim hint)
    {
        if (Volatile.Read(ref word) == value || _stopping) return;
        if (_spinTicks > 0)
        {
            long deadline = Stopwatch.GetTimestamp() + _spinTicks;
            while (Volatile.Read(ref word) != value && !_stopping)
            {
                Thread.SpinWait(1);
                if (Stopwatch.GetTimestamp() >= deadline) break;
            }
            if (Volatile.Read(ref word) == value || _stopping) return;
        }
        Volatile.Write(ref parked, 1);
        Interlocked.MemoryBarrier();
        while (Volatile.Read(ref word) != value && !_stopping) hint.Wait();
        Volatile.Write(ref parked, 0);
    }

    public void Dispose()
    {
        _stopping = true;
        foreach (var w in _wake) w.Release();
        foreach (var t in _threads) t.Join();
        foreach (var w in _wake) w.Dispose();
        _done.Dispose();
    }
}
