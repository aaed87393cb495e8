using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>Op families whose kernels are not written yet: each throws NotSupportedException naming the op.</summary>
public sealed partial class CudaBackend
{
    private static NotSupportedException Pending(string op) => new($"{op}: not yet implemented on the CUDA backend");

    public void AttentionForward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor? keyLengths,
                                 int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale)
        => throw Pending(nameof(AttentionForward));
    public void AttentionBackward(Tensor? dq, Tensor? dk, Tensor? dv, Tensor dO, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse,
                                  Tensor? keyLengths, int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale)
        => throw Pending(nameof(AttentionBackward));
    public void RopeForward(Tensor y, Tensor x, Tensor positions, int B, int T, int H, int D, float theta)
        => throw Pending(nameof(RopeForward));
    public void RopeBackward(Tensor dx, Tensor dy, Tensor positions, int B, int T, int H, int D, float theta)
        => throw Pending(nameof(RopeBackward));
}
