using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>Launcher for kernels/adamw.cu (fused AdamW over flat [n] buffers).</summary>
public sealed unsafe partial class CudaBackend
{
    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, long n, float lr, float beta1, float beta2, float eps,
                      float weightDecay, int step, float gradScale)
    {
        if (n <= 0) return;
        // Bias corrections in double: β^step underflows gracefully and 1 − β^step keeps its digits for β near 1.
        float invCorrection1 = (float)(1 / (1 - Math.Pow(beta1, step)));
        float invCorrection2 = (float)(1 / (1 - Math.Pow(beta2, step)));
        nint pp = param.Ptr, pg = grad.Ptr, pm = m.Ptr, pv = v.Ptr;
        ReadOnlySpan<KernelArg> args = [&pp, &pg, &pm, &pv, &n, &lr, &beta1, &beta2, &eps, &weightDecay, &invCorrection1, &invCorrection2, &gradScale];
        uint blocks = (uint)Math.Min(CeilDiv(n, PointwiseThreads), MaxPointwiseBlocks);
        Launch("adamw", "adamw_f32", (blocks, 1, 1), (PointwiseThreads, 1, 1), 0, args);
    }
}
