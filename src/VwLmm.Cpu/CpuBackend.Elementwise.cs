using VwLmm.Core;

namespace VwLmm.Cpu;

// STUB: replaced by the op-family implementation.
public sealed unsafe partial class CpuBackend
{
    public void Fill(Tensor x, float value) => throw new NotImplementedException();
    public void Copy(Tensor dst, Tensor src, long n) => throw new NotImplementedException();
    public void Add(Tensor y, Tensor a, Tensor b, long n) => throw new NotImplementedException();
    public void Axpy(Tensor y, Tensor x, long n, float alpha) => throw new NotImplementedException();
    public void Scale(Tensor x, long n, float alpha) => throw new NotImplementedException();
    public void BiasAdd(Tensor x, Tensor bias, int N, int C, int P) => throw new NotImplementedException();
    public void BiasBackward(Tensor dbias, Tensor dy, int N, int C, int P) => throw new NotImplementedException();
    public void ActivationForward(Tensor y, Tensor x, long n, Activation act) => throw new NotImplementedException();
    public void ActivationBackward(Tensor dx, Tensor dy, Tensor x, long n, Activation act) => throw new NotImplementedException();
    public void SwiGluForward(Tensor y, Tensor gate, Tensor up, long n) => throw new NotImplementedException();
    public void SwiGluBackward(Tensor? dgate, Tensor? dup, Tensor dy, Tensor gate, Tensor up, long n) => throw new NotImplementedException();
}
