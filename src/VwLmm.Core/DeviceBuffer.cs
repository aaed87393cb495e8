namespace VwLmm.Core;

/// <summary>
/// One allocation in a backend's memory. <see cref="Ptr"/> is a host pointer on the CPU and emulated runtimes and a
/// CUdeviceptr on the driver runtime. The backend that made it frees it; the buffer owns nothing else.
/// </summary>
public abstract class DeviceBuffer : IDisposable
{
    protected DeviceBuffer(nint ptr, long bytes) { Ptr = ptr; Bytes = bytes; }

    public nint Ptr { get; private set; }
    public long Bytes { get; }
    public bool IsDisposed => Ptr == 0 && Bytes > 0;

    protected abstract void Release(nint ptr);

    public void Dispose()
    {
        if (Ptr != 0) { Release(Ptr); Ptr = 0; }
        GC.SuppressFinalize(this);
    }
}
