using VwLmm.Core;

namespace VwLmm.Cpu;

// LayerNorm and RMSNorm share one forward and one backward kernel: RMSNorm is LayerNorm without centring (mean 0)
// and without beta. dgamma/dbeta are reduced over fixed blocks of NormRowBlock rows into per-block partials that are
// then added in block order, so they are bit-identical for any thread count.
public sealed unsafe partial class CpuBackend
{
    private const int NormRowBlock = 32;

    public void LayerNormForward(Tensor y, Tensor mean, Tensor rstd, Tensor x, Tensor gamma, Tensor beta, int N, int C, float eps) =>
        NormForward(F(y), F(mean), F(rstd), F(x), F(gamma), F(beta), N, C, eps);

    public void RmsNormForward(Tensor y, Tensor rstd, Tensor x, Tensor gamma, int N, int C, float eps) =>
        NormForward(F(y), null, F(rstd), F(x), F(gamma), null, N, C, eps);

    public void LayerNormBackward(Tensor? dx, Tensor? dgamma, Tensor? dbeta, Tensor dy, Tensor x, Tensor gamma, Tensor mean, Tensor rstd, int N, int C) =>
        NormBackward(F(dx), F(dgamma), F(dbeta), F(dy), F(x), F(gamma), F(mean), F(rstd), N, C);

    public void RmsNormBackward(Tensor? dx, Tensor? dgamma, Tensor dy, Tensor x, Tensor gamma, Tensor rstd, int N, int C) =>
        NormBackward(F(dx), F(dgamma), null, F(dy), F(x), F(gamma), null, F(rstd), N, C);

    /// <summary>Mean null: RMSNorm (no centring, no beta).</summary>
    private void NormForward(float* y, float* mean, float* rstd, float* x, float* gamma, float* beta, int N, int C, float eps)
    {
        var job = new NormForwardJob { Y = y, Mean = mean, Rstd = rstd, X = x, Gamma = gamma, Beta = beta, C = C, Eps = eps };
        ParallelFor(N, job, MinTasksPerChunk(C));
    }

    private void NormBackward(float* dx, float* dgamma, float* dbeta, float* dy, float* x, float* gamma, float* mean, float* rstd, int N, int C)
    {
        int blocks = (N + NormRowBlock - 1) / NormRowBlock;
        long partial = (long)blocks * C;
        float* scratch = dgamma is null && dbeta is null ? null : Scratch(2 * partial);
        var job = new NormBackwardJob
        {
            Dx = dx, Dy = dy, X = x, Gamma = gamma, Mean = mean, Rstd = rstd, N = N, C = C,
            DGammaPartial = dgamma is null ? null : scratch,
            DBetaPartial = dbeta is null ? null : scratch + partial,
        };
        ParallelFor(blocks, job, MinTasksPerChunk((long)NormRowBlock * C));
        if (dgamma is not null) ScatterAddRows(dgamma, null, null, 1, job.DGammaPartial, blocks, C);
        if (dbeta is not null) ScatterAddRows(dbeta, null, null, 1, job.DBetaPartial, blocks, C);
    }

    private struct NormForwardJob : ISimdJob
    {
        public float* Y, Mean, Rstd, X, Gamma, Beta;
        public int C;
        public float Eps;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            for (int n = start; n < end; n++)
            {
                float* x = X + (long)n * C, y = Y + (long)n * C;
                float mu = 0;
                if (Mean is not null) Mean[n] = mu = SimdMath.Sum<TV>(x, C) / C;
                float rstd = 1f / MathF.Sqrt(SimdMath.SumSquaredDeviation<TV>(x, mu, C) / C + Eps);
                Rstd[n] = rstd;
                TV vmu = TV.Create(mu), vr = TV.Create(rstd);
                int i = 0;
                for (; i <= C - TV.Count; i += TV.Count)
                {
                    TV h = (TV.Load(x + i) - vmu) * vr;
                    (Beta is null ? h * TV.Load(Gamma + i) : TV.Fma(h, TV.Load(Gamma + i), TV.Load(Beta + i))).Store(y + i);
                }
                for (; i < C; i++)
                {
                    float h = (x[i] - mu) * rstd;
                    y[i] = Beta is null ? h * Gamma[i] : MathF.FusedMultiplyAdd(h, Gamma[i], Beta[i]);
                }
            }
        }
    }

    // Per row, with x̂ = (x−μ)·rstd and g = dy·γ: dx += rstd·(g − mean(g) − x̂·mean(g·x̂)) (RMSNorm drops mean(g));
    // the block partials collect Σ dy·x̂ (dgamma) and Σ dy (dbeta).
    private struct NormBackwardJob : ISimdJob
    {
        public float* Dx, DGammaPartial, DBetaPartial, Dy, X, Gamma, Mean, Rstd;
        public int N, C;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            for (int b = start; b < end; b++)
            {
                float* pg = DGammaPartial is null ? null : DGammaPartial + (long)b * C;
                float* pb = DBetaPartial is null ? null : DBetaPartial + (long)b * C;
                if (pg is not null) new Span<float>(pg, C).Clear();
                if (pb is not null) new Span<float>(pb, C).Clear();
                for (int n = b * NormRowBlock, last = Math.Min(N, n + NormRowBlock); n < last; n++)
                {
                    float* dy = Dy + (long)n * C, x = X + (long)n * C;
                    float mu = Mean is null ? 0 : Mean[n], rstd = Rstd[n];
                    if (Dx is not null) RowDx<TV>(Dx + (long)n * C, dy, x, mu, rstd);
                    if (pg is not null) RowDGamma<TV>(pg, dy, x, mu, rstd);
                    if (pb is not null) SimdMath.AddInto<TV>(pb, dy, C);
                }
            }
        }

        private readonly void RowDx<TV>(float* dx, float* dy, float* x, float mu, float rstd) where TV : unmanaged, IVec<TV>
        {
            TV vmu = TV.Create(mu), vr = TV.Create(rstd);
            TV sg = TV.Zero, sgx = TV.Zero;
            int i = 0;
            for (; i <= C - TV.Count; i += TV.Count)
            {
                TV g = TV.Load(dy + i) * TV.Load(Gamma + i);
                sg += g;
                sgx = TV.Fma(g, (TV.Load(x + i) - vmu) * vr, sgx);
            }
            float tg = 0, tgx = 0;
            for (int j = i; j < C; j++)
            {
                float g = dy[j] * Gamma[j];
                tg += g;
                tgx = MathF.FusedMultiplyAdd(g, (x[j] - mu) * rstd, tgx);
            }
            float meanG = Mean is null ? 0 : (TV.Sum(sg) + tg) / C;
            float meanGx = (TV.Sum(sgx) + tgx) / C;
            TV vmg = TV.Create(meanG), vmgx = TV.Create(meanGx);
            for (i = 0; i <= C - TV.Count; i += TV.Count)
            {
                TV g = TV.Load(dy + i) * TV.Load(Gamma + i);
                TV h = (TV.Load(x + i) - vmu) * vr;
                TV.Fma(g - vmg - h * vmgx, vr, TV.Load(dx + i)).Store(dx + i);
            }
            for (; i < C; i++)
            {
                float g = dy[i] * Gamma[i];
                float h = (x[i] - mu) * rstd;
                dx[i] = MathF.FusedMultiplyAdd(g - meanG - h * meanGx, rstd, dx[i]);
            }
        }

        private readonly void RowDGamma<TV>(float* pg, float* dy, float* x, float mu, float rstd) where TV : unmanaged, IVec<TV>
        {
            TV vmu = TV.Create(mu), vr = TV.Create(rstd);
            int i = 0;
            for (; i <= C - TV.Count; i += TV.Count)
                TV.Fma(TV.Load(dy + i), (TV.Load(x + i) - vmu) * vr, TV.Load(pg + i)).Store(pg + i);
            for (; i < C; i++) pg[i] = MathF.FusedMultiplyAdd(dy[i], (x[i] - mu) * rstd, pg[i]);
        }
    }
}
