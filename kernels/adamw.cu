// adamw.cu — the fused AdamW step with decoupled weight decay over flat fp32 parameter, gradient and moment buffers:
// one read of param, grad, m, v and one write of param, m, v per element.
// Launch: 1-D grid-stride loop over a 64-bit n (any 1-D grid and block). Saves nothing; m and v are the optimiser state.
// The bias corrections 1/(1 − β^step) come from the host, computed in double.
#include "common.cuh"

// g = grad·gradScale; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
// param −= lr·(m·invCorrection1 / (sqrt(v·invCorrection2) + eps) + weightDecay·param), all [n].
extern "C" __global__ void adamw_f32(float* param, const float* __restrict__ grad, float* m, float* v, long long n,
                                     float lr, float beta1, float beta2, float eps, float weightDecay,
                                     float invCorrection1, float invCorrection2, float gradScale)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        float g = grad[i] * gradScale;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = param[i];
        param[i] = p - lr * (mi * invCorrection1 / (sqrtf(vi * invCorrection2) + eps) + weightDecay * p);
    }
}

VWLMM_KERNEL(adamw_f32)
