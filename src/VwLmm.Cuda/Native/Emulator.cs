using System.Runtime.InteropServices;
using VwLmm.Core;

namespace VwLmm.Cuda.Native;

/// <summary>
/// Our binding to libvwlmm_emu.so, the kernel emulator built from kernels/*.cu by cmake/emu.cmake (C ABI shaped like
/// the driver API, return codes are CUresult values). The library is loaded from the directory of this assembly.
/// </summary>
internal static unsafe partial class Emulator
{
    private const string Lib = "vwlmm_emu";
    private const string FileName = "libvwlmm_emu.so";

    private static readonly string LibraryPath =
        Path.Combine(Path.GetDirectoryName(typeof(Emulator).Assembly.Location) ?? AppContext.BaseDirectory, FileName);

    static Emulator() => NativeLibraries.Register(typeof(Emulator).Assembly, Lib, LibraryPath);

    /// <summary>Throws a clear error when the library is missing, before any call.</summary>
    public static void EnsureLoaded()
    {
        if (NativeLibraries.TryLoad(typeof(Emulator).Assembly, Lib) == 0)
            throw new DllNotFoundException(
                $"kernel emulator {LibraryPath} not found or not loadable: build it with " +
                "`cmake -S cmake -B artifacts/native && cmake --build artifacts/native` (./build.sh build does), then rebuild VwLmm.Cuda");
    }

    /// <summary>The message of the last failed call on this thread.</summary>
    public static string LastError => Marshal.PtrToStringUTF8(GetLastErrorText()) ?? "";

    [LibraryImport(Lib, EntryPoint = "emuModuleGetFunction", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int ModuleGetFunction(out nint function, string name);

    [LibraryImport(Lib, EntryPoint = "emuLaunchKernel")]
    public static partial int LaunchKernel(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
                                           uint sharedBytes, nint stream, void** args, void** extra);

    [LibraryImport(Lib, EntryPoint = "emuKernelSignature")]
    public static partial nint KernelSignature(nint function);

    [LibraryImport(Lib, EntryPoint = "emuGetLastError")]
    private static partial nint GetLastErrorText();

    [LibraryImport(Lib, EntryPoint = "emuSetWorkers")]
    public static partial void SetWorkers(int n);
}
