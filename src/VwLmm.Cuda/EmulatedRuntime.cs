using System.Diagnostics;
using System.Runtime.InteropServices;
using VwLmm.Cpu.Native;
using VwLmm.Cuda.Native;

namespace VwLmm.Cuda;

/// <summary>
/// The CUDA runtime on the CPU: kernels/*.cu compiled by g++ into libvwlmm_emu.so run under the fiber emulator, device
/// memory is host memory, and OpenBLAS in column-major mode stands in for cuBLAS, so CudaBackend's cuBLAS call site
/// (the row-major → column-major swap) is exercised without a GPU. Launches are synchronous.
/// </summary>
public sealed unsafe class EmulatedRuntime : ICudaRuntime
{
    // What the driver refuses at launch and g++-built kernels cannot show: ptxas's registers and static shared memory
    // on the validation archs (sm_80, sm_90) bound a block's threads and shared memory.
    private static readonly ILookup<(string Module, string Kernel), KernelResources> Resources =
        KernelModules.Resources().ToLookup(r => (r.Module, r.Kernel));
    private readonly Dictionary<nint, KernelResources[]> _resources = [];

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
        var size = (nuint)Math.Max(bytes, 1);
        var p = NativeMemory.AlignedAlloc(size, 256);
        NativeMemory.Fill(p, size, 0xFF);
        return (nint)p;
    }

    public void Free(nint ptr) => NativeMemory.AlignedFree((void*)ptr);

    public void CopyHostToDevice(nint dst, nint src, long bytes) => Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes);
    public void CopyDeviceToHost(nint dst, nint src, long bytes) => Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes);
    public void CopyDeviceToDevice(nint dst, nint src, long bytes) => Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes);

    public void Memset32(nint dst, uint value, long count)
    {
        for (long done = 0; done < count;)
        {
            int n = (int)Math.Min(count - done, int.MaxValue);
            new Span<uint>((uint*)dst + done, n).Fill(value);
            done += n;
        }
    }

    public void Synchronize() { }

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
        int rc = Emulator.LaunchKernel(function, grid.x, grid.y, grid.z, block.x, block.y, block.z, sharedBytes, 0, args, null);
        if (rc != 0)
            throw new InvalidOperationException($"{kernel} failed on the emulator (CUresult {rc}): {Emulator.LastError}");
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
        int ta = transA ? OpenBlas.Trans : OpenBlas.NoTrans, tb = transB ? OpenBlas.Trans : OpenBlas.NoTrans;
        for (int i = 0; i < batch; i++)
            OpenBlas.Sgemm(OpenBlas.ColMajor, ta, tb, m, n, k, alpha, (float*)a + i * strideA, lda,
                           (float*)b + i * strideB, ldb, beta, (float*)c + i * strideC, ldc);
    }

    public void Dispose() { }
}
