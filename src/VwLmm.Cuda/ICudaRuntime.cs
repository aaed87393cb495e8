namespace VwLmm.Cuda;

/// <summary>
/// What CudaBackend needs from a CUDA runtime. Two implementations stand behind it: DriverRuntime (the real driver
/// API and cuBLAS on a GPU) and EmulatedRuntime (the same kernels compiled by g++ against kernels/emu/cuda_emu.h, run on
/// the CPU, with OpenBLAS in column-major mode standing in for cuBLAS). Launch arguments are packed exactly as
/// cuLaunchKernel receives them: an array of pointers to each argument value.
/// </summary>
public interface ICudaRuntime : IDisposable
{
    /// <summary>"cuda:0 NVIDIA H100 …" or "emu".</summary>
    string DeviceName { get; }
    bool IsEmulated { get; }

    nint Alloc(long bytes);
    void Free(nint ptr);
    void CopyHostToDevice(nint dst, nint src, long bytes);
    void CopyDeviceToHost(nint dst, nint src, long bytes);
    void CopyDeviceToDevice(nint dst, nint src, long bytes);
    void Memset32(nint dst, uint value, long count);
    void Synchronize();

    /// <summary>Finds an extern "C" kernel of a module (one module per kernels/*.cu file, loaded lazily).</summary>
    nint GetFunction(string module, string kernel);

    /// <summary>Launches <paramref name="function"/>; <paramref name="args"/> is a void** array of argument addresses.</summary>
    unsafe void Launch(nint function, string kernel, (uint x, uint y, uint z) grid, (uint x, uint y, uint z) block,
                       uint sharedBytes, void** args);

    /// <summary>Bytes of the device's L2 cache: writing more than this evicts whatever a kernel left there.</summary>
    long L2CacheBytes { get; }

    /// <summary>A timing event (CUDA events on the driver, host clock readings on the emulator).</summary>
    nint CreateEvent();
    /// <summary>Queues <paramref name="evt"/> on the stream: it completes when all work queued before it has.</summary>
    void RecordEvent(nint evt);
    /// <summary>Waits for <paramref name="end"/> to complete, then returns the milliseconds between the two recorded events.</summary>
    float ElapsedMilliseconds(nint start, nint end);
    void DestroyEvent(nint evt);

    /// <summary>
    /// Stream capture: from here until <see cref="EndCapture"/>, launches, memsets, device copies and SGEMMs are recorded,
    /// not run. Host copies and synchronisation during a capture are errors.
    /// </summary>
    void BeginCapture();
    /// <summary>Ends the capture → an executable graph of what was recorded (also when it throws, the capture is over).</summary>
    nint EndCapture();
    /// <summary>Queues the graph's work on the stream.</summary>
    void LaunchGraph(nint graph);
    void DestroyGraph(nint graph);

    /// <summary>cuBLAS semantics: column-major strided-batched SGEMM, C = alpha·op(A)·op(B) + beta·C.</summary>
    void SgemmStridedBatched(bool transA, bool transB, int m, int n, int k, float alpha,
                             nint a, int lda, long strideA, nint b, int ldb, long strideB,
                             float beta, nint c, int ldc, long strideC, int batch);
}
