// rope.cu — rotary position embedding, rotate-half convention (HF LLaMA): within each head's D values the pairs
// (i, i + D/2) rotate by angle pos·inv_freq[i], pos = positions[b·T + t].
// inv_freq follows HF's float32 arithmetic step by step, like the CPU backend: exponent (float)2i/(float)D, theta^e
// rounded to float (evaluated in double, so the rounding is the correct one), its float reciprocal, the float product
// pos·inv_freq, then cosf/sinf of that float angle. Large positions then round exactly the way transformers does.
// Launch: grid B·T (one block per (b, t) row), any 1-D block, dynamic shared memory D floats (cos and sin of the row,
// computed once and shared by its H heads). Saves nothing.
// Forward: y = R·x; y may alias x (each thread reads both halves of its pair before writing them).
// Backward: dx += Rᵀ·dy (rotation by −angle), or dx = Rᵀ·dy with accumulate = 0.
#include "common.cuh"

template <bool Backward>
__device__ void rope_row(float* out, const float* in, const int* positions, int H, int D, float theta, int accumulate)
{
    EXTERN_SHARED(float, cs);  // [half] cos, then [half] sin (negated for the backward)
    int half = D / 2;
    long long row = blockIdx.x;
    float pos = (float)positions[row];
    for (int i = (int)threadIdx.x; i < half; i += (int)blockDim.x)
    {
        float invFreq = 1.0f / (float)pow((double)theta, (double)((float)(2 * i) / (float)D));
        float angle = pos * invFreq;
        cs[i] = cosf(angle);
        cs[half + i] = Backward ? -sinf(angle) : sinf(angle);
    }
    __syncthreads();
    const float* x = in + row * H * D;
    float* y = out + row * H * D;
    for (int p = (int)threadIdx.x; p < H * half; p += (int)blockDim.x)
    {
        int h = p / half, i = p - h * half;
        long long a = (long long)h * D + i, b = a + half;
        float x1 = x[a], x2 = x[b], c = cs[i], s = cs[half + i];
        float r1 = x1 * c - x2 * s, r2 = x2 * c + x1 * s;
        if (Backward)
        {
            r1 = grad_base(y + a, accumulate) + r1;
            r2 = grad_base(y + b, accumulate) + r2;
        }
        y[a] = r1;
        y[b] = r2;
    }
}

// y, x [B,T,H,D] (y may alias x); positions [B,T].
extern "C" __global__ void rope_forward_f32(float* y, const float* x, const int* __restrict__ positions, int H, int D,
                                            float theta)
{
    rope_row<false>(y, x, positions, H, D, theta, 0);
}

// dx [B,T,H,D] += Rᵀ·dy (= with accumulate = 0); positions [B,T].
extern "C" __global__ void rope_backward_f32(float* dx, const float* __restrict__ dy, const int* __restrict__ positions,
                                             int H, int D, float theta, int accumulate)
{
    rope_row<true>(dx, dy, positions, H, D, theta, accumulate);
}

VWLMM_KERNEL(rope_forward_f32)
VWLMM_KERNEL(rope_backward_f32)
