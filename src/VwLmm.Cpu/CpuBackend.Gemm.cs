using VwLmm.Core;

namespace VwLmm.Cpu;

// STUB: replaced by the op-family implementation.
public sealed unsafe partial class CpuBackend
{
    public void Gemm(bool transA, bool transB, int M, int N, int K, float alpha, Tensor A, int lda, long strideA, Tensor B, int ldb, long strideB, float beta, Tensor C, int ldc, long strideC, int batch) => throw new NotImplementedException();
}
