namespace VwLmm.Cuda;

/// <summary>
/// A failed CUDA driver, cuBLAS or NVRTC call. The message is one line naming the call (and kernel or program) and the
/// library's error name, e.g. "cuLaunchKernel(layernorm_forward_f32): CUDA_ERROR_INVALID_VALUE: invalid argument".
/// </summary>
public sealed class CudaException : Exception
{
    public CudaException(string operation, int code, string errorName, string description, string? log = null)
        : base($"{operation}: {errorName}: {description}")
    {
        Operation = operation;
        Code = code;
        ErrorName = errorName;
        Log = log;
    }

    /// <summary>The failed call with its subject, e.g. "cuModuleLoadData(attention)".</summary>
    public string Operation { get; }

    /// <summary>The numeric CUresult / cublasStatus_t / nvrtcResult.</summary>
    public int Code { get; }

    /// <summary>The library's name for <see cref="Code"/>, e.g. "CUDA_ERROR_NO_DEVICE".</summary>
    public string ErrorName { get; }

    /// <summary>The full compiler or JIT log when the call produced one.</summary>
    public string? Log { get; }
}
