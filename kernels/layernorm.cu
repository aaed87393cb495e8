// layernorm.cu — LayerNorm (CLIP) and RMSNorm (LLaMA) over the last dimension of x [N,C], forward and backward.
// Both are one row routine: RMSNorm is LayerNorm without centring and without β.
// Forward: grid N (one block per row), any 1-D block; saves mean [N] (LayerNorm) and rstd [N] for backward.
// Backward: grid ceil(N/R), block b handling rows [b·R, b·R+R) in order: dx += per row (two block reductions), and the
// block's dγ (and dβ) partial sums over its rows go to row b of a [chunks, C] scratch buffer; the launcher then adds the
// partials to dγ/dβ in an order fixed by N and C with sum_rows_f32 (elementwise.cu). No atomics: bit-reproducible.
// Rows are read as float4 when C % 4 == 0 and every row pointer is 16-byte aligned.
#include "common.cuh"

template <int W, bool Centered>
__device__ void norm_forward_row(float* y, float* mean, float* rstd, const float* x, const float* gamma, const float* beta,
                                 int C, float eps)
{
    long long row = blockIdx.x;
    const float* xr = x + row * C;
    float* yr = y + row * C;
    int start = (int)threadIdx.x * W, step = (int)blockDim.x * W;
    float m = 0.0f;
    if (Centered)
    {
        float s = 0.0f;
        for (int i = start; i < C; i += step)
        {
            Vec<W> v = Vec<W>::load(xr, i);
            for (int k = 0; k < W; k++) s += v.v[k];
        }
        m = block_sum(s) / C;
    }
    // Second pass over (x − mean)²: one-pass E[x²] − mean² cancels catastrophically for rows with a large mean.
    float ss = 0.0f;
    for (int i = start; i < C; i += step)
    {
        Vec<W> v = Vec<W>::load(xr, i);
        for (int k = 0; k < W; k++) ss += (v.v[k] - m) * (v.v[k] - m);
    }
    float r = rsqrtf(block_sum(ss) / C + eps);
    for (int i = start; i < C; i += step)
    {
        Vec<W> v = Vec<W>::load(xr, i), g = Vec<W>::load(gamma, i), out;
        if (Centered)
        {
            Vec<W> b = Vec<W>::load(beta, i);
            for (int k = 0; k < W; k++) out.v[k] = (v.v[k] - m) * r * g.v[k] + b.v[k];
        }
        else
            for (int k = 0; k < W; k++) out.v[k] = v.v[k] * r * g.v[k];
        out.store(yr, i);
    }
    if (threadIdx.x == 0)
    {
        if (Centered) mean[row] = m;
        rstd[row] = r;
    }
}

// x̂ = (x − mean)·rstd, dn = dy·γ: dx += rstd·(dn − mean(dn) − x̂·mean(dn·x̂)) (RMSNorm: no mean(dn) term, mean = 0);
// dγ partial += dy·x̂, dβ partial += dy. Every thread owns the same columns in every row, so a partial is a plain
// per-thread running sum with a fixed order.
template <int W, bool Centered>
__device__ void norm_backward_rows(float* dx, float* dgamma_partial, float* dbeta_partial, const float* dy, const float* x,
                                   const float* gamma, const float* mean, const float* rstd, int N, int C, int R)
{
    int first = blockIdx.x * R, last = min(N, first + R);
    float* pg = dgamma_partial ? dgamma_partial + (long long)blockIdx.x * C : nullptr;
    float* pb = dbeta_partial ? dbeta_partial + (long long)blockIdx.x * C : nullptr;
    int start = (int)threadIdx.x * W, step = (int)blockDim.x * W;
    for (int row = first; row < last; row++)
    {
        const float* xr = x + (long long)row * C;
        const float* dyr = dy + (long long)row * C;
        float m = Centered ? mean[row] : 0.0f, r = rstd[row];
        float dnMean = 0.0f, dnXhatMean = 0.0f;
        if (dx)
        {
            float a = 0.0f, b = 0.0f;
            for (int i = start; i < C; i += step)
            {
                Vec<W> v = Vec<W>::load(xr, i), d = Vec<W>::load(dyr, i), g = Vec<W>::load(gamma, i);
                for (int k = 0; k < W; k++)
                {
                    float dn = d.v[k] * g.v[k];
                    a += dn;
                    b += dn * (v.v[k] - m) * r;
                }
            }
            if (Centered) dnMean = block_sum(a) / C;
            dnXhatMean = block_sum(b) / C;
        }
        for (int i = start; i < C; i += step)
        {
            Vec<W> v = Vec<W>::load(xr, i), d = Vec<W>::load(dyr, i);
            if (dx)
            {
                Vec<W> g = Vec<W>::load(gamma, i), o = Vec<W>::load(dx + (long long)row * C, i);
                for (int k = 0; k < W; k++)
                {
                    float xhat = (v.v[k] - m) * r;
                    o.v[k] += r * (d.v[k] * g.v[k] - dnMean - xhat * dnXhatMean);
                }
                o.store(dx + (long long)row * C, i);
            }
            if (pg)
            {
                Vec<W> p = row == first ? Vec<W>() : Vec<W>::load(pg, i);
                for (int k = 0; k < W; k++) p.v[k] += d.v[k] * (v.v[k] - m) * r;
                p.store(pg, i);
            }
            if (pb)
            {
                Vec<W> p = row == first ? Vec<W>() : Vec<W>::load(pb, i);
                for (int k = 0; k < W; k++) p.v[k] += d.v[k];
                p.store(pb, i);
            }
        }
    }
}

__device__ __forceinline__ bool rows_vectorisable(int C, const void* a, const void* b, const void* c, const void* d,
                                                  const void* e, const void* f)
{
    // Null pointers (absent outputs) are aligned.
    return C % 4 == 0 && aligned16(a) && aligned16(b) && aligned16(c) && aligned16(d) && aligned16(e) && aligned16(f);
}

// y [N,C] = (x − mean)·rstd·γ + β per row; saves mean [N], rstd [N].
extern "C" __global__ void layernorm_forward_f32(float* y, float* mean, float* rstd, const float* __restrict__ x,
                                                 const float* __restrict__ gamma, const float* __restrict__ beta,
                                                 int N, int C, float eps)
{
    if ((int)blockIdx.x >= N) return;
    if (rows_vectorisable(C, y, x, gamma, beta, nullptr, nullptr))
        norm_forward_row<4, true>(y, mean, rstd, x, gamma, beta, C, eps);
    else
        norm_forward_row<1, true>(y, mean, rstd, x, gamma, beta, C, eps);
}

// y [N,C] = x·rstd·γ, rstd = 1/sqrt(mean(x²) + eps); saves rstd [N].
extern "C" __global__ void rmsnorm_forward_f32(float* y, float* rstd, const float* __restrict__ x,
                                               const float* __restrict__ gamma, int N, int C, float eps)
{
    if ((int)blockIdx.x >= N) return;
    if (rows_vectorisable(C, y, x, gamma, nullptr, nullptr, nullptr))
        norm_forward_row<4, false>(y, nullptr, rstd, x, gamma, nullptr, C, eps);
    else
        norm_forward_row<1, false>(y, nullptr, rstd, x, gamma, nullptr, C, eps);
}

// dx [N,C] += (null: skipped); dgamma_partial, dbeta_partial [ceil(N/R), C] = per-chunk sums (null: skipped).
extern "C" __global__ void layernorm_backward_f32(float* dx, float* dgamma_partial, float* dbeta_partial,
                                                  const float* __restrict__ dy, const float* __restrict__ x,
                                                  const float* __restrict__ gamma, const float* __restrict__ mean,
                                                  const float* __restrict__ rstd, int N, int C, int R)
{
    if (rows_vectorisable(C, dx, dgamma_partial, dbeta_partial, dy, x, gamma))
        norm_backward_rows<4, true>(dx, dgamma_partial, dbeta_partial, dy, x, gamma, mean, rstd, N, C, R);
    else
        norm_backward_rows<1, true>(dx, dgamma_partial, dbeta_partial, dy, x, gamma, mean, rstd, N, C, R);
}

// dx [N,C] += (null: skipped); dgamma_partial [ceil(N/R), C] = per-chunk sums (null: skipped).
extern "C" __global__ void rmsnorm_backward_f32(float* dx, float* dgamma_partial, const float* __restrict__ dy,
                                                const float* __restrict__ x, const float* __restrict__ gamma,
                                                const float* __restrict__ rstd, int N, int C, int R)
{
    if (rows_vectorisable(C, dx, dgamma_partial, dy, x, gamma, nullptr))
        norm_backward_rows<4, false>(dx, dgamma_partial, nullptr, dy, x, gamma, nullptr, rstd, N, C, R);
    else
        norm_backward_rows<1, false>(dx, dgamma_partial, nullptr, dy, x, gamma, nullptr, rstd, N, C, R);
}

VWLMM_KERNEL(layernorm_forward_f32)
VWLMM_KERNEL(rmsnorm_forward_f32)
VWLMM_KERNEL(layernorm_backward_f32)
VWLMM_KERNEL(rmsnorm_backward_f32)
