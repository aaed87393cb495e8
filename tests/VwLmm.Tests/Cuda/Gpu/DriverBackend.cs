using NUnit.Framework;
using VwLmm.Cuda;

namespace VwLmm.Tests.Cuda.Gpu;

/// <summary>
/// The CUDA backend on the real driver for the Driver* fixtures: the shared op suites run unchanged against the GPU
/// (PTX JIT-compiled by the driver, cuBLAS for GEMM). Without a usable GPU the whole fixture is ignored with the probe's
/// one-line reason. These fixtures are what the gpu-bundle's test runner (tests/VwLmm.GpuTests) runs on a GPU machine.
/// </summary>
internal static class DriverBackend
{
    public static CudaBackend Create()
    {
        var probe = CudaDevice.Probe();
        if (!probe.Available) Assert.Ignore($"no usable GPU: {probe.Reason}");
        return new CudaBackend(new DriverRuntime());
    }
}
