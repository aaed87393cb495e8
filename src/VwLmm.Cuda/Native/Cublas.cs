using System.Runtime.InteropServices;
using System.Runtime.CompilerServices;
using VwLmm.Core;

namespace VwLmm.Cuda.Native;

/// <summary>Our binding to cuBLAS (libcublas.so.13/.12/.11): a handle bound to our stream, and SGEMM strided-batched.</summary>
internal static unsafe partial class Cublas
{
    private const string Lib = "cublas";

    public const int OpN = 0, OpT = 1;

    /// <summary>cublasMath_t: DEFAULT_MATH keeps FP32 SGEMM in full FP32 (no TF32 tensor-core rounding of inputs to 10
    /// mantissa bits), so GPU results stay within the CPU backend's tolerances; TF32 is opt-in.</summary>
    public const int DefaultMath = 0, Tf32TensorOpMath = 3;

    static Cublas() => NativeLibraries.Register(typeof(Cublas).Assembly, Lib,
        "libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "cublas64_13.dll", "cublas64_12.dll", "cublas64_11.dll");

    /// <summary>True when some libcublas can be loaded.</summary>
    public static bool IsLoadable => NativeLibraries.TryLoad(typeof(Cublas).Assembly, Lib) != 0;

    public static void Check(int status, string operation)
    {
        if (status != 0) throw new CudaException(operation, status, StatusName(status), StatusDescription(status));
    }

    public static void Check(int status, [InterpolatedStringHandlerArgument(nameof(status))] ref FailedCall operation)
    {
        if (status != 0) Check(status, operation.Name());
    }

    /// <summary>cuBLAS's argument rule for (strided batched) SGEMM, column-major: CUBLAS_STATUS_INVALID_VALUE (7) for a
    /// negative size or a pitch below max(1, rows of the stored matrix) — even where k = 0 leaves A and B unread — else 0.
    /// The emulator refuses what the library refuses.</summary>
    public static int SgemmArgumentStatus(bool transA, bool transB, int m, int n, int k, int lda, int ldb, int ldc, int batch)
        => m < 0 || n < 0 || k < 0 || batch < 0 || lda < Math.Max(1, transA ? k : m) || ldb < Math.Max(1, transB ? n : k)
           || ldc < Math.Max(1, m) ? 7 : 0;

    /// <summary>Throws for a failed SGEMM call, named with its shape (the driver's and the emulator's call share it).</summary>
    public static void CheckSgemm(int status, int m, int n, int k, int batch) =>
        Check(status, $"cublasSgemmStridedBatched(m={m}, n={n}, k={k}, batch={batch})");

    /// <summary>cublasStatus_t names (cublas_api.h); a table because cublasGetStatusName is missing from early 11.x.</summary>
    public static string StatusName(int status) => status switch
    {
        0 => "CUBLAS_STATUS_SUCCESS",
        1 => "CUBLAS_STATUS_NOT_INITIALIZED",
        3 => "CUBLAS_STATUS_ALLOC_FAILED",
        7 => "CUBLAS_STATUS_INVALID_VALUE",
        8 => "CUBLAS_STATUS_ARCH_MISMATCH",
        11 => "CUBLAS_STATUS_MAPPING_ERROR",
        13 => "CUBLAS_STATUS_EXECUTION_FAILED",
        14 => "CUBLAS_STATUS_INTERNAL_ERROR",
        15 => "CUBLAS_STATUS_NOT_SUPPORTED",
        16 => "CUBLAS_STATUS_LICENSE_ERROR",
        _ => $"cublasStatus {status}",
    };

    public static string StatusDescription(int status) => status switch
    {
        1 => "the library was not initialized (no device or no driver)",
        3 => "resource allocation failed",
        7 => "an unsupported value or parameter was passed",
        8 => "the device does not support the operation",
        11 => "access to GPU memory space failed",
        13 => "the GPU program failed to execute",
        14 => "an internal operation failed",
        15 => "the functionality requested is not supported",
        16 => "the functionality requested requires a license",
        _ => "unknown status",
    };

    [LibraryImport(Lib)] public static partial int cublasCreate_v2(nint* handle);
    [LibraryImport(Lib)] public static partial int cublasDestroy_v2(nint handle);
    [LibraryImport(Lib)] public static partial int cublasSetStream_v2(nint handle, nint stream);
    [LibraryImport(Lib)] public static partial int cublasSetMathMode(nint handle, int mode);

    /// <summary>Column-major C[i] = α·op(A[i])·op(B[i]) + β·C[i]; α and β read from host memory (the default pointer mode).</summary>
    [LibraryImport(Lib)]
    public static partial int cublasSgemmStridedBatched(nint handle, int transA, int transB, int m, int n, int k,
                                                        float* alpha, nint a, int lda, long strideA,
                                                        nint b, int ldb, long strideB, float* beta,
                                                        nint c, int ldc, long strideC, int batchCount);
}
