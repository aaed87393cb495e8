using VwLmm.Core;

namespace VwLmm.Cpu;

// STUB: replaced by the op-family implementation.
public sealed unsafe partial class CpuBackend
{
    public void SumSquares(Tensor result, int slot, Tensor x, long n) => throw new NotImplementedException();
}
