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

    [LibraryImport(Lib, EntryPoint = "openblas_set_num_threads")]
    public static partial void SetNumThreads(int n);
}
