// elementwise.cu — pointwise ops on flat fp32 arrays (fill, copy, add, axpy, scale, bias add, GELU / quick-GELU /
// SiLU / SwiGLU forward and backward, dropout) and sum_rows_f32, the fixed-order column sums behind every deterministic
// parameter-gradient reduction (bias, LayerNorm/RMSNorm γ and β).
// Launch: pointwise kernels are 1-D grid-stride loops over a 64-bit n (any 1-D grid and block); sum_rows_f32 takes
// grid (ceil(W/block), chunks). Saves nothing: activation backward recomputes from x, dropout its mask from the seed.
// Backward kernels add to their gradients, or store into them when accumulate = 0.
#include "common.cuh"

extern "C" __global__ void fill_f32(float* x, float value, long long n)
{
    GRID_STRIDE_LOOP(i, n) x[i] = value;
}

extern "C" __global__ void copy_f32(float* dst, const float* __restrict__ src, long long n)
{
    GRID_STRIDE_LOOP(i, n) dst[i] = src[i];
}

// y may alias a or b.
extern "C" __global__ void add_f32(float* y, const float* a, const float* b, long long n)
{
    GRID_STRIDE_LOOP(i, n) y[i] = a[i] + b[i];
}

extern "C" __global__ void axpy_f32(float* y, const float* __restrict__ x, float alpha, long long n)
{
    GRID_STRIDE_LOOP(i, n) y[i] += alpha * x[i];
}

extern "C" __global__ void scale_f32(float* x, float alpha, long long n)
{
    GRID_STRIDE_LOOP(i, n) x[i] *= alpha;
}

// x [N,C] += bias [P,C], row n taking bias row n mod P.
extern "C" __global__ void bias_add_f32(float* x, const float* __restrict__ bias, int N, int C, int P)
{
    GRID_STRIDE_LOOP(i, (long long)N * C)
    {
        long long row = i / C;
        x[i] += bias[(row % P) * C + (i - row * C)];
    }
}

// View `in` as rows of W floats holding L floats in all (the last row may be short). For chunk k = blockIdx.y:
// out[k·W + j] = Σ_{r<R} in[(k·R + r)·W + j] over existing elements, summed in increasing r; with `accumulate` the
// sum is added to out instead. Called once with R rows per chunk into a scratch buffer, then once more with a single
// chunk over those partials, it reduces columns in an order fixed by the shapes alone.
extern "C" __global__ void sum_rows_f32(float* out, const float* __restrict__ in, long long L, int W, int R, int accumulate)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= W) return;
    long long first = (long long)blockIdx.y * R;
    // Rows r of this chunk with (first + r)·W + j < L, counted up front so that the loop unrolls and keeps several
    // loads in flight (the adds still run in increasing r).
    int rows = (int)max(0LL, min((long long)R, (L - j + W - 1) / W - first));
    const float* col = in + first * W + j;
    float s = 0.0f;
    VWLMM_UNROLL(8)
    for (int r = 0; r < rows; r++) s += col[(long long)r * W];
    float* o = out + (long long)blockIdx.y * W + j;
    *o = accumulate ? *o + s : s;
}

// ---- activations ----
__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_grad(float x)
{
    return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143268f * expf(-0.5f * x * x);
}
__device__ __forceinline__ float quick_gelu(float x) { return x * sigmoidf(1.702f * x); }
__device__ __forceinline__ float quick_gelu_grad(float x)
{
    float s = sigmoidf(1.702f * x);
    return s + 1.702f * x * s * (1.0f - s);
}
__device__ __forceinline__ float silu(float x) { return x * sigmoidf(x); }
__device__ __forceinline__ float silu_grad(float x)
{
    float s = sigmoidf(x);
    return s * (1.0f + x * (1.0f - s));
}

extern "C" __global__ void gelu_forward_f32(float* y, const float* __restrict__ x, long long n)
{
    GRID_STRIDE_LOOP(i, n) y[i] = gelu(x[i]);
}
extern "C" __global__ void gelu_backward_f32(float* dx, const float* __restrict__ dy, const float* __restrict__ x, long long n,
                                             int accumulate)
{
    GRID_STRIDE_LOOP(i, n) dx[i] = grad_base(dx + i, accumulate) + gelu_grad(x[i]) * dy[i];
}
extern "C" __global__ void quick_gelu_forward_f32(float* y, const float* __restrict__ x, long long n)
{
    GRID_STRIDE_LOOP(i, n) y[i] = quick_gelu(x[i]);
}
extern "C" __global__ void quick_gelu_backward_f32(float* dx, const float* __restrict__ dy, const float* __restrict__ x,
                                                   long long n, int accumulate)
{
    GRID_STRIDE_LOOP(i, n) dx[i] = grad_base(dx + i, accumulate) + quick_gelu_grad(x[i]) * dy[i];
}
extern "C" __global__ void silu_forward_f32(float* y, const float* __restrict__ x, long long n)
{
    GRID_STRIDE_LOOP(i, n) y[i] = silu(x[i]);
}
extern "C" __global__ void silu_backward_f32(float* dx, const float* __restrict__ dy, const float* __restrict__ x, long long n,
                                             int accumulate)
{
    GRID_STRIDE_LOOP(i, n) dx[i] = grad_base(dx + i, accumulate) + silu_grad(x[i]) * dy[i];
}

// y = silu(gate)·up (LLaMA MLP).
extern "C" __global__ void swiglu_forward_f32(float* y, const float* __restrict__ gate, const float* __restrict__ up, long long n)
{
    GRID_STRIDE_LOOP(i, n) y[i] = silu(gate[i]) * up[i];
}
// dgate += dy·up·silu'(gate), dup += dy·silu(gate) (= with accumulate = 0); a null output is skipped.
extern "C" __global__ void swiglu_backward_f32(float* dgate, float* dup, const float* __restrict__ dy,
                                               const float* __restrict__ gate, const float* __restrict__ up, long long n,
                                               int accumulate)
{
    GRID_STRIDE_LOOP(i, n)
    {
        float g = gate[i], d = dy[i];
        if (dgate) dgate[i] = grad_base(dgate + i, accumulate) + d * up[i] * silu_grad(g);
        if (dup) dup[i] = grad_base(dup + i, accumulate) + d * silu(g);
    }
}

// Inverted dropout, y = x·scale where element i is kept and 0 elsewhere (y += that with accumulate); backward is the
// same kernel on dy. Element i is kept when the high word of SplitMix64 output i from `seed` is ≥ threshold
// (DropoutMask in VwLmm.Core), so no mask is stored and every backend draws the same one.
extern "C" __global__ void dropout_f32(float* y, const float* x, float scale, unsigned int threshold,
                                       unsigned long long seed, long long n, int accumulate)
{
    GRID_STRIDE_LOOP(i, n)
    {
        unsigned long long z = seed + (unsigned long long)(i + 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        float v = (unsigned int)(z >> 32) >= threshold ? x[i] * scale : 0.0f;
        y[i] = accumulate ? y[i] + v : v;
    }
}

VWLMM_KERNEL(fill_f32)
VWLMM_KERNEL(copy_f32)
VWLMM_KERNEL(add_f32)
VWLMM_KERNEL(axpy_f32)
VWLMM_KERNEL(scale_f32)
VWLMM_KERNEL(bias_add_f32)
VWLMM_KERNEL(sum_rows_f32)
VWLMM_KERNEL(gelu_forward_f32)
VWLMM_KERNEL(gelu_backward_f32)
VWLMM_KERNEL(quick_gelu_forward_f32)
VWLMM_KERNEL(quick_gelu_backward_f32)
VWLMM_KERNEL(silu_forward_f32)
VWLMM_KERNEL(silu_backward_f32)
VWLMM_KERNEL(swiglu_forward_f32)
VWLMM_KERNEL(swiglu_backward_f32)
VWLMM_KERNEL(dropout_f32)
