using VwLmm.Core;

namespace VwLmm.Cpu;

// STUB: replaced by the op-family implementation.
public sealed unsafe partial class CpuBackend
{
    public void PatchEmbedForward(Tensor y, Tensor img, Tensor w, int B, int Cin, int Hi, int Wi, int P, int C) => throw new NotImplementedException();
    public void PatchEmbedBackward(Tensor dw, Tensor dy, Tensor img, int B, int Cin, int Hi, int Wi, int P, int C) => throw new NotImplementedException();
}
