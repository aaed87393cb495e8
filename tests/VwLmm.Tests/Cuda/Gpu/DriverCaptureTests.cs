namespace VwLmm.Tests.Cuda.Gpu;

/// <summary>Step capture as CUDA graphs on the real driver (ignored without a GPU).</summary>
public sealed class DriverCaptureTests : CudaCaptureTests
{
    protected override VwLmm.Cuda.CudaBackend CreateCuda() => DriverBackend.Create();
}
