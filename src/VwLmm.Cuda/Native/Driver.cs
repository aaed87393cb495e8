using System.Runtime.InteropServices;
using System.Runtime.CompilerServices;
using VwLmm.Core;

namespace VwLmm.Cuda.Native;

/// <summary>
/// Our binding to the CUDA driver API (libcuda.so.1 / nvcuda.dll, installed with the NVIDIA driver). Versioned entry
/// points (_v2) are the ones cuda.h maps the plain names to on 64-bit since CUDA 4.0/11.0. Every call returns a CUresult;
/// <see cref="Check"/> turns a failure into a <see cref="CudaException"/>.
/// </summary>
internal static unsafe partial class Driver
{
    private const string Lib = "cuda";

    public const int Success = 0, ErrorNoDevice = 100;

    // CUdevice_attribute
    public const int AttrMaxThreadsPerBlock = 1, AttrClockRateKHz = 13, AttrMultiprocessorCount = 16,
                     AttrMemoryClockRateKHz = 36, AttrGlobalMemoryBusWidthBits = 37, AttrL2CacheSizeBytes = 38,
                     AttrComputeCapabilityMajor = 75, AttrComputeCapabilityMinor = 76,
                     AttrMaxSharedMemoryPerBlockOptin = 97;

    // CUfunction_attribute
    public const int FuncAttrSharedSizeBytes = 1, FuncAttrNumRegs = 4, FuncAttrMaxDynamicSharedSizeBytes = 8;

    // CUjit_option
    public const int JitInfoLogBuffer = 3, JitInfoLogBufferSizeBytes = 4, JitErrorLogBuffer = 5, JitErrorLogBufferSizeBytes = 6;

    static Driver() => NativeLibraries.Register(typeof(Driver).Assembly, Lib, "libcuda.so.1", "libcuda.so", "nvcuda.dll");

    /// <summary>True when the driver library can be loaded (it may still report no device).</summary>
    public static bool IsLoadable => NativeLibraries.TryLoad(typeof(Driver).Assembly, Lib) != 0;

    public static void Check(int result, string operation)
    {
        if (result != Success) throw new CudaException(operation, result, ErrorName(result), ErrorDescription(result));
    }

    public static void Check(int result, [InterpolatedStringHandlerArgument(nameof(result))] ref FailedCall operation)
    {
        if (result != Success) Check(result, operation.Name());
    }

    /// <summary>"CUDA_ERROR_INVALID_VALUE" for 1, from the driver itself; "CUresult 12345" for a code it does not know.</summary>
    public static string ErrorName(int result)
    {
        byte* s;
        return cuGetErrorName(result, &s) == Success && s != null ? Marshal.PtrToStringUTF8((nint)s)! : $"CUresult {result}";
    }

    public static string ErrorDescription(int result)
    {
        byte* s;
        return cuGetErrorString(result, &s) == Success && s != null ? Marshal.PtrToStringUTF8((nint)s)! : "unknown error";
    }

    [LibraryImport(Lib)] public static partial int cuInit(uint flags);
    [LibraryImport(Lib)] public static partial int cuDriverGetVersion(int* version);
    [LibraryImport(Lib)] public static partial int cuGetErrorName(int result, byte** name);
    [LibraryImport(Lib)] public static partial int cuGetErrorString(int result, byte** description);

    [LibraryImport(Lib)] public static partial int cuDeviceGetCount(int* count);
    [LibraryImport(Lib)] public static partial int cuDeviceGet(int* device, int ordinal);
    [LibraryImport(Lib)] public static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(Lib)] public static partial int cuDeviceGetAttribute(int* value, int attribute, int device);
    [LibraryImport(Lib)] public static partial int cuDeviceTotalMem_v2(nuint* bytes, int device);

    [LibraryImport(Lib)] public static partial int cuDevicePrimaryCtxRetain(nint* context, int device);
    [LibraryImport(Lib)] public static partial int cuDevicePrimaryCtxRelease_v2(int device);
    [LibraryImport(Lib)] public static partial int cuCtxSetCurrent(nint context);
    [LibraryImport(Lib)] public static partial int cuCtxSynchronize();

    [LibraryImport(Lib)] public static partial int cuModuleLoadData(nint* module, void* image);
    [LibraryImport(Lib)] public static partial int cuModuleLoadDataEx(nint* module, void* image, uint numOptions, int* options, void** optionValues);
    [LibraryImport(Lib)] public static partial int cuModuleGetFunction(nint* function, nint module, byte* name);
    [LibraryImport(Lib)] public static partial int cuModuleUnload(nint module);
    [LibraryImport(Lib)] public static partial int cuFuncGetAttribute(int* value, int attribute, nint function);
    [LibraryImport(Lib)] public static partial int cuFuncSetAttribute(nint function, int attribute, int value);
    [LibraryImport(Lib)] public static partial int cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ,
                                                                   uint blockX, uint blockY, uint blockZ, uint sharedBytes,
                                                                   nint stream, void** kernelParams, void** extra);

    [LibraryImport(Lib)] public static partial int cuMemAlloc_v2(ulong* devicePtr, nuint bytes);
    [LibraryImport(Lib)] public static partial int cuMemFree_v2(ulong devicePtr);
    [LibraryImport(Lib)] public static partial int cuMemcpyHtoD_v2(ulong dst, void* src, nuint bytes);
    [LibraryImport(Lib)] public static partial int cuMemcpyDtoH_v2(void* dst, ulong src, nuint bytes);
    [LibraryImport(Lib)] public static partial int cuMemcpyDtoD_v2(ulong dst, ulong src, nuint bytes);
    [LibraryImport(Lib)] public static partial int cuMemcpyHtoDAsync_v2(ulong dst, void* src, nuint bytes, nint stream);
    [LibraryImport(Lib)] public static partial int cuMemcpyDtoHAsync_v2(void* dst, ulong src, nuint bytes, nint stream);
    [LibraryImport(Lib)] public static partial int cuMemcpyDtoDAsync_v2(ulong dst, ulong src, nuint bytes, nint stream);
    [LibraryImport(Lib)] public static partial int cuMemsetD32_v2(ulong dst, uint value, nuint count);
    [LibraryImport(Lib)] public static partial int cuMemsetD32Async(ulong dst, uint value, nuint count, nint stream);

    [LibraryImport(Lib)] public static partial int cuStreamCreate(nint* stream, uint flags);
    [LibraryImport(Lib)] public static partial int cuStreamDestroy_v2(nint stream);
    [LibraryImport(Lib)] public static partial int cuStreamSynchronize(nint stream);

    // CUstreamCaptureMode: only this thread's unsafe calls (cuMemAlloc among them) fail during a capture.
    public const int CaptureModeThreadLocal = 1;
    [LibraryImport(Lib)] public static partial int cuStreamBeginCapture_v2(nint stream, int mode);
    [LibraryImport(Lib)] public static partial int cuStreamEndCapture(nint stream, nint* graph);
    [LibraryImport(Lib)] public static partial int cuGraphInstantiateWithFlags(nint* graphExec, nint graph, ulong flags);
    [LibraryImport(Lib)] public static partial int cuGraphLaunch(nint graphExec, nint stream);
    [LibraryImport(Lib)] public static partial int cuGraphExecDestroy(nint graphExec);
    [LibraryImport(Lib)] public static partial int cuGraphDestroy(nint graph);

    [LibraryImport(Lib)] public static partial int cuEventCreate(nint* evt, uint flags);
    [LibraryImport(Lib)] public static partial int cuEventRecord(nint evt, nint stream);
    [LibraryImport(Lib)] public static partial int cuEventSynchronize(nint evt);
    [LibraryImport(Lib)] public static partial int cuEventElapsedTime(float* milliseconds, nint start, nint end);
    [LibraryImport(Lib)] public static partial int cuEventDestroy_v2(nint evt);
}
