using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VwLmm.Core;
using VwLmm.Cpu.Native;

namespace VwLmm.Cpu;

/// <summary>Which implementation a <see cref="CpuBackend"/>'s GEMMs run.</summary>
public enum CpuGemm { Auto, OpenBlas, Avx512 }

/// <summary>
/// The CPU backend: our AVX-512 GEMM (<see cref="PackedSgemm"/>) or OpenBLAS, managed SIMD for everything else, parallel over rows on a persistent
/// <see cref="WorkerPool"/>. One partial file per op family (CpuBackend.&lt;Family&gt;.cs) mirrors kernels/&lt;family&gt;.cu.
/// </summary>
public sealed unsafe partial class CpuBackend : IBackend
{
    private sealed class HostBuffer(nint ptr, long bytes) : DeviceBuffer(ptr, bytes)
    {
        protected override void Release(nint ptr) => NativeMemory.AlignedFree((void*)ptr);
    }

    /// <param name="threads">worker threads (0: one per processor).</param>
    /// <param name="gemm">the GEMM implementation; <see cref="CpuGemm.Auto"/> takes <see cref="CpuGemm.Avx512"/> where
    /// Vector512 is accelerated, else OpenBLAS. A fixed choice per machine, so runs repeat bit for bit.</param>
    public CpuBackend(int threads = 0, CpuGemm gemm = CpuGemm.Auto)
    {
        if (threads <= 0) threads = Environment.ProcessorCount;
        if (!Supports(gemm)) throw new NotSupportedException("the AVX-512 GEMM needs a CPU where Vector512 is hardware-accelerated");
        OpenBlas.EnsureLoaded();
        GemmKernel = gemm != CpuGemm.Auto ? gemm : PackedSgemm.IsSupported ? CpuGemm.Avx512 : CpuGemm.OpenBlas;
        // With our own GEMM the pool runs every op, and a worker that polls a while after each finds the next one
        // without a wake-up (bench-5m decode 4,100–4,400 → 4,600–5,400 tokens/s); OpenBLAS's threads need the cores free.
        Pool = new WorkerPool(threads, GemmKernel == CpuGemm.Avx512 ? PoolSpin : TimeSpan.Zero);
    }

    /// <summary>Whether this CPU can run <paramref name="gemm"/>.</summary>
    public static bool Supports(CpuGemm gemm) => gemm != CpuGemm.Avx512 || PackedSgemm.IsSupported;

    /// <summary>How long idle pool threads poll for the next op before blocking, when no OpenBLAS threads share the cores.</summary>
    private static readonly TimeSpan PoolSpin = TimeSpan.FromMicroseconds(100);

    public string Name => "cpu";
    /// <summary>The GEMM implementation this backend runs (never <see cref="CpuGemm.Auto"/>).</summary>
    public CpuGemm GemmKernel { get; }
    public WorkerPool Pool { get; }
    public int Threads => Pool.Threads;

    public DeviceBuffer Allocate(long bytes)
    {
        if (bytes < 0) throw new ArgumentOutOfRangeException(nameof(bytes));
        void* p = NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 256);
        return new HostBuffer((nint)p, bytes);
    }

    public void Upload<T>(Tensor dst, ReadOnlySpan<T> src) where T : unmanaged
    {
        long bytes = (long)src.Length * sizeof(T);
        if (bytes > dst.Bytes) throw new ArgumentException($"Upload: {src.Length} elements do not fit tensor {dst.Shape} {dst.DType}");
        fixed (T* s = src) Buffer.MemoryCopy(s, (void*)dst.Ptr, bytes, bytes);
    }

    public void Download<T>(Tensor src, Span<T> dst) where T : unmanaged
    {
        long bytes = (long)dst.Length * sizeof(T);
        if (bytes > src.Bytes) throw new ArgumentException($"Download: {dst.Length} elements exceed tensor {src.Shape} {src.DType}");
        fixed (T* d = dst) Buffer.MemoryCopy((void*)src.Ptr, d, bytes, bytes);
    }

    public void Synchronize() { }

    public void Dispose()
    {
        Pool.Dispose();
        // The scratch (widened bf16 weights under OpenBLAS) and the RoPE table may hold megabytes; a disposed backend
        // that is still referenced (a test fixture's) should not keep them.
        _scratch = null;
        _ropeTable = null;
        _ropeFrequencies = null;
    }

    // Pinned scratch, grown to the largest need and then reused, so that warm op calls allocate nothing: one region
    // for the calling op (block partials, im2col) and one per thread for work inside pool jobs.
    private float[]? _scratch;
    [ThreadStatic] private static float[]? t_jobScratch;

    /// <summary>A scratch region of at least <paramref name="floats"/> floats, valid until the next op call.</summary>
    private float* Scratch(long floats) => Grow(ref _scratch, floats);

    /// <summary>A scratch region of at least <paramref name="floats"/> floats owned by the calling thread (a pool job's).</summary>
    private static float* JobScratch(long floats) => Grow(ref t_jobScratch, floats);

    private static float* Grow(ref float[]? buffer, long floats)
    {
        if (buffer is null || buffer.Length < floats)
            buffer = GC.AllocateUninitializedArray<float>(checked((int)Math.Max(floats, 1)), pinned: true);
        return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
    }

    /// <summary>Work below which a pool chunk costs more to hand to a worker than to run on the calling thread.</summary>
    private const int MinElementsPerChunk = 1 << 14;

    /// <summary>Tasks per pool chunk so that one chunk covers at least <see cref="MinElementsPerChunk"/> elements of work.</summary>
    private static int MinTasksPerChunk(long elementsPerTask) => (int)Math.Max(1, MinElementsPerChunk / Math.Max(1, elementsPerTask));

    /// <summary>
    /// Total work (multiply-adds) below which a decode-sized op runs on the calling thread however it could be split.
    /// Waking a parked worker costs 5–50 µs, far more when the other core is busy with another process. bench-5m's
    /// per-token matrix-vector products are 2^16 (attention projections) to 2^19 (the 2048×256 LM head) multiply-adds:
    /// on an idle 2-core machine splitting those of 2^17 or more decoded 1.2–1.6× faster (median) than splitting none,
    /// winning 13 of 15 alternating rounds (docs/BENCHMARKS.md), and splitting the 2^16 ones too was slower again;
    /// under load 8 (session 2) the same split made a token's products 550–900 µs instead of 215–250 µs. The choice
    /// follows the benchmarks' condition, an idle machine.
    /// </summary>
    private const long MinParallelWork = 1 << 17;

    /// <summary>
    /// Tasks per pool chunk for <paramref name="count"/> tasks of <paramref name="workPerTask"/> each: all of them
    /// (one chunk, no fork) below <see cref="MinParallelWork"/>, else <see cref="MinTasksPerChunk"/>.
    /// </summary>
    private static int TasksPerChunk(int count, long workPerTask) =>
        (long)count * workPerTask < MinParallelWork ? count : MinTasksPerChunk(workPerTask);

    /// <summary>Runs job over [0,count) on the pool (see <see cref="WorkerPool.For{TJob}"/>) at the widest vector width.</summary>
    private void ParallelFor<TJob>(int count, TJob job, int minChunk = 1) where TJob : struct, ISimdJob =>
        Pool.For(count, new WidestSimd<TJob>(job), minChunk);

    private static float* F(Tensor? t) => t is null ? null : (float*)t.Ptr;
    private static int* I(Tensor? t) => t is null ? null : (int*)t.Ptr;
}
