using VwLmm.Core;

namespace VwLmm.Cpu;

// STUB: replaced by the op-family implementation.
public sealed unsafe partial class CpuBackend
{
    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, long n, float lr, float beta1, float beta2, float eps, float weightDecay, int step, float gradScale) => throw new NotImplementedException();
}
