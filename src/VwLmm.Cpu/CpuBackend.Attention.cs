using VwLmm.Core;

namespace VwLmm.Cpu;

// STUB: replaced by the op-family implementation.
public sealed unsafe partial class CpuBackend
{
    public void AttentionForward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor? keyLengths, int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale) => throw new NotImplementedException();
    public void AttentionBackward(Tensor? dq, Tensor? dk, Tensor? dv, Tensor dO, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor? keyLengths, int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale) => throw new NotImplementedException();
}
