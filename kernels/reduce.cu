// reduce.cu — the deterministic sum of squares behind the global gradient norm, accumulated in double so the float
// result is correctly rounded for any n.
// Launch: sum_squares_partials_f32 takes grid ceil(n/chunk), block REDUCE_THREADS; block b sums elements
// [b·chunk, (b+1)·chunk) into partials[b]. sum_partials_f64 then runs one block of REDUCE_THREADS over the partials in
// a fixed order. Chunk boundaries depend on n alone, so the result is bit-reproducible. The list kernels do the same for
// every gradient of a parameter list in two launches: one block per chunk of every entry, then one block per entry.
// Saves nothing.
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

// Σ x[i]² over [lo, hi) by the block, in double; thread 0 gets the result. lo must be a multiple of 4.
__device__ double sum_squares_range(const float* x, long long lo, long long hi)
{
    int t = (int)threadIdx.x;
    double s = 0.0;
    long long i = lo;
    if (aligned16(x))
    {
        // x + lo is aligned too: lo is a multiple of 4.
        for (i = lo + 4 * t; i + 4 <= hi; i += 4 * REDUCE_THREADS)
        {
            float4 q = *reinterpret_cast<const float4*>(x + i);
            s += (double)q.x * q.x + (double)q.y * q.y + (double)q.z * q.z + (double)q.w * q.w;
        }
        i = lo + (hi - lo) / 4 * 4;
    }
    for (i += t; i < hi; i += REDUCE_THREADS) s += (double)x[i] * x[i];
    return block_sum_f64(s);
}

// Σ partials[0..count) by the block, in double; thread 0 gets the result.
__device__ double sum_range_f64(const double* partials, long long count)
{
    double s = 0.0;
    for (long long i = (int)threadIdx.x; i < count; i += REDUCE_THREADS) s += partials[i];
    return block_sum_f64(s);
}
}  // namespace

// partials[b] = Σ x[i]² over i in [b·chunk, min(n, (b+1)·chunk)), in double. chunk must be a multiple of 4.
extern "C" __global__ void sum_squares_partials_f32(double* partials, const float* __restrict__ x, long long n, int chunk)
{
    long long lo = (long long)blockIdx.x * chunk;
    double s = sum_squares_range(x, lo, min(n, lo + chunk));
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// *result = (float) Σ partials[0..count), summed in double. One block.
extern "C" __global__ void sum_partials_f64(float* result, const double* __restrict__ partials, int count)
{
    double s = sum_range_f64(partials, count);
    if (threadIdx.x == 0) *result = (float)s;
}

// The first stage over the gradients of a parameter list: partials[b] for block b of entry e is the sum of squares of
// chunk b − chunk_start[e] of its gradient, the chunk sum_squares_partials_f32 would give with chunk = PARAM_LIST_CHUNK.
extern "C" __global__ void sum_squares_list_partials_f32(double* partials, const ParamEntry* __restrict__ entries,
                                                         const long long* __restrict__ chunk_start, int count)
{
    ParamChunk c = param_list_chunk(entries, chunk_start, count);
    double s = sum_squares_range(c.entry.grad, c.lo, c.hi);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// results[e] = (float) Σ of entry e's partials, summed as sum_partials_f64 does. Grid: one block per entry.
extern "C" __global__ void sum_partials_list_f64(float* results, const double* __restrict__ partials,
                                                 const long long* __restrict__ chunk_start, int count)
{
    int e = blockIdx.x;
    if (e >= count) return;
    double s = sum_range_f64(partials + chunk_start[e], chunk_start[e + 1] - chunk_start[e]);
    if (threadIdx.x == 0) results[e] = (float)s;
}

VWLMM_KERNEL(sum_squares_partials_f32)
VWLMM_KERNEL(sum_partials_f64)
VWLMM_KERNEL(sum_squares_list_partials_f32)
VWLMM_KERNEL(sum_partials_list_f64)
