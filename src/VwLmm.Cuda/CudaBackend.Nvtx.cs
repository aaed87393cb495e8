using VwLmm.Core;
using VwLmm.Cuda.Native;

namespace VwLmm.Cuda;

/// <summary>The Ops layer's per-op and the model's per-layer ranges become NVTX ranges (no-ops without libnvToolsExt).</summary>
public sealed partial class CudaBackend : IRangeMarker
{
    public void PushRange(string name) => Nvtx.Push(name);
    public void PopRange() => Nvtx.Pop();
}
