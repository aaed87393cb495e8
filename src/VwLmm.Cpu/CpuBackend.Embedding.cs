using VwLmm.Core;

namespace VwLmm.Cpu;

// STUB: replaced by the op-family implementation.
public sealed unsafe partial class CpuBackend
{
    public void GatherRows(Tensor y, Tensor srcA, Tensor? srcB, Tensor map, int R, int C) => throw new NotImplementedException();
    public void GatherRowsBackward(Tensor? dSrcA, Tensor? dSrcB, Tensor dy, Tensor map, int R, int C) => throw new NotImplementedException();
}
