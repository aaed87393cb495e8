using System.Runtime.InteropServices;
using VwLmm.Core;

namespace VwLmm.Cuda.Native;

/// <summary>
/// NVTX ranges (libnvToolsExt.so.1) that Nsight Systems / Nsight Compute show on the timeline. Silent no-ops when the
/// library is absent: whether it loads is checked once and cached.
/// </summary>
public static partial class Nvtx
{
    private const string Lib = "nvToolsExt";

    private static readonly bool Available = Load();

    private static bool Load()
    {
        NativeLibraries.Register(typeof(Nvtx).Assembly, Lib, "libnvToolsExt.so.1", "libnvToolsExt.so", "nvToolsExt64_1.dll");
        return NativeLibraries.TryLoad(typeof(Nvtx).Assembly, Lib) != 0;
    }

    public static void Push(string name)
    {
        if (Available) nvtxRangePushA(name);
    }

    public static void Pop()
    {
        if (Available) nvtxRangePop();
    }

    /// <summary><c>using (Nvtx.Range("layer 3")) { … }</c> pushes on entry and pops on dispose.</summary>
    public static RangeScope Range(string name)
    {
        Push(name);
        return default;
    }

    public readonly struct RangeScope : IDisposable
    {
        public void Dispose() => Pop();
    }

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] private static partial int nvtxRangePushA(string message);
    [LibraryImport(Lib)] private static partial int nvtxRangePop();
}
