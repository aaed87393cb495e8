using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>Op families whose kernels are not written yet: each throws NotSupportedException naming the op.</summary>
public sealed partial class CudaBackend
{
    private static NotSupportedException Pending(string op) => new($"{op}: not yet implemented on the CUDA backend");

    public void PatchEmbedForward(Tensor y, Tensor img, Tensor w, int B, int Cin, int Hi, int Wi, int P, int C)
        => throw Pending(nameof(PatchEmbedForward));
    public void PatchEmbedBackward(Tensor dw, Tensor dy, Tensor img, int B, int Cin, int Hi, int Wi, int P, int C)
        => throw Pending(nameof(PatchEmbedBackward));
    public void GatherRows(Tensor y, Tensor srcA, Tensor? srcB, Tensor map, int R, int C)
        => throw Pending(nameof(GatherRows));
    public void GatherRowsBackward(Tensor? dSrcA, Tensor? dSrcB, Tensor dy, Tensor map, int R, int C)
        => throw Pending(nameof(GatherRowsBackward));
    public void CrossEntropy(Tensor losses, Tensor? dlogits, Tensor logits, Tensor targets, int N, int V, float gradScale)
        => throw Pending(nameof(CrossEntropy));
    public void VisualWordKl(Tensor losses, Tensor? dLm, Tensor? dVm, Tensor lmLogits, Tensor vmLogits, Tensor pairs,
                             int N, int V, bool reverse, float gradScale)
        => throw Pending(nameof(VisualWordKl));
    public void SoftmaxForward(Tensor y, Tensor x, int N, int V) => throw Pending(nameof(SoftmaxForward));
    public void SoftmaxBackward(Tensor dx, Tensor dy, Tensor y, int N, int V) => throw Pending(nameof(SoftmaxBackward));
    public void SumSquares(Tensor result, int slot, Tensor x, long n) => throw Pending(nameof(SumSquares));
    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, long n, float lr, float beta1, float beta2, float eps,
                      float weightDecay, int step, float gradScale)
        => throw Pending(nameof(AdamW));
}
