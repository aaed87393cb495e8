using System.Runtime.InteropServices;
using VwLmm.Core;

namespace VwLmm.Cpu.Native;

/// <summary>Our binding to OpenBLAS's CBLAS sgemm (Debian libopenblas0-pthread). Row-major on the CPU backend; the
/// emulated CUDA runtime calls it column-major to stand in for cuBLAS exactly.</summary>
internal static unsafe partial class OpenBlas
{
    private const string Lib = "openblas";
    public const int RowMajor = 101, ColMajor = 102, NoTrans = 111, Trans = 112;

    static OpenBlas() => NativeLibraries.Register(typeof(OpenBlas).Assembly, Lib, "libopenblas.so.0", "libopenblas.so", "libopenblas.dll", "libopenblas");

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
}
