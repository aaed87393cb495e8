// reduce.cu — the deterministic sum of squares behind the global gradient norm, accumulated in double so the float
// result is correctly rounded for any n.
// Launch: sum_squares_partials_f32 takes grid ceil(n/chunk), block REDUCE_THREADS; block b sums elements
// [b·chunk, (b+1)·chunk) into partials[b]. sum_partials_f64 then runs one block of REDUCE_THREADS over the partials in
// a fixed order. Chunk boundaries depend on n alone, so the result is bit-reproducible. Saves nothing.
#include "common.cuh"

#define REDUCE_THREADS 256

namespace
{
// Σ v over the block in a fixed tree order (blockDim.x = REDUCE_THREADS); thread 0 gets the result.
__device__ double block_sum_f64(double v)
{
    __shared__ double buffer[REDUCE_THREADS];
    int t = (int)threadIdx.x;
    buffer[t] = v;
    __syncthreads();
    for (int half = REDUCE_THREADS / 2; half > 0; half >>= 1)
    {
        if (t < half) buffer[t] += buffer[t + half];
        __syncthreads();
    }
    return buffer[0];
}
}  // namespace

// partials[b] = Σ x[i]² over i in [b·chunk, min(n, (b+1)·chunk)), in double. chunk must be a multiple of 4.
extern "C" __global__ void sum_squares_partials_f32(double* partials, const float* __restrict__ x, long long n, int chunk)
{
    long long lo = (long long)blockIdx.x * chunk, hi = min(n, lo + chunk);
    int t = (int)threadIdx.x;
    double s = 0.0;
    long long i = lo;
    if (aligned16(x))
    {
        // x + lo is aligned too: chunk is a multiple of 4.
        for (i = lo + 4 * t; i + 4 <= hi; i += 4 * REDUCE_THREADS)
        {
            float4 q = *reinterpret_cast<const float4*>(x + i);
            s += (double)q.x * q.x + (double)q.y * q.y + (double)q.z * q.z + (double)q.w * q.w;
        }
        i = lo + (hi - lo) / 4 * 4;
    }
    for (i += t; i < hi; i += REDUCE_THREADS) s += (double)x[i] * x[i];
    s = block_sum_f64(s);
    if (t == 0) partials[blockIdx.x] = s;
}

// *result = (float) Σ partials[0..count), summed in double. One block.
extern "C" __global__ void sum_partials_f64(float* result, const double* __restrict__ partials, int count)
{
    double s = 0.0;
    for (int i = (int)threadIdx.x; i < count; i += REDUCE_THREADS) s += partials[i];
    s = block_sum_f64(s);
    if (threadIdx.x == 0) *result = (float)s;
}

VWLMM_KERNEL(sum_squares_partials_f32)
VWLMM_KERNEL(sum_partials_f64)
