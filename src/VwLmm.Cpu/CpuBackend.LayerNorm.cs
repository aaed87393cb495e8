using VwLmm.Core;

namespace VwLmm.Cpu;

// STUB: replaced by the op-family implementation.
public sealed unsafe partial class CpuBackend
{
    public void LayerNormForward(Tensor y, Tensor mean, Tensor rstd, Tensor x, Tensor gamma, Tensor beta, int N, int C, float eps) => throw new NotImplementedException();
    public void LayerNormBackward(Tensor? dx, Tensor? dgamma, Tensor? dbeta, Tensor dy, Tensor x, Tensor gamma, Tensor mean, Tensor rstd, int N, int C) => throw new NotImplementedException();
    public void RmsNormForward(Tensor y, Tensor rstd, Tensor x, Tensor gamma, int N, int C, float eps) => throw new NotImplementedException();
    public void RmsNormBackward(Tensor? dx, Tensor? dgamma, Tensor dy, Tensor x, Tensor gamma, Tensor rstd, int N, int C) => throw new NotImplementedException();
}
