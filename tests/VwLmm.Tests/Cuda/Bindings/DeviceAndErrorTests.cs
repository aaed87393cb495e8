using NUnit.Framework;
using VwLmm.Cuda;
using VwLmm.Cuda.Native;

namespace VwLmm.Tests.Cuda.Bindings;

public class DeviceAndErrorTests
{
    [Test]
    public void ProbeNeverThrowsAndExplainsAbsence()
    {
        CudaProbeResult result = null!;
        Assert.DoesNotThrow(() => result = CudaDevice.Probe());
        if (result.Available)
        {
            Assert.That(result.Devices, Is.Not.Empty);
            Assert.That(result.DriverVersion, Is.GreaterThanOrEqualTo(CudaDevice.MinDriverVersion));
            return;
        }
        Assert.That(result.Devices, Is.Empty);
        Assert.That(result.Reason, Does.Not.Contain("\n"));
        Assert.That(result.Reason, Does.Match(@"^(CUDA driver not found \(libcuda\.so\.1\)|no CUDA device \(CUDA_ERROR_NO_DEVICE\)|driver too old .*|cuBLAS not found .*)$"));
        Assert.That(CudaDevice.Probe(), Is.SameAs(result), "probed once, cached");
    }

    [Test]
    public void DriverRuntimeWithoutGpuFailsWithTheProbeReason()
    {
        var probe = CudaDevice.Probe();
        if (probe.Available) Assert.Ignore("a GPU is present");
        var e = Assert.Throws<InvalidOperationException>(() => new DriverRuntime().Dispose())!;
        Assert.That(e.Message, Is.EqualTo("CUDA is not available: " + probe.Reason));
    }

    [Test]
    public void DriverErrorNamesComeFromTheDriver()
    {
        if (!Driver.IsLoadable) Assert.Ignore("libcuda.so.1 not installed");
        Assert.That(Driver.ErrorName(1), Is.EqualTo("CUDA_ERROR_INVALID_VALUE"));
        Assert.That(Driver.ErrorName(100), Is.EqualTo("CUDA_ERROR_NO_DEVICE"));
        var e = Assert.Throws<CudaException>(() => Driver.Check(1, "cuLaunchKernel(layernorm_forward_f32)"))!;
        Assert.That(e.Message, Is.EqualTo("cuLaunchKernel(layernorm_forward_f32): CUDA_ERROR_INVALID_VALUE: invalid argument"));
    }

    [Test]
    public void NvrtcErrorNamesComeFromNvrtc()
    {
        CudaFixtures.RequireNvrtc();
        Assert.That(Nvrtc.ErrorName(0), Is.EqualTo("NVRTC_SUCCESS"));
        Assert.That(Nvrtc.ErrorName(6), Is.EqualTo("NVRTC_ERROR_COMPILATION"));
    }

    // Without a device cublasCreate fails cleanly (NOT_INITIALIZED); with one it succeeds. Either way the binding works.
    [Test]
    public unsafe void CublasCreateWithoutDeviceIsNotInitialized()
    {
        if (CudaDevice.Probe().Available) Assert.Ignore("a GPU is present");
        int status;
        try
        {
            nint handle;
            status = Cublas.cublasCreate_v2(&handle);
        }
        catch (DllNotFoundException)
        {
            Assert.Ignore("libcublas not installed");
            return;
        }
        Assert.That(Cublas.StatusName(status), Is.EqualTo("CUBLAS_STATUS_NOT_INITIALIZED"));
    }

    [TestCase(0, "CUBLAS_STATUS_SUCCESS")]
    [TestCase(1, "CUBLAS_STATUS_NOT_INITIALIZED")]
    [TestCase(7, "CUBLAS_STATUS_INVALID_VALUE")]
    [TestCase(13, "CUBLAS_STATUS_EXECUTION_FAILED")]
    [TestCase(99, "cublasStatus 99")]
    public void CublasStatusNames(int status, string name) => Assert.That(Cublas.StatusName(status), Is.EqualTo(name));

    [Test]
    public void CublasFailureMessage()
    {
        var e = Assert.Throws<CudaException>(() => Cublas.Check(1, "cublasCreate"))!;
        Assert.That(e.Message, Does.StartWith("cublasCreate: CUBLAS_STATUS_NOT_INITIALIZED: "));
        Assert.That((e.Code, e.ErrorName, e.Operation), Is.EqualTo((1, "CUBLAS_STATUS_NOT_INITIALIZED", "cublasCreate")));
    }

    [Test]
    public void CheckedCallNamesAreFormattedOnlyWhenTheCallFailed()
    {
        string kernel = "layernorm_forward_f32";
        int m = 33;
        Cublas.Check(0, $"warm-up({kernel}, m={m})");
        Driver.Check(Driver.Success, $"warm-up({kernel}, m={m})");
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            Cublas.Check(0, $"cublasSgemmStridedBatched(m={m}, k={i})");
            Cublas.CheckSgemm(0, m, i, 0, 1);
            Driver.Check(Driver.Success, $"cuLaunchKernel({kernel})");
        }
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
        var e = Assert.Throws<CudaException>(() => Cublas.Check(7, $"cublasSgemmStridedBatched(m={m}, k={0})"))!;
        Assert.That((e.Operation, e.ErrorName), Is.EqualTo(("cublasSgemmStridedBatched(m=33, k=0)", "CUBLAS_STATUS_INVALID_VALUE")));
        e = Assert.Throws<CudaException>(() => Cublas.CheckSgemm(7, m, 13, 0, 3))!;
        Assert.That(e.Operation, Is.EqualTo("cublasSgemmStridedBatched(m=33, n=13, k=0, batch=3)"));
    }

    // cuBLAS (cublas<t>gemm): lda ≥ max(1, m) for op N, else max(1, k); ldb ≥ max(1, k) for op N, else max(1, n); ldc ≥ max(1, m).
    [TestCase(false, false, 4, 3, 2, 4, 2, 4, 0)]
    [TestCase(true, true, 4, 3, 2, 2, 3, 4, 0)]
    [TestCase(false, false, 4, 3, 0, 4, 0, 4, 7)]
    [TestCase(false, false, 4, 3, 0, 4, 1, 4, 0)]
    [TestCase(true, false, 4, 3, 0, 0, 1, 4, 7)]
    [TestCase(false, true, 4, 3, 2, 4, 3, 4, 0)]
    [TestCase(false, true, 4, 3, 2, 4, 2, 4, 7)]
    [TestCase(false, false, 4, 3, 2, 3, 2, 4, 7)]
    [TestCase(false, false, 4, 3, 2, 4, 2, 3, 7)]
    [TestCase(false, false, 0, 0, 0, 1, 1, 1, 0)]
    [TestCase(false, false, -1, 3, 2, 4, 2, 4, 7)]
    public void SgemmArgumentRuleIsCublas(bool transA, bool transB, int m, int n, int k, int lda, int ldb, int ldc, int status)
        => Assert.That(Cublas.SgemmArgumentStatus(transA, transB, m, n, k, lda, ldb, ldc, 1), Is.EqualTo(status));

    [Test]
    public void DriverVersionFormatting()
    {
        Assert.That(CudaDevice.FormatVersion(11080), Is.EqualTo("11.8"));
        Assert.That(CudaDevice.FormatVersion(13000), Is.EqualTo("13.0"));
    }

    // H100 SXM as the driver reports it: 2619 MHz memory clock, 5120-bit bus → 2 × 2.619e9 × 640 B = 3352.32 GB/s.
    [Test]
    public void PeakBandwidthFromClockAndBusWidth()
    {
        var h100 = new CudaDeviceInfo(0, "NVIDIA H100", 9, 0, 132, 1980000, 2619000, 5120, 80L << 30, 50 << 20);
        Assert.That(h100.PeakBandwidthGBs, Is.EqualTo(3352.32).Within(1e-9));
    }

    [Test]
    public void NvtxRangesAreSafeWithoutTheLibrary() => Assert.DoesNotThrow(() =>
    {
        using (Nvtx.Range("test range")) Nvtx.Push("inner");
        Nvtx.Pop();
    });
}
