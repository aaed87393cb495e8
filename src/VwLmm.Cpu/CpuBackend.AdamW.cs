using System.Runtime.CompilerServices;
using VwLmm.Core;

namespace VwLmm.Cpu;

// Fused AdamW over flat [n] parameter/gradient/moment buffers, blocked like the elementwise ops.
public sealed unsafe partial class CpuBackend
{
    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, long n, float lr, float beta1, float beta2, float eps,
                      float weightDecay, int step, float gradScale)
    {
        var (invCorrection1, invCorrection2) = Core.AdamW.BiasCorrections(beta1, beta2, step);
        var job = new AdamWJob
        {
            P = F(param), G = F(grad), M = F(m), V = F(v), N = n,
            Lr = lr, Beta1 = beta1, Beta2 = beta2, Eps = eps, WeightDecay = weightDecay, GradScale = gradScale,
            InvCorrection1 = invCorrection1, InvCorrection2 = invCorrection2,
        };
        ParallelFor(BlockCount(n), job, MinTasksPerChunk(ElementBlock));
    }

    // The list ops run the per-tensor ops entry by entry: on the CPU a call costs no launch, and each op already
    // spreads over the workers.
    public void ZeroGradients(ParameterList list)
    {
        foreach (var g in list.Grads) Fill(g, 0f);
    }

    public void GradientSumsOfSquares(Tensor result, ParameterList list)
    {
        for (int i = 0; i < list.Count; i++) SumSquares(result, i, list.Grads[i], list.Grads[i].Numel);
    }

    public void AdamW(ParameterList list, float lr, float beta1, float beta2, float eps, int step, float gradScale)
    {
        for (int i = 0; i < list.Count; i++)
            AdamW(list.Values[i], list.Grads[i], list.M[i], list.V[i], list.Values[i].Numel, lr, beta1, beta2, eps,
                  list.WeightDecay[i], step, gradScale);
    }

    private struct AdamWJob : ISimdJob
    {
        public float* P, G, M, V;
        public long N;
        public float Lr, Beta1, Beta2, Eps, WeightDecay, GradScale, InvCorrection1, InvCorrection2;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            long i = (long)start * ElementBlock, hi = Math.Min((long)end * ElementBlock, N);
            for (; i + TV.Count <= hi; i += TV.Count) Step<TV>(P + i, G + i, M + i, V + i);
            if (i == hi) return;
            // Tail through the same vector code on padded copies (see MapJob.Tail).
            const int W = 16;
            int rem = (int)(hi - i);
            float* buf = stackalloc float[4 * W];
            new Span<float>(buf, 4 * W).Clear();
            Copy(P + i, buf, rem);
            Copy(G + i, buf + W, rem);
            Copy(M + i, buf + 2 * W, rem);
            Copy(V + i, buf + 3 * W, rem);
            Step<TV>(buf, buf + W, buf + 2 * W, buf + 3 * W);
            Copy(buf, P + i, rem);
            Copy(buf + 2 * W, M + i, rem);
            Copy(buf + 3 * W, V + i, rem);
        }

        private static void Copy(float* src, float* dst, int n) => new Span<float>(src, n).CopyTo(new Span<float>(dst, n));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private readonly void Step<TV>(float* p, float* grad, float* m, float* v) where TV : unmanaged, IVec<TV>
        {
            TV g = TV.Load(grad) * TV.Create(GradScale);
            TV mt = TV.Fma(TV.Create(Beta1), TV.Load(m), TV.Create(1 - Beta1) * g);
            TV vt = TV.Fma(TV.Create(Beta2), TV.Load(v), TV.Create(1 - Beta2) * g * g);
            mt.Store(m);
            vt.Store(v);
            TV pv = TV.Load(p);
            TV update = mt * TV.Create(InvCorrection1) / (TV.Sqrt(vt * TV.Create(InvCorrection2)) + TV.Create(Eps));
            (pv - TV.Create(Lr) * TV.Fma(TV.Create(WeightDecay), pv, update)).Store(p);
        }
    }
}
