// adamw.cu — the fused AdamW step with decoupled weight decay over flat fp32 parameter, gradient and moment buffers:
// one read of param, grad, m, v and one write of param, m, v per element; and the same over a parameter list, with the
// gradient zeroing that precedes each step, in one launch each (the per-parameter launches dominated a small model's
// GPU step).
// Launch: adamw_f32 is a 1-D grid-stride loop over a 64-bit n (any 1-D grid and block); the list kernels take one block
// per PARAM_LIST_CHUNK elements of an entry (common.cuh), any 1-D block (AdamW's launcher gives 1024 threads).
// Saves nothing; m and v are the optimiser state.
// The bias corrections 1/(1 − β^step) come from the host, computed in double.
#include "common.cuh"

#define ADAMW_LIST_UNROLL 4
// adamw_list_f32's block size (ListAdamWThreads in CudaBackend.AdamW.cs). As a launch bound it holds the compiler,
// and the driver's JIT, to the 64 registers a thread of a 1024-thread block may have: NVRTC 11.8 gives it 60–64.
#define ADAMW_LIST_THREADS 1024

// g = grad·gradScale; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
// p −= lr·(m·invCorrection1 / (sqrt(v·invCorrection2) + eps) + weightDecay·p), on values already loaded.
__device__ __forceinline__ void adamw_update(float grad, float& m, float& v, float& p, float lr, float beta1, float beta2,
                                             float eps, float weightDecay, float invCorrection1, float invCorrection2,
                                             float gradScale)
{
    float g = grad * gradScale;
    m = beta1 * m + (1.0f - beta1) * g;
    v = beta2 * v + (1.0f - beta2) * g * g;
    p = p - lr * (m * invCorrection1 / (sqrtf(v * invCorrection2) + eps) + weightDecay * p);
}

// The update above at element i of param, grad, m and v.
__device__ __forceinline__ void adamw_element(float* param, const float* grad, float* m, float* v, long long i,
                                              float lr, float beta1, float beta2, float eps, float weightDecay,
                                              float invCorrection1, float invCorrection2, float gradScale)
{
    float mi = m[i], vi = v[i], p = param[i];
    adamw_update(grad[i], mi, vi, p, lr, beta1, beta2, eps, weightDecay, invCorrection1, invCorrection2, gradScale);
    m[i] = mi;
    v[i] = vi;
    param[i] = p;
}

// The update above on every element of [n].
extern "C" __global__ void adamw_f32(float* param, const float* __restrict__ grad, float* m, float* v, long long n,
                                     float lr, float beta1, float beta2, float eps, float weightDecay,
                                     float invCorrection1, float invCorrection2, float gradScale)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        adamw_element(param, grad, m, v, i, lr, beta1, beta2, eps, weightDecay, invCorrection1, invCorrection2, gradScale);
}

// The update above on every entry of a parameter list, each with its own weight decay.
extern "C" __global__ void __launch_bounds__(ADAMW_LIST_THREADS)
adamw_list_f32(const ParamEntry* __restrict__ entries, const long long* __restrict__ chunk_start, int count, float lr,
               float beta1, float beta2, float eps, float invCorrection1, float invCorrection2, float gradScale)
{
    // ADAMW_LIST_UNROLL elements of each array loaded per thread before any is stored (the table's pointers declared
    // unaliased). One element at a time, at 48 registers and 62 % occupancy, kept too few loads in flight: 57 % of an
    // H100's bandwidth at 2^26 elements in 100 entries, against 74 % this way (session 26's kernel lab).
    ParamChunk c = param_list_chunk(entries, chunk_start, count);
    float* __restrict__ param = c.entry.param;
    const float* __restrict__ grad = c.entry.grad;
    float* __restrict__ m = c.entry.m;
    float* __restrict__ v = c.entry.v;
    const float weightDecay = c.entry.weight_decay;
    for (long long base = c.lo + threadIdx.x; base < c.hi; base += (long long)ADAMW_LIST_UNROLL * blockDim.x)
    {
        float g[ADAMW_LIST_UNROLL], mu[ADAMW_LIST_UNROLL], vu[ADAMW_LIST_UNROLL], pu[ADAMW_LIST_UNROLL];
#pragma unroll
        for (int u = 0; u < ADAMW_LIST_UNROLL; u++)
        {
            long long i = base + (long long)u * blockDim.x;
            if (i < c.hi) { g[u] = grad[i]; mu[u] = m[i]; vu[u] = v[i]; pu[u] = param[i]; }
        }
#pragma unroll
        for (int u = 0; u < ADAMW_LIST_UNROLL; u++)
        {
            long long i = base + (long long)u * blockDim.x;
            if (i < c.hi)
            {
                adamw_update(g[u], mu[u], vu[u], pu[u], lr, beta1, beta2, eps, weightDecay, invCorrection1, invCorrection2,
                             gradScale);
                m[i] = mu[u];
                v[i] = vu[u];
                param[i] = pu[u];
            }
        }
    }
}

// grad = 0 on every entry of a parameter list.
extern "C" __global__ void zero_gradients_f32(const ParamEntry* __restrict__ entries, const long long* __restrict__ chunk_start,
                                              int count)
{
    ParamChunk c = param_list_chunk(entries, chunk_start, count);
    for (long long i = c.lo + threadIdx.x; i < c.hi; i += blockDim.x) c.entry.grad[i] = 0.0f;
}

VWLMM_KERNEL(adamw_f32)
VWLMM_KERNEL(adamw_list_f32)
VWLMM_KERNEL(zero_gradients_f32)
