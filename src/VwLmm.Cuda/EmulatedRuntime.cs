using System.Diagnostics;
using System.Runtime.InteropServices;
using VwLmm.Cpu.Native;
using VwLmm.Cuda.Native;

namespace VwLmm.Cuda;

/// <summary>
/// The CUDA runtime on the CPU: kernels/*.cu compiled by g++ into libvwlmm_emu.so run under the fiber emulator, device
/// memory is host memory, and OpenBLAS in column-major mode stands in for cuBLAS, so CudaBackend's cuBLAS call site
/// (the row-major → column-major swap) is exercised without a GPU. Launches are synchronous. A stream capture records
/// each launch with a copy of its argument values and each memset, device copy and SGEMM, runs none of them, and
/// refuses what the driver refuses while capturing (host copies, synchronisation, allocation); a graph replays them.
/// </summary>
public sealed unsafe class EmulatedRuntime : ICudaRuntime
{
    // What the driver refuses at launch and g++-built kernels cannot show: ptxas's registers and static shared memory
    // on the validation archs (sm_80, sm_90) bound a block's threads and shared memory.
    private static readonly ILookup<(string Module, string Kernel), KernelResources> Resources =
        KernelModules.Resources().ToLookup(r => (r.Module, r.Kernel));
    private readonly Dictionary<nint, KernelResources[]> _resources = [];
    private readonly Dictionary<nint, int[]> _argumentSizes = [];
    private readonly Dictionary<nint, Recording> _graphs = [];
    private Recording? _capture;
    private nint _lastGraph;

    /// <summary>What a capture recorded, and the native blocks holding its launches' argument values.</summary>
    private sealed class Recording
    {
        public readonly List<Action> Work = [];
        public readonly List<nint> Blocks = [];
        public string? Refused;

        public void Free()
        {
            foreach (var b in Blocks) NativeMemory.Free((void*)b);
            Blocks.Clear();
        }
    }

    public EmulatedRuntime()
    {
        Emulator.EnsureLoaded();
        OpenBlas.EnsureLoaded();
    }

    /// <summary>Sets how many OS threads run blocks (process-wide; default 2). Results do not depend on it.</summary>
    public static void SetWorkers(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), n, "emulator worker count must be positive");
        Emulator.EnsureLoaded();
        Emulator.SetWorkers(n);
    }

    public string DeviceName => "emu";
    public bool IsEmulated => true;

    /// <summary>Stands in for the host's last-level cache, which is what an emulated kernel's data sits in.</summary>
    public long L2CacheBytes => 32L << 20;

    // Launches are synchronous, so an event is a host clock reading taken when it is recorded.
    public nint CreateEvent() => (nint)NativeMemory.AllocZeroed(sizeof(long));
    public void RecordEvent(nint evt) => *(long*)evt = Stopwatch.GetTimestamp();
    public float ElapsedMilliseconds(nint start, nint end) =>
        (float)Stopwatch.GetElapsedTime(*(long*)start, *(long*)end).TotalMilliseconds;
    public void DestroyEvent(nint evt) => NativeMemory.Free((void*)evt);

    /// <summary>
    /// Device memory filled with 0xFF bytes (NaN as float, −1 as int), not the zeros of a fresh host page: the driver
    /// promises no contents, and code that reads memory nothing wrote must not pass here by luck.
    /// </summary>
    public nint Alloc(long bytes)
    {
        if (bytes < 0) throw new ArgumentOutOfRangeException(nameof(bytes));
        RefuseWhileCapturing("cuMemAlloc");
        var size = (nuint)Math.Max(bytes, 1);
        var p = NativeMemory.AlignedAlloc(size, 256);
        NativeMemory.Fill(p, size, 0xFF);
        return (nint)p;
    }

    public void Free(nint ptr)
    {
        RefuseWhileCapturing("cuMemFree");
        NativeMemory.AlignedFree((void*)ptr);
    }

    public void CopyHostToDevice(nint dst, nint src, long bytes)
    {
        RefuseWhileCapturing("cuMemcpyHtoDAsync");
        Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes);
    }

    public void CopyDeviceToHost(nint dst, nint src, long bytes)
    {
        RefuseWhileCapturing("cuMemcpyDtoHAsync");
        Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes);
    }

    // Recording happens in separate methods: a lambda over a method's parameters allocates its closure on entry, and
    // the launch path must allocate nothing when not capturing.
    public void CopyDeviceToDevice(nint dst, nint src, long bytes)
    {
        if (_capture is { } c) RecordCopy(c, dst, src, bytes);
        else Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes);
    }

    private static void RecordCopy(Recording c, nint dst, nint src, long bytes) =>
        c.Work.Add(() => Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes));

    public void Memset32(nint dst, uint value, long count)
    {
        if (_capture is { } c) RecordFill(c, dst, value, count);
        else Fill32(dst, value, count);
    }

    private static void RecordFill(Recording c, nint dst, uint value, long count) => c.Work.Add(() => Fill32(dst, value, count));

    private static void Fill32(nint dst, uint value, long count)
    {
        for (long done = 0; done < count;)
        {
            int n = (int)Math.Min(count - done, int.MaxValue);
            new Span<uint>((uint*)dst + done, n).Fill(value);
            done += n;
        }
    }

    public void Synchronize() => RefuseWhileCapturing("cuStreamSynchronize");

    public void BeginCapture()
    {
        if (_capture is not null) throw new CudaException("cuStreamBeginCapture", 1, "CUDA_ERROR_INVALID_VALUE", "the stream is already capturing");
        _capture = new Recording();
    }

    public nint EndCapture()
    {
        var c = _capture ?? throw new CudaException("cuStreamEndCapture", 1, "CUDA_ERROR_INVALID_VALUE", "the stream is not capturing");
        _capture = null;
        if (c.Refused is not null)
        {
            c.Free();
            throw new CudaException("cuStreamEndCapture", 901, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", $"{c.Refused} was called during the capture");
        }
        _graphs[++_lastGraph] = c;
        return _lastGraph;
    }

    public void LaunchGraph(nint graph)
    {
        RefuseWhileCapturing("cuGraphLaunch");
        foreach (var work in Graph(graph).Work) work();
    }

    public void DestroyGraph(nint graph)
    {
        Graph(graph).Free();
        _graphs.Remove(graph);
    }

    private Recording Graph(nint graph) =>
        _graphs.TryGetValue(graph, out var g) ? g : throw new CudaException("cuGraphLaunch", 400, "CUDA_ERROR_INVALID_HANDLE", $"no graph {graph}");

    // The driver fails the call and invalidates the capture; so does the emulator, so that code which would break a
    // capture on a GPU breaks it here too.
    private void RefuseWhileCapturing(string call)
    {
        if (_capture is null) return;
        _capture.Refused ??= call;
        throw new CudaException(call, 900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", "not permitted while the stream is capturing");
    }

    /// <summary>All modules live in one library, so <paramref name="module"/> only names the kernel's source in errors.</summary>
    public nint GetFunction(string module, string kernel)
    {
        if (Emulator.ModuleGetFunction(out nint f, kernel) != 0)
            throw new InvalidOperationException($"{module}.cu: {Emulator.LastError}");
        _resources[f] = [.. Resources[(module, kernel)]];
        return f;
    }

    /// <summary>The C parameter types of a kernel from <see cref="GetFunction"/>, one letter each: p pointer, i 32-bit
    /// integer, l 64-bit integer, f float, d double (what g++ saw in kernels/*.cu, which PTX's .u64 cannot tell apart).</summary>
    public string KernelSignature(nint function) =>
        Marshal.PtrToStringUTF8(Emulator.KernelSignature(function)) ?? throw new ArgumentException("null kernel function", nameof(function));

    public void Launch(nint function, string kernel, (uint x, uint y, uint z) grid, (uint x, uint y, uint z) block,
                       uint sharedBytes, void** args)
    {
        if (_resources.TryGetValue(function, out var rows)) CheckResources(kernel, rows, block, sharedBytes);
        if (_capture is { } c) RecordLaunch(c, function, kernel, grid, block, sharedBytes, CopyArguments(c, function, args));
        else RunKernel(function, kernel, grid, block, sharedBytes, args);
    }

    private static void RecordLaunch(Recording c, nint function, string kernel, (uint x, uint y, uint z) grid,
                                     (uint x, uint y, uint z) block, uint sharedBytes, void** args)
    {
        nint copy = (nint)args;
        c.Work.Add(() => RunKernel(function, kernel, grid, block, sharedBytes, (void**)copy));
    }

    private static void RunKernel(nint function, string kernel, (uint x, uint y, uint z) grid, (uint x, uint y, uint z) block,
                                  uint sharedBytes, void** args)
    {
        int rc = Emulator.LaunchKernel(function, grid.x, grid.y, grid.z, block.x, block.y, block.z, sharedBytes, 0, args, null);
        if (rc != 0)
            throw new InvalidOperationException($"{kernel} failed on the emulator (CUresult {rc}): {Emulator.LastError}");
    }

    /// <summary>The argument values as cuLaunchKernel copies them when it is captured: the caller's may be gone at replay.</summary>
    private void** CopyArguments(Recording c, nint function, void** args)
    {
        if (!_argumentSizes.TryGetValue(function, out var sizes))
            _argumentSizes[function] = sizes = Array.ConvertAll(KernelSignature(function).ToCharArray(), k => k is 'i' or 'f' ? 4 : 8);
        var block = (byte*)NativeMemory.Alloc((nuint)(sizes.Length * (sizeof(void*) + 8)));
        c.Blocks.Add((nint)block);
        var pointers = (void**)block;
        byte* values = block + sizes.Length * sizeof(void*);
        for (int i = 0; i < sizes.Length; i++)
        {
            Buffer.MemoryCopy(args[i], values + 8 * i, 8, sizes[i]);
            pointers[i] = values + 8 * i;
        }
        return pointers;
    }

    private static void CheckResources(string kernel, KernelResources[] rows, (uint x, uint y, uint z) block, uint sharedBytes)
    {
        long threads = (long)block.x * block.y * block.z;
        foreach (var r in rows)
        {
            if (threads > r.MaxThreadsPerBlock)
                throw new CudaException($"cuLaunchKernel({kernel})", 701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
                    $"{threads} threads per block, but {r.Registers} registers per thread allow {r.MaxThreadsPerBlock} on {r.Arch}");
            int limit = KernelResources.MaxSharedBytesPerBlock(r.Arch);
            if (r.SharedBytes + (long)sharedBytes > limit)
                throw new CudaException($"cuLaunchKernel({kernel})", 1, "CUDA_ERROR_INVALID_VALUE",
                    $"{r.SharedBytes} bytes of static and {sharedBytes} of dynamic shared memory exceed {r.Arch}'s {limit} per block");
        }
    }

    public void SgemmStridedBatched(bool transA, bool transB, int m, int n, int k, float alpha,
                                    nint a, int lda, long strideA, nint b, int ldb, long strideB,
                                    float beta, nint c, int ldc, long strideC, int batch)
    {
        Cublas.CheckSgemm(Cublas.SgemmArgumentStatus(transA, transB, m, n, k, lda, ldb, ldc, batch), m, n, k, batch);
        if (m == 0 || n == 0) return;
        if (_capture is { } recording)
            RecordSgemm(recording, transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch);
        else ColumnMajorSgemm(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch);
    }

    private static void RecordSgemm(Recording recording, bool transA, bool transB, int m, int n, int k, float alpha,
                                    nint a, int lda, long strideA, nint b, int ldb, long strideB,
                                    float beta, nint c, int ldc, long strideC, int batch) =>
        recording.Work.Add(() => ColumnMajorSgemm(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch));

    private static void ColumnMajorSgemm(bool transA, bool transB, int m, int n, int k, float alpha,
                                         nint a, int lda, long strideA, nint b, int ldb, long strideB,
                                         float beta, nint c, int ldc, long strideC, int batch)
    {
        int ta = transA ? OpenBlas.Trans : OpenBlas.NoTrans, tb = transB ? OpenBlas.Trans : OpenBlas.NoTrans;
        for (int i = 0; i < batch; i++)
            OpenBlas.Sgemm(OpenBlas.ColMajor, ta, tb, m, n, k, alpha, (float*)a + i * strideA, lda,
                           (float*)b + i * strideB, ldb, beta, (float*)c + i * strideC, ldc);
    }

    /// <summary>Frees what live graphs hold (the driver does so when its context goes).</summary>
    public void Dispose()
    {
        foreach (var g in _graphs.Values) g.Free();
        _graphs.Clear();
    }
}
