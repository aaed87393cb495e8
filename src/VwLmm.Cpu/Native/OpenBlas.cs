using System.Runtime.InteropServices;
using VwLmm.Core;

namespace VwLmm.Cpu.Native;

/// <summary>Our binding to OpenBLAS's CBLAS sgemm (Debian libopenblas0-pthread). Row-major on the CPU backend; the
/// emulated CUDA runtime calls it column-major to stand in for cuBLAS exactly.</summary>
internal static unsafe partial class OpenBlas
{
    private const string Lib = "openblas";
    public const int RowMajor = 101, ColMajor = 102, NoTrans = 111, Trans = 112;

    static OpenBlas()
    {
        NativeLibraries.Register(typeof(OpenBlas).Assembly, Lib, "libopenblas.so.0", "libopenblas.so", "libopenblas.dll", "libopenblas");
        NativeLibraries.Register(typeof(OpenBlas).Assembly, LibC, "libc.so.6", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1");
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            SetEnv(ThreadTimeoutVariable, ThreadTimeout, overwrite: 0);
        }
        catch (DllNotFoundException)
        {
            // A C library we do not know by name: OpenBLAS keeps its own default, which is slower, not wrong.
        }
    }

    /// <summary>
    /// log2 of the TSC cycles an idle OpenBLAS thread spins (sched_yield) before it sleeps; set for the process before
    /// the library loads, since OpenBLAS reads it once then. Its default, 28 (≈ 77 ms), keeps the second core busy long
    /// after each GEMM, while this backend's pool needs both cores for the ops in between and token-by-token decoding
    /// needs them for its own matrix-vector products (docs/BENCHMARKS.md, session 13). 18 (≈ 75 µs) still bridges the
    /// gap between back-to-back GEMMs. A value already in the environment wins.
    /// </summary>
    public const string ThreadTimeout = "18";

    public const string ThreadTimeoutVariable = "OPENBLAS_THREAD_TIMEOUT";
    private const string LibC = "c";

    /// <summary>Throws a clear error when the library is missing, before any call.</summary>
    public static void EnsureLoaded()
    {
        if (NativeLibraries.TryLoad(typeof(OpenBlas).Assembly, Lib) == 0)
            throw new DllNotFoundException("OpenBLAS not found (libopenblas.so.0): run ./build.sh deps or apt-get install libopenblas0-pthread");
    }

    [LibraryImport(Lib, EntryPoint = "cblas_sgemm")]
    public static partial void Sgemm(int order, int transA, int transB, int m, int n, int k, float alpha,
                                     float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    /// <summary>
    /// Makes the following GEMMs use <paramref name="n"/> threads. OpenBLAS has one process-wide thread count, so every
    /// caller states its own before each GEMM (two backends with different counts would otherwise silently share the
    /// last one set); the last value set is cached because openblas_set_num_threads is not free. Not meant for GEMMs
    /// that run concurrently with different counts: the setting itself is global.
    /// </summary>
    public static void UseThreads(int n)
    {
        if (_threads == n) return;
        SetNumThreads(n);
        _threads = n;
    }

    private static int _threads;

    [LibraryImport(Lib, EntryPoint = "openblas_set_num_threads")]
    private static partial void SetNumThreads(int n);

    [LibraryImport(Lib, EntryPoint = "openblas_get_num_threads")]
    public static partial int GetNumThreads();

    [LibraryImport(LibC, EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    /// <summary>A variable of the process's native environment (what OpenBLAS reads); the runtime's
    /// <see cref="Environment.GetEnvironmentVariable(string)"/> sees a managed copy taken at startup instead.</summary>
    public static string? GetEnv(string name) => Marshal.PtrToStringUTF8(GetEnvPointer(name));

    // getenv's result belongs to the environment: returned as a pointer so no marshaller frees it.
    [LibraryImport(LibC, EntryPoint = "getenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint GetEnvPointer(string name);
}
