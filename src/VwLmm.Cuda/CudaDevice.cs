using System.Runtime.InteropServices;
using System.Text;
using VwLmm.Cuda.Native;

namespace VwLmm.Cuda;

/// <summary>One GPU as the driver reports it. Clocks in kHz, as the driver gives them.</summary>
public sealed record CudaDeviceInfo(int Ordinal, string Name, int ComputeMajor, int ComputeMinor, int MultiprocessorCount,
                                    int ClockKHz, int MemoryClockKHz, int MemoryBusWidthBits, long TotalMemoryBytes, int L2CacheBytes)
{
    /// <summary>Peak DRAM bandwidth in GB/s: double data rate × memory clock × bus width (bytes).</summary>
    public double PeakBandwidthGBs => 2.0 * MemoryClockKHz * 1e3 * (MemoryBusWidthBits / 8) / 1e9;

    public override string ToString() =>
        $"cuda:{Ordinal} {Name} (sm_{ComputeMajor}{ComputeMinor}, {MultiprocessorCount} SMs, {TotalMemoryBytes / (1L << 20)} MiB, {PeakBandwidthGBs:F0} GB/s)";
}

/// <summary>What <see cref="CudaDevice.Probe"/> found: devices when <see cref="Available"/>, otherwise one-line <see cref="Reason"/>.</summary>
public sealed record CudaProbeResult(bool Available, string Reason, int DriverVersion, IReadOnlyList<CudaDeviceInfo> Devices);

public static class CudaDevice
{
    /// <summary>CUDA 11.8 (as cuDriverGetVersion encodes it): the first driver that loads compute_90 PTX, and the PTX ISA
    /// 7.8 that NVRTC 11.8 writes.</summary>
    public const int MinDriverVersion = 11080;

    private static readonly Lazy<CudaProbeResult> Result = new(ProbeOnce);

    /// <summary>Whether a usable GPU is present; never throws. "No GPU" is a normal answer with a one-line reason.</summary>
    public static CudaProbeResult Probe() => Result.Value;

    private static CudaProbeResult ProbeOnce()
    {
        try
        {
            return ProbeDriver();
        }
        catch (Exception e) // a broken install (missing symbol, wrong architecture, failing call) is "no GPU" too
        {
            return Unavailable(e.Message, 0);
        }
    }

    private static unsafe CudaProbeResult ProbeDriver()
    {
        if (!Driver.IsLoadable) return Unavailable("CUDA driver not found (libcuda.so.1)", 0);
        int rc = Driver.cuInit(0);
        if (rc == Driver.ErrorNoDevice) return Unavailable("no CUDA device (CUDA_ERROR_NO_DEVICE)", 0);
        if (rc != Driver.Success) return Unavailable($"cuInit failed ({Driver.ErrorName(rc)}: {Driver.ErrorDescription(rc)})", 0);

        int version;
        Driver.Check(Driver.cuDriverGetVersion(&version), "cuDriverGetVersion");
        if (version < MinDriverVersion)
            return Unavailable($"driver too old (CUDA {FormatVersion(version)}; {FormatVersion(MinDriverVersion)} or newer needed)", version);

        int count;
        Driver.Check(Driver.cuDeviceGetCount(&count), "cuDeviceGetCount");
        if (count == 0) return Unavailable("no CUDA device (cuDeviceGetCount = 0)", version);
        var devices = new CudaDeviceInfo[count];
        for (int i = 0; i < count; i++) devices[i] = Describe(i);
        // libcuda comes with the NVIDIA driver, cuBLAS with a CUDA toolkit or pip's nvidia-cublas-cu12: a GPU machine may lack it.
        if (!Cublas.IsLoadable)
            return Unavailable("cuBLAS not found (libcublas.so.13/.12/.11 on the library path; see the CUDA toolkit or pip nvidia-cublas-cu12)", version);
        return new CudaProbeResult(true, $"CUDA driver {FormatVersion(version)}, {count} device(s)", version, devices);
    }

    internal static unsafe CudaDeviceInfo Describe(int ordinal)
    {
        int handle;
        Driver.Check(Driver.cuDeviceGet(&handle, ordinal), $"cuDeviceGet({ordinal})");
        int device = handle;
        byte* name = stackalloc byte[256];
        Driver.Check(Driver.cuDeviceGetName(name, 256, device), $"cuDeviceGetName({ordinal})");
        nuint total;
        Driver.Check(Driver.cuDeviceTotalMem_v2(&total, device), $"cuDeviceTotalMem({ordinal})");
        int Attr(int attribute)
        {
            int value;
            Driver.Check(Driver.cuDeviceGetAttribute(&value, attribute, device), $"cuDeviceGetAttribute({ordinal}, {attribute})");
            return value;
        }
        return new CudaDeviceInfo(ordinal, Encoding.UTF8.GetString(MemoryMarshal.CreateReadOnlySpanFromNullTerminated(name)),
            Attr(Driver.AttrComputeCapabilityMajor), Attr(Driver.AttrComputeCapabilityMinor),
            Attr(Driver.AttrMultiprocessorCount), Attr(Driver.AttrClockRateKHz), Attr(Driver.AttrMemoryClockRateKHz),
            Attr(Driver.AttrGlobalMemoryBusWidthBits), (long)total, Attr(Driver.AttrL2CacheSizeBytes));
    }

    /// <summary>12040 → "12.4".</summary>
    internal static string FormatVersion(int version) => $"{version / 1000}.{version % 1000 / 10}";

    private static CudaProbeResult Unavailable(string reason, int version) => new(false, reason, version, []);
}
