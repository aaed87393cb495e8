using VwLmm.Core;

namespace VwLmm.Cpu;

// STUB: replaced by the op-family implementation.
public sealed unsafe partial class CpuBackend
{
    public void CrossEntropy(Tensor losses, Tensor? dlogits, Tensor logits, Tensor targets, int N, int V, float gradScale) => throw new NotImplementedException();
    public void VisualWordKl(Tensor losses, Tensor? dLm, Tensor? dVm, Tensor lmLogits, Tensor vmLogits, Tensor pairs, int N, int V, bool reverse, float gradScale) => throw new NotImplementedException();
    public void SoftmaxForward(Tensor y, Tensor x, int N, int V) => throw new NotImplementedException();
    public void SoftmaxBackward(Tensor dx, Tensor dy, Tensor y, int N, int V) => throw new NotImplementedException();
}
