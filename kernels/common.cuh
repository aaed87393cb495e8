// Shared device helpers for kernels/*.cu: the emulator/NVRTC switches, kernel registration, the grid-stride loop, warp
// and block reductions (any 1-D block size, including a partial last warp), and vector loads.
#pragma once

#if defined(VWLMM_EMU)
#include "emu/cuda_emu.h"
#else
// Under nvcc/NVRTC the registration lines of the emulator build are empty.
#define VWLMM_KERNEL(name)
// Dynamic shared memory viewed as T*. One raw array for all kernels: extern __shared__ arrays of different element
// types would conflict within a translation unit.
#define EXTERN_SHARED(T, name) \
    extern __shared__ __align__(16) unsigned char vwlmm_dynamic_shared[]; \
    T* name = reinterpret_cast<T*>(vwlmm_dynamic_shared)
#ifdef __CUDACC_RTC__
// NVRTC has no <math.h>.
#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fffffff)
#else
#include <math.h>
#endif
#endif

#define VWLMM_FULL_MASK 0xffffffffu

// Unroll the next loop N times: nvcc's pragma, or GCC's in the emulator build.
#if defined(VWLMM_EMU)
#define VWLMM_UNROLL(N) _Pragma(VWLMM_STR(GCC unroll N))
#else
#define VWLMM_UNROLL(N) _Pragma(VWLMM_STR(unroll N))
#endif
#define VWLMM_STR(x) #x

// A 1-D grid-stride loop over a 64-bit count: any 1-D grid and block cover all n elements.
#define GRID_STRIDE_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

struct SumOp
{
    __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp
{
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Lanes of this thread's warp that exist in a 1-D block (the last warp may be partial) and their count.
__device__ __forceinline__ int warp_lane_count()
{
    int first = (int)(threadIdx.x & ~31u);
    return min(32, (int)blockDim.x - first);
}
__device__ __forceinline__ unsigned lane_mask(int lanes) { return lanes == 32 ? VWLMM_FULL_MASK : (1u << lanes) - 1u; }

// Reduces v over the first `lanes` lanes of the warp (lanes ≥ 1, all of them calling); every one gets the result.
// shfl_down keeps the sum order fixed, so the result is deterministic; partners past `lanes` are skipped.
template <class Op> __device__ __forceinline__ float warp_reduce(float v, Op op, int lanes)
{
    unsigned mask = lane_mask(lanes);
    int lane = (int)(threadIdx.x & 31u);
    for (int offset = 16; offset > 0; offset >>= 1)
    {
        float other = __shfl_down_sync(mask, v, offset);
        if (lane + offset < lanes) v = op(v, other);
    }
    return __shfl_sync(mask, v, 0);
}

// Reduces v over the whole 1-D block; every thread of the block must call it, and every thread gets the result.
// Two barriers: a second call may follow immediately (its writes come after everyone passed this call's barriers).
template <class Op> __device__ float block_reduce(float v, Op op)
{
    __shared__ float partial[32];
    __shared__ float total;
    int warp = (int)(threadIdx.x >> 5), lane = (int)(threadIdx.x & 31u);
    int warps = (int)((blockDim.x + 31u) >> 5);
    v = warp_reduce(v, op, warp_lane_count());
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0 && lane < warps)
    {
        v = warp_reduce(partial[lane], op, warps);
        if (lane == 0) total = v;
    }
    __syncthreads();
    return total;
}

__device__ __forceinline__ float block_sum(float v) { return block_reduce(v, SumOp()); }
__device__ __forceinline__ float block_max(float v) { return block_reduce(v, MaxOp()); }

__device__ __forceinline__ bool aligned16(const void* p) { return ((unsigned long long)p & 15ull) == 0; }

// W consecutive floats at p[i] (i a multiple of W): one float4 transaction when W = 4, so p + i must be 16-byte aligned.
template <int W> struct Vec;
template <> struct Vec<1>
{
    float v[1];
    __device__ __forceinline__ static Vec load(const float* p, int i) { return Vec{{p[i]}}; }
    __device__ __forceinline__ void store(float* p, int i) const { p[i] = v[0]; }
};
template <> struct Vec<4>
{
    float v[4];
    __device__ __forceinline__ static Vec load(const float* p, int i)
    {
        float4 q = *reinterpret_cast<const float4*>(p + i);
        return Vec{{q.x, q.y, q.z, q.w}};
    }
    __device__ __forceinline__ void store(float* p, int i) const
    {
        *reinterpret_cast<float4*>(p + i) = make_float4(v[0], v[1], v[2], v[3]);
    }
};

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

// What a backward kernel adds its result to: the gradient there (accumulate ≠ 0), or zero when it stores, which a
// fresh gradient needs no fill for and which gives the bits of adding to zeros.
__device__ __forceinline__ float grad_base(const float* g, int accumulate) { return accumulate ? *g : 0.0f; }

// One entry of a parameter list (ParameterList in C#; CudaBackend.AdamW.cs writes the same 48-byte layout): the
// parameter, its gradient and AdamW moments, all [n]. The list kernels take grid = Σ ⌈nᵢ / PARAM_LIST_CHUNK⌉ blocks, and
// chunk_start[i] is the first block of entry i (chunk_start[count] = the grid). Chunk boundaries are those of the
// per-tensor sum of squares, so the list kernels give its bits.
#define PARAM_LIST_CHUNK 8192
struct ParamEntry
{
    float* param;
    float* grad;
    float* m;
    float* v;
    long long n;
    float weight_decay;
    float unused;
};

// The entry whose chunks hold block b: the last i with chunk_start[i] <= b (entries without chunks are skipped).
__device__ __forceinline__ int param_list_entry(const long long* chunk_start, int count, long long b)
{
    int lo = 0, hi = count - 1;
    while (lo < hi)
    {
        int mid = (lo + hi + 1) / 2;
        if (chunk_start[mid] <= b) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

// This block's chunk of a parameter list: its entry and the element range [lo, hi) of that entry.
struct ParamChunk
{
    ParamEntry entry;
    long long lo, hi;
};
__device__ __forceinline__ ParamChunk param_list_chunk(const ParamEntry* entries, const long long* chunk_start, int count)
{
    long long b = blockIdx.x;
    int e = param_list_entry(chunk_start, count, b);
    ParamChunk c;
    c.entry = entries[e];
    c.lo = (b - chunk_start[e]) * PARAM_LIST_CHUNK;
    c.hi = min(c.entry.n, c.lo + PARAM_LIST_CHUNK);
    return c;
}
