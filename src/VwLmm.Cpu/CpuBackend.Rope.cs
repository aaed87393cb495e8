using VwLmm.Core;

namespace VwLmm.Cpu;

// STUB: replaced by the op-family implementation.
public sealed unsafe partial class CpuBackend
{
    public void RopeForward(Tensor y, Tensor x, Tensor positions, int B, int T, int H, int D, float theta) => throw new NotImplementedException();
    public void RopeBackward(Tensor dx, Tensor dy, Tensor positions, int B, int T, int H, int D, float theta) => throw new NotImplementedException();
}
