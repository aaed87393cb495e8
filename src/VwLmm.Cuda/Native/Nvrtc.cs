using System.Runtime.InteropServices;
using VwLmm.Core;

namespace VwLmm.Cuda.Native;

/// <summary>Our binding to NVRTC, CUDA's runtime compiler (Debian libnvrtc11.2 ships NVRTC 11.8 as libnvrtc.so.11.2).
/// Works with no GPU, no driver and no host compiler.</summary>
internal static unsafe partial class Nvrtc
{
    private const string Lib = "nvrtc";

    public const int Success = 0, ErrorCompilation = 6;

    static Nvrtc() => NativeLibraries.Register(typeof(Nvrtc).Assembly, Lib,
        "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll");

    public static bool IsLoadable => NativeLibraries.TryLoad(typeof(Nvrtc).Assembly, Lib) != 0;

    /// <summary>Throws a clear error when the library is missing, before any call.</summary>
    public static void EnsureLoaded()
    {
        if (!IsLoadable)
            throw new DllNotFoundException("NVRTC not found (libnvrtc.so.13/.12/.11.2): run ./build.sh deps or apt-get install libnvrtc11.2 libnvrtc-builtins11.8");
    }

    /// <summary>NVRTC's own name for a result, e.g. "NVRTC_ERROR_COMPILATION".</summary>
    public static string ErrorName(int result) => Marshal.PtrToStringUTF8((nint)nvrtcGetErrorString(result)) ?? $"nvrtcResult {result}";

    [LibraryImport(Lib)] public static partial int nvrtcVersion(int* major, int* minor);
    [LibraryImport(Lib)] public static partial byte* nvrtcGetErrorString(int result);
    [LibraryImport(Lib)] public static partial int nvrtcCreateProgram(nint* program, byte* source, byte* name, int numHeaders,
                                                                      byte** headers, byte** includeNames);
    [LibraryImport(Lib)] public static partial int nvrtcCompileProgram(nint program, int numOptions, byte** options);
    [LibraryImport(Lib)] public static partial int nvrtcGetProgramLogSize(nint program, nuint* size);
    [LibraryImport(Lib)] public static partial int nvrtcGetProgramLog(nint program, byte* log);
    [LibraryImport(Lib)] public static partial int nvrtcGetPTXSize(nint program, nuint* size);
    [LibraryImport(Lib)] public static partial int nvrtcGetPTX(nint program, byte* ptx);
    [LibraryImport(Lib)] public static partial int nvrtcGetCUBINSize(nint program, nuint* size);
    [LibraryImport(Lib)] public static partial int nvrtcGetCUBIN(nint program, byte* cubin);
    [LibraryImport(Lib)] public static partial int nvrtcDestroyProgram(nint* program);
}
