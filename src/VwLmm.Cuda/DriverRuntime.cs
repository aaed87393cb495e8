using System.Text;
using VwLmm.Cuda.Native;

namespace VwLmm.Cuda;

/// <summary>
/// <see cref="ICudaRuntime"/> on a real GPU: the device's primary context, one stream that every copy, memset, launch and
/// cuBLAS call is queued on (so they run in program order), kernel modules loaded lazily from the embedded PTX
/// (compute_90 on compute capability ≥ 9.0, else compute_80; the driver JITs it for the exact GPU), functions cached.
/// cuBLAS runs in its default math mode, i.e. FP32 SGEMM without TF32 unless <c>allowTf32</c> is set.
/// Not thread-safe: one runtime drives one stream from one thread at a time.
/// </summary>
public sealed unsafe class DriverRuntime : ICudaRuntime
{
    /// <summary>Launches asking for more dynamic shared memory than this must opt in per function.</summary>
    private const int DefaultSharedLimit = 48 * 1024;

    private readonly int _device;
    private readonly nint _context, _stream, _cublas;
    private readonly string _arch;
    private readonly Dictionary<string, nint> _modules = new();
    private readonly Dictionary<(string Module, string Kernel), nint> _functions = new();
    private readonly Dictionary<nint, uint> _sharedOptIn = new();
    private bool _disposed;

    [ThreadStatic] private static nint t_current;

    /// <summary>Opens device <paramref name="ordinal"/>; throws <see cref="InvalidOperationException"/> with
    /// <see cref="CudaDevice.Probe"/>'s reason when there is no usable GPU.</summary>
    public DriverRuntime(int ordinal = 0, bool allowTf32 = false)
    {
        var probe = CudaDevice.Probe();
        if (!probe.Available) throw new InvalidOperationException($"CUDA is not available: {probe.Reason}");
        if ((uint)ordinal >= (uint)probe.Devices.Count)
            throw new ArgumentOutOfRangeException(nameof(ordinal), $"device {ordinal} does not exist ({probe.Devices.Count} found)");
        var info = probe.Devices[ordinal];
        _arch = KernelModules.ArchFor(info.ComputeMajor, info.ComputeMinor);
        DeviceName = info.ToString();
        Info = info;

        int device;
        nint context, stream, cublas;
        Driver.Check(Driver.cuDeviceGet(&device, ordinal), $"cuDeviceGet({ordinal})");
        Driver.Check(Driver.cuDevicePrimaryCtxRetain(&context, device), $"cuDevicePrimaryCtxRetain({ordinal})");
        _device = device;
        _context = context;
        MakeCurrent();
        Driver.Check(Driver.cuStreamCreate(&stream, 0), "cuStreamCreate");
        _stream = stream;
        Cublas.Check(Cublas.cublasCreate_v2(&cublas), "cublasCreate");
        _cublas = cublas;
        Cublas.Check(Cublas.cublasSetStream_v2(_cublas, _stream), "cublasSetStream");
        Cublas.Check(Cublas.cublasSetMathMode(_cublas, allowTf32 ? Cublas.Tf32TensorOpMath : Cublas.DefaultMath), "cublasSetMathMode");
    }

    public string DeviceName { get; }
    public bool IsEmulated => false;

    /// <summary>The device as <see cref="CudaDevice.Probe"/> described it.</summary>
    public CudaDeviceInfo Info { get; }

    public long L2CacheBytes => Info.L2CacheBytes;

    public nint CreateEvent()
    {
        MakeCurrent();
        nint evt;
        Driver.Check(Driver.cuEventCreate(&evt, 0), "cuEventCreate");
        return evt;
    }

    public void RecordEvent(nint evt)
    {
        MakeCurrent();
        Driver.Check(Driver.cuEventRecord(evt, _stream), "cuEventRecord");
    }

    public float ElapsedMilliseconds(nint start, nint end)
    {
        MakeCurrent();
        Driver.Check(Driver.cuEventSynchronize(end), "cuEventSynchronize");
        float ms;
        Driver.Check(Driver.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime");
        return ms;
    }

    public void DestroyEvent(nint evt)
    {
        MakeCurrent();
        Driver.Check(Driver.cuEventDestroy_v2(evt), "cuEventDestroy");
    }

    public nint Alloc(long bytes)
    {
        MakeCurrent();
        ulong ptr;
        Driver.Check(Driver.cuMemAlloc_v2(&ptr, (nuint)bytes), $"cuMemAlloc({bytes} bytes)");
        return (nint)ptr;
    }

    public void Free(nint ptr)
    {
        MakeCurrent();
        Driver.Check(Driver.cuMemFree_v2((ulong)ptr), "cuMemFree");
    }

    // Pageable host memory: the driver stages the source before the async call returns, so the caller may reuse it.
    public void CopyHostToDevice(nint dst, nint src, long bytes)
    {
        MakeCurrent();
        Driver.Check(Driver.cuMemcpyHtoDAsync_v2((ulong)dst, (void*)src, (nuint)bytes, _stream), "cuMemcpyHtoDAsync");
    }

    public void CopyDeviceToHost(nint dst, nint src, long bytes)
    {
        MakeCurrent();
        Driver.Check(Driver.cuMemcpyDtoHAsync_v2((void*)dst, (ulong)src, (nuint)bytes, _stream), "cuMemcpyDtoHAsync");
        Driver.Check(Driver.cuStreamSynchronize(_stream), "cuStreamSynchronize(after cuMemcpyDtoHAsync)");
    }

    public void CopyDeviceToDevice(nint dst, nint src, long bytes)
    {
        MakeCurrent();
        Driver.Check(Driver.cuMemcpyDtoDAsync_v2((ulong)dst, (ulong)src, (nuint)bytes, _stream), "cuMemcpyDtoDAsync");
    }

    public void Memset32(nint dst, uint value, long count)
    {
        MakeCurrent();
        Driver.Check(Driver.cuMemsetD32Async((ulong)dst, value, (nuint)count, _stream), "cuMemsetD32Async");
    }

    /// <summary>Waits for the stream; an asynchronous kernel fault surfaces here (run with CUDA_LAUNCH_BLOCKING=1 to
    /// have it reported by the launch that caused it).</summary>
    public void Synchronize()
    {
        MakeCurrent();
        Driver.Check(Driver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
    }

    public void BeginCapture()
    {
        MakeCurrent();
        Driver.Check(Driver.cuStreamBeginCapture_v2(_stream, Driver.CaptureModeThreadLocal), "cuStreamBeginCapture");
    }

    public nint EndCapture()
    {
        MakeCurrent();
        nint graph, exec;
        Driver.Check(Driver.cuStreamEndCapture(_stream, &graph), "cuStreamEndCapture");
        int rc = Driver.cuGraphInstantiateWithFlags(&exec, graph, 0);
        // The executable graph is a copy: the captured one is not needed once instantiated.
        Driver.Check(Driver.cuGraphDestroy(graph), "cuGraphDestroy");
        Driver.Check(rc, "cuGraphInstantiate");
        return exec;
    }

    public void LaunchGraph(nint graph)
    {
        MakeCurrent();
        Driver.Check(Driver.cuGraphLaunch(graph, _stream), "cuGraphLaunch");
    }

    public void DestroyGraph(nint graph)
    {
        MakeCurrent();
        Driver.Check(Driver.cuGraphExecDestroy(graph), "cuGraphExecDestroy");
    }

    public nint GetFunction(string module, string kernel)
    {
        if (_functions.TryGetValue((module, kernel), out var f)) return f;
        MakeCurrent();
        var bytes = Encoding.UTF8.GetBytes(kernel + "\0");
        fixed (byte* name = bytes)
            Driver.Check(Driver.cuModuleGetFunction(&f, LoadModule(module), name), $"cuModuleGetFunction({module}.{kernel})");
        _functions[(module, kernel)] = f;
        return f;
    }

    private nint LoadModule(string module)
    {
        if (_modules.TryGetValue(module, out var m)) return m;
        var image = Encoding.UTF8.GetBytes(KernelModules.GetPtx(module, _arch) + "\0");
        // The JIT's error log names the PTX line a failure comes from; CUDA_ERROR_INVALID_PTX alone does not.
        const int logSize = 8192;
        var errorLog = new byte[logSize];
        fixed (byte* ptx = image, log = errorLog)
        {
            int* options = stackalloc int[] { Driver.JitErrorLogBuffer, Driver.JitErrorLogBufferSizeBytes };
            void** values = stackalloc void*[] { log, (void*)logSize };
            int rc = Driver.cuModuleLoadDataEx(&m, ptx, 2, options, values);
            if (rc != Driver.Success)
            {
                string jitLog = Encoding.UTF8.GetString(errorLog).TrimEnd('\0').Trim();
                throw new CudaException($"cuModuleLoadData({module}, {_arch})", rc, Driver.ErrorName(rc),
                                        jitLog.Length > 0 ? $"{Driver.ErrorDescription(rc)}; {jitLog.Split('\n')[0]}" : Driver.ErrorDescription(rc),
                                        jitLog);
            }
        }
        _modules[module] = m;
        return m;
    }

    public void Launch(nint function, string kernel, (uint x, uint y, uint z) grid, (uint x, uint y, uint z) block,
                       uint sharedBytes, void** args)
    {
        MakeCurrent();
        if (sharedBytes > DefaultSharedLimit && (!_sharedOptIn.TryGetValue(function, out var granted) || granted < sharedBytes))
        {
            Driver.Check(Driver.cuFuncSetAttribute(function, Driver.FuncAttrMaxDynamicSharedSizeBytes, (int)sharedBytes),
                         $"cuFuncSetAttribute({kernel}, MAX_DYNAMIC_SHARED_SIZE_BYTES={sharedBytes})");
            _sharedOptIn[function] = sharedBytes;
        }
        Driver.Check(Driver.cuLaunchKernel(function, grid.x, grid.y, grid.z, block.x, block.y, block.z, sharedBytes, _stream, args, null),
                     $"cuLaunchKernel({kernel})");
    }

    public void SgemmStridedBatched(bool transA, bool transB, int m, int n, int k, float alpha,
                                    nint a, int lda, long strideA, nint b, int ldb, long strideB,
                                    float beta, nint c, int ldc, long strideC, int batch)
    {
        MakeCurrent();
        Cublas.CheckSgemm(Cublas.cublasSgemmStridedBatched(_cublas, transA ? Cublas.OpT : Cublas.OpN, transB ? Cublas.OpT : Cublas.OpN,
                                                           m, n, k, &alpha, a, lda, strideA, b, ldb, strideB, &beta, c, ldc, strideC, batch),
                          m, n, k, batch);
    }

    /// <summary>Registers and static shared memory of a loaded kernel, as the driver reports them for this GPU.</summary>
    public (int Registers, int SharedBytes) FunctionResources(nint function, string kernel)
    {
        MakeCurrent();
        int regs, shared;
        Driver.Check(Driver.cuFuncGetAttribute(&regs, Driver.FuncAttrNumRegs, function), $"cuFuncGetAttribute({kernel}, NUM_REGS)");
        Driver.Check(Driver.cuFuncGetAttribute(&shared, Driver.FuncAttrSharedSizeBytes, function), $"cuFuncGetAttribute({kernel}, SHARED_SIZE_BYTES)");
        return (regs, shared);
    }

    /// <summary>Synchronizes, then releases everything in reverse order of creation; the first failure is thrown
    /// after all releases were attempted.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        MakeCurrent();
        CudaException? first = null;
        void Attempt(Action release)
        {
            try { release(); }
            catch (CudaException e) { first ??= e; }
        }
        Attempt(() => Driver.Check(Driver.cuStreamSynchronize(_stream), "cuStreamSynchronize"));
        foreach (var (name, module) in _modules) Attempt(() => Driver.Check(Driver.cuModuleUnload(module), $"cuModuleUnload({name})"));
        Attempt(() => Cublas.Check(Cublas.cublasDestroy_v2(_cublas), "cublasDestroy"));
        Attempt(() => Driver.Check(Driver.cuStreamDestroy_v2(_stream), "cuStreamDestroy"));
        Attempt(() => Driver.Check(Driver.cuDevicePrimaryCtxRelease_v2(_device), "cuDevicePrimaryCtxRelease"));
        t_current = 0;
        if (first != null) throw first;
    }

    // The current context is per OS thread: set it on whichever thread calls us, once per thread.
    private void MakeCurrent()
    {
        if (t_current == _context) return;
        Driver.Check(Driver.cuCtxSetCurrent(_context), "cuCtxSetCurrent");
        t_current = _context;
    }
}
