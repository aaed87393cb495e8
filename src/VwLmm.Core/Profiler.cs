namespace VwLmm.Core;

/// <summary>A backend that can mark named time ranges for an external profiler (NVTX ranges for Nsight on CUDA).</summary>
public interface IRangeMarker
{
    void PushRange(string name);
    void PopRange();
}

/// <summary>An open profiler range; closing it pops the range. A no-op on backends without markers.</summary>
public readonly struct ProfileRange : IDisposable
{
    private readonly IRangeMarker? _marker;

    internal ProfileRange(IRangeMarker? marker, string name)
    {
        _marker = marker;
        marker?.PushRange(name);
    }

    public void Dispose() => _marker?.PopRange();
}

/// <summary>Named ranges per op (the Ops layer) and per layer (the model), visible in Nsight Systems as NVTX ranges.</summary>
public static class Profiler
{
    public static ProfileRange Range(IBackend backend, string name) => new(backend as IRangeMarker, name);
}
