// vocab.cu — the visual-word vocab-projection kernels: fused row ops on vocabulary logits, always fp32, for V up to
// ~152k (far wider than a block): softmax cross-entropy with ignore index −100, the VW-LMM visual-word KL in both
// directions (METHOD §2.4–2.6), and row softmax forward and backward.
// Launch: one block per row (cross-entropy, softmax) or per pair (KL), any 1-D block; every thread strides over the
// row in float4 loads when V % 4 == 0 and all base pointers are 16-byte aligned (scalar loads otherwise).
// Passes: the first sweep keeps an online max and Σ exp(x − max) per thread (the KL also Σ exp(a − max)·(a − b), which
// gives the divergence without another sweep) and merges them over the block; a second sweep, only when outputs or
// gradients are wanted, writes them. A loss alone reads its logit rows once; loss and gradients read them twice and
// read-modify-write each gradient row once. Log-probabilities are (x − max) − log Σ, never log(softmax), so ±80
// logits stay finite. Saves nothing: gradients are written in the same launch as the loss (the losses are roots), and
// softmax backward takes the forward's output.
// No atomics: a block writes only the gradient rows of its own row or pair; the launcher serialises pairs that share
// a gradient row (see CudaBackend.Vocab.cs).
#include "common.cuh"

#define IGNORE_INDEX (-100)

// Helpers have internal linkage: the emulator links every kernels/*.cu into one library.
namespace
{
// Online log-sum-exp keeps m, the largest x seen, and sums of exp(x − m). Before a vector's terms are added, m rises to
// the vector's max; the returned factor rescales the sums kept so far (1 when m did not move, 0 at the first vector).
// So the W exponentials of a vector are independent, and the max moves at most once per vector.
template <int W>
__device__ __forceinline__ float raise_max(float& m, const Vec<W>& v)
{
    float top = v.v[0];
    for (int k = 1; k < W; k++) top = fmaxf(top, v.v[k]);
    if (!(top > m)) return 1.0f;
    float c = expf(m - top);
    m = top;
    return c;
}

// Merges every thread's (m, s) over the block: afterwards all threads hold the row max m and Σ exp(x − m).
// A thread that saw no element has m = −inf and contributes exp(−inf) = 0.
__device__ __forceinline__ void block_merge(float& m, float& s)
{
    float rowMax = block_max(m);
    s = block_sum(s * expf(m - rowMax));
    m = rowMax;
}

template <int W>
__device__ void row_stats(const float* x, int V, float& m, float& s)
{
    m = -INFINITY;
    s = 0.0f;
    for (int i = (int)threadIdx.x * W; i < V; i += (int)blockDim.x * W)
    {
        Vec<W> v = Vec<W>::load(x, i);
        s *= raise_max(m, v);
        // Only masked (−∞) logits so far: each adds exp(−∞) = 0, where exp(−∞ − m) with m = −∞ would be NaN.
        if (m == -INFINITY) continue;
        for (int k = 0; k < W; k++) s += expf(v.v[k] - m);
    }
    block_merge(m, s);
}

__device__ __forceinline__ bool rows_vectorisable(int V, const void* a, const void* b, const void* c, const void* d)
{
    // Rows start at multiples of V, so aligned bases and V % 4 == 0 align every row. Null pointers are aligned.
    return V % 4 == 0 && aligned16(a) && aligned16(b) && aligned16(c) && aligned16(d);
}

// loss = log Σ exp(x) − x[target] = (max − x[target]) + log s; dlogits += gradScale·(softmax − onehot) (= with
// accumulate = 0).
template <int W>
__device__ void cross_entropy_row(float* losses, float* dlogits, const float* logits, int target, int V, float gradScale,
                                  int accumulate)
{
    long long row = blockIdx.x;
    const float* x = logits + row * V;
    float m, s;
    row_stats<W>(x, V, m, s);
    if (threadIdx.x == 0) losses[row] = (m - x[target]) + logf(s);
    if (!dlogits) return;
    float* d = dlogits + row * V;
    float scaleOverSum = gradScale / s;
    for (int i = (int)threadIdx.x * W; i < V; i += (int)blockDim.x * W)
    {
        Vec<W> v = Vec<W>::load(x, i), o = accumulate ? Vec<W>::load(d, i) : Vec<W>{};
        for (int k = 0; k < W; k++)
            o.v[k] += expf(v.v[k] - m) * scaleOverSum - (i + k == target ? gradScale : 0.0f);
        o.store(d, i);
    }
}

// KL(α‖β) with α = softmax(a), β = softmax(b) for one pair, and its gradients times gradScale:
// da += α ⊙ (log α − log β − KL), db += β − α (METHOD §2.6). Forward KL(p‖q) has a = VM row, b = LM row; reverse
// KL(q‖p) swaps them. KL = Σ α (a − b) − (lse_a − lse_b), with Σ α (a − b) = t / s_a accumulated in the first sweep.
template <int W>
__device__ void kl_pair(float* loss, float* da, float* db, const float* a, const float* b, int V, float gradScale)
{
    float ma = -INFINITY, sa = 0.0f, t = 0.0f, mb = -INFINITY, sb = 0.0f;
    for (int i = (int)threadIdx.x * W; i < V; i += (int)blockDim.x * W)
    {
        Vec<W> va = Vec<W>::load(a, i), vb = Vec<W>::load(b, i);
        float c = raise_max(ma, va);
        sa *= c;
        t *= c;
        sb *= raise_max(mb, vb);
        for (int k = 0; k < W; k++)
        {
            float e = expf(va.v[k] - ma);
            sa += e;
            t += e * (va.v[k] - vb.v[k]);
            sb += expf(vb.v[k] - mb);
        }
    }
    float rowMaxA = block_max(ma), c = expf(ma - rowMaxA);
    sa = block_sum(sa * c);
    t = block_sum(t * c);
    ma = rowMaxA;
    block_merge(mb, sb);
    float logSa = logf(sa), logSb = logf(sb);
    // Each term is small when α ≈ β, so the divergence of close distributions keeps its relative precision.
    float kl = t / sa - (ma - mb) - (logSa - logSb);
    if (threadIdx.x == 0) *loss = kl;
    if (!da && !db) return;
    float invSa = 1.0f / sa, invSb = 1.0f / sb;
    for (int i = (int)threadIdx.x * W; i < V; i += (int)blockDim.x * W)
    {
        Vec<W> va = Vec<W>::load(a, i), vb = Vec<W>::load(b, i), oa = {}, ob = {};
        if (da) oa = Vec<W>::load(da, i);
        if (db) ob = Vec<W>::load(db, i);
        for (int k = 0; k < W; k++)
        {
            float xa = va.v[k] - ma, xb = vb.v[k] - mb;
            float pa = expf(xa) * invSa, pb = expf(xb) * invSb;
            if (da) oa.v[k] += gradScale * pa * ((xa - logSa) - (xb - logSb) - kl);
            if (db) ob.v[k] += gradScale * (pb - pa);
        }
        if (da) oa.store(da, i);
        if (db) ob.store(db, i);
    }
}

template <int W>
__device__ void softmax_row(float* y, const float* x, int V)
{
    long long row = blockIdx.x;
    const float* xr = x + row * V;
    float* yr = y + row * V;
    float m, s;
    row_stats<W>(xr, V, m, s);
    float inv = 1.0f / s;
    for (int i = (int)threadIdx.x * W; i < V; i += (int)blockDim.x * W)
    {
        Vec<W> v = Vec<W>::load(xr, i);
        for (int k = 0; k < W; k++) v.v[k] = expf(v.v[k] - m) * inv;
        v.store(yr, i);
    }
}

template <int W>
__device__ void softmax_backward_row(float* dx, const float* dy, const float* y, int V)
{
    long long offset = (long long)blockIdx.x * V;
    const float* dyr = dy + offset;
    const float* yr = y + offset;
    float* dxr = dx + offset;
    float dot = 0.0f;
    for (int i = (int)threadIdx.x * W; i < V; i += (int)blockDim.x * W)
    {
        Vec<W> g = Vec<W>::load(dyr, i), p = Vec<W>::load(yr, i);
        for (int k = 0; k < W; k++) dot += g.v[k] * p.v[k];
    }
    dot = block_sum(dot);
    for (int i = (int)threadIdx.x * W; i < V; i += (int)blockDim.x * W)
    {
        Vec<W> g = Vec<W>::load(dyr, i), p = Vec<W>::load(yr, i), o = Vec<W>::load(dxr, i);
        for (int k = 0; k < W; k++) o.v[k] += p.v[k] * (g.v[k] - dot);
        o.store(dxr, i);
    }
}
}  // namespace

// losses [N] = cross-entropy of logits [N,V] row n against targets[n] (0 where targets[n] = −100); when dlogits is
// not null, dlogits [N,V] += gradScale·(softmax − onehot) on the rows that count; with accumulate = 0, dlogits = that,
// and 0 on the ignored rows. Grid N. Targets are checked on the host.
extern "C" __global__ void cross_entropy_f32(float* losses, float* dlogits, const float* __restrict__ logits,
                                             const int* __restrict__ targets, int N, int V, float gradScale, int accumulate)
{
    if ((int)blockIdx.x >= N) return;
    int target = targets[blockIdx.x];
    if (target == IGNORE_INDEX)
    {
        if (threadIdx.x == 0) losses[blockIdx.x] = 0.0f;
        if (dlogits && !accumulate)
            for (int i = (int)threadIdx.x; i < V; i += (int)blockDim.x) dlogits[(long long)blockIdx.x * V + i] = 0.0f;
        return;
    }
    if (rows_vectorisable(V, dlogits, logits, nullptr, nullptr))
        cross_entropy_row<4>(losses, dlogits, logits, target, V, gradScale, accumulate);
    else
        cross_entropy_row<1>(losses, dlogits, logits, target, V, gradScale, accumulate);
}

// For pair i = first + blockIdx.x of pairs [·,2] = (lmRow, vmRow): q = softmax(lm [·,V] row lmRow), p = softmax(vm
// row vmRow); losses[i] = KL(p‖q) (reverse = 0) or KL(q‖p) (reverse ≠ 0); dLm row lmRow and dVm row vmRow +=
// gradScale·∂KL (null: skipped). Grid: the pairs of this launch. Rows are checked on the host.
extern "C" __global__ void visual_word_kl_f32(float* losses, float* dLm, float* dVm, const float* __restrict__ lm,
                                              const float* __restrict__ vm, const int* __restrict__ pairs, int first,
                                              int V, int reverse, float gradScale)
{
    int pair = first + (int)blockIdx.x;
    long long lmOffset = (long long)pairs[2 * pair] * V, vmOffset = (long long)pairs[2 * pair + 1] * V;
    const float* lmRow = lm + lmOffset;
    const float* vmRow = vm + vmOffset;
    float* dLmRow = dLm ? dLm + lmOffset : nullptr;
    float* dVmRow = dVm ? dVm + vmOffset : nullptr;
    const float* a = reverse ? lmRow : vmRow;
    const float* b = reverse ? vmRow : lmRow;
    float* da = reverse ? dLmRow : dVmRow;
    float* db = reverse ? dVmRow : dLmRow;
    if (rows_vectorisable(V, lm, vm, dLm, dVm))
        kl_pair<4>(losses + pair, da, db, a, b, V, gradScale);
    else
        kl_pair<1>(losses + pair, da, db, a, b, V, gradScale);
}

// y [N,V] = softmax of each row of x [N,V]. Grid N.
extern "C" __global__ void softmax_forward_f32(float* y, const float* __restrict__ x, int N, int V)
{
    if ((int)blockIdx.x >= N) return;
    if (rows_vectorisable(V, y, x, nullptr, nullptr))
        softmax_row<4>(y, x, V);
    else
        softmax_row<1>(y, x, V);
}

// dx [N,V] += y ⊙ (dy − Σ_v dy·y) per row, y the softmax output. Grid N.
extern "C" __global__ void softmax_backward_f32(float* dx, const float* __restrict__ dy, const float* __restrict__ y, int N, int V)
{
    if ((int)blockIdx.x >= N) return;
    if (rows_vectorisable(V, dx, dy, y, nullptr))
        softmax_backward_row<4>(dx, dy, y, V);
    else
        softmax_backward_row<1>(dx, dy, y, V);
}

VWLMM_KERNEL(cross_entropy_f32)
VWLMM_KERNEL(visual_word_kl_f32)
VWLMM_KERNEL(softmax_forward_f32)
VWLMM_KERNEL(softmax_backward_f32)
