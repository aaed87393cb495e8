// selftest.cu — small kernels that exercise the emulator itself (barriers, shared memory, warp exchange, reductions,
// deadlock detection, atomics). Compiled into the emulator library only, never into PTX. Tests: VwLmm.Tests.Cuda.Emu.
#include "../common.cuh"

#define FULL VWLMM_FULL_MASK

// Block of any size; threads ≥ active return at once. out [4·blockDim]: neighbour's shared value, then the results of
// __syncthreads_count(even), _and(true), _or(t == 0) — exited threads count as arrived and do not vote.
extern "C" __global__ void emu_selftest_sync_early_return(int* out, int active)
{
    __shared__ int s[1024];
    int t = threadIdx.x, B = blockDim.x;
    if (t >= active) return;
    s[t] = 3 * t + 1;
    __syncthreads();
    out[t] = s[(t + 1) % active];
    out[B + t] = __syncthreads_count(t % 2 == 0);
    out[2 * B + t] = __syncthreads_and(1);
    out[3 * B + t] = __syncthreads_or(t == 0);
}

// 64 threads, 64 floats of dynamic shared memory, any grid. out [grid, 128]: dynamic shared memory before any write
// (poison: NaN), then dyn[63−t] + stat[t] after a reversal through both kinds of shared memory.
extern "C" __global__ void emu_selftest_shared(float* out)
{
    EXTERN_SHARED(float, dyn);
    __shared__ float stat[64];
    int t = threadIdx.x;
    float* o = out + blockIdx.x * 128;
    o[t] = dyn[t];
    __syncthreads();
    dyn[t] = (float)(t + blockIdx.x);
    stat[63 - t] = 2.0f * t;
    __syncthreads();
    o[64 + t] = dyn[63 - t] + stat[t];
}

// One full warp. f [8,32]: xor 5, down 3, up 2, broadcast lane 7, xor 1 and width-16 broadcast within disjoint
// half-warp masks, down 4 at width 8, a read of a lane outside the mask (NaN). u [4,32]: ballot(l % 3 == 0),
// any(l == 5) per half, all(true), ballot(odd) per half.
extern "C" __global__ void emu_selftest_shuffle(float* f, unsigned* u)
{
    int l = threadIdx.x;
    float v = l + 0.5f;
    unsigned half = l < 16 ? 0x0000ffffu : 0xffff0000u;
    f[0 * 32 + l] = __shfl_xor_sync(FULL, v, 5);
    f[1 * 32 + l] = __shfl_down_sync(FULL, v, 3);
    f[2 * 32 + l] = __shfl_up_sync(FULL, v, 2);
    f[3 * 32 + l] = __shfl_sync(FULL, v, 7);
    f[4 * 32 + l] = __shfl_xor_sync(half, v, 1);
    __syncwarp(half);
    f[5 * 32 + l] = __shfl_sync(half, v, 0, 16);
    f[6 * 32 + l] = __shfl_down_sync(FULL, v, 4, 8);
    f[7 * 32 + l] = __shfl_sync(half, v, l < 16 ? 20 : 3);
    u[0 * 32 + l] = __ballot_sync(FULL, l % 3 == 0);
    u[1 * 32 + l] = __any_sync(half, l == 5);
    u[2 * 32 + l] = __all_sync(FULL, 1);
    u[3 * 32 + l] = __ballot_sync(half, l & 1);
}

// Any 1-D block; all arrays [grid·blockDim]. Every thread writes its block's sum and max of `in`, then a third
// reduction right after (the sum of 1s, i.e. blockDim) proves that reductions can be chained.
extern "C" __global__ void emu_selftest_block_reduce(float* sum, float* maxv, float* count, const float* in)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = in[i];
    sum[i] = block_sum(v);
    maxv[i] = block_max(v);
    count[i] = block_sum(1.0f);
}

// 32 threads: thread 0 waits at a barrier inside a divergent branch while lanes 1–31 wait for it (alive, so it must
// take part) in a shuffle.
extern "C" __global__ void emu_selftest_deadlock(float* out)
{
    if (threadIdx.x == 0)
        __syncthreads();
    else
        out[threadIdx.x] = __shfl_sync(FULL, 1.0f, 0);
}

// 24 threads of which 20–23 exit at once, the rest use the full mask: as on the GPU, lanes that exited or do not exist
// are not waited for, and reading them gives poison. out [24]: value from lane t ^ 16 (NaN when that lane is absent);
// bits [1]: ballot(true) after a full-mask __syncwarp.
extern "C" __global__ void emu_selftest_partial_warp_full_mask(float* out, unsigned* bits)
{
    int t = threadIdx.x;
    if (t >= 20) return;
    out[t] = __shfl_xor_sync(FULL, (float)t, 16);
    __syncwarp();
    unsigned b = __ballot_sync(FULL, 1);
    if (t == 0) bits[0] = b;
}

// Any grid and 1-D block; g = global thread index. ints: [0] += 1, [1] = max g, [2] = min −g, [3] += 1 by CAS loop,
// [4] = some g by exchange; floats: [0] += 0.5.
extern "C" __global__ void emu_selftest_atomics(int* ints, float* floats)
{
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(&ints[0], 1);
    atomicMax(&ints[1], g);
    atomicMin(&ints[2], -g);
    int old = ints[3], assumed;
    do
    {
        assumed = old;
        old = atomicCAS(&ints[3], assumed, assumed + 1);
    } while (old != assumed);
    atomicExch(&ints[4], g);
    atomicAdd(&floats[0], 0.5f);
}

// 3-D grid and block: out[global linear index] = threadIdx + 10·blockIdx, packed x | y<<8 | z<<16.
extern "C" __global__ void emu_selftest_indices(int* out)
{
    int bx = blockDim.x, by = blockDim.y, bz = blockDim.z;
    int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    int t = threadIdx.x + bx * (threadIdx.y + by * threadIdx.z);
    int x = threadIdx.x + 10 * blockIdx.x, y = threadIdx.y + 10 * blockIdx.y, z = threadIdx.z + 10 * blockIdx.z;
    out[block * bx * by * bz + t] = x | y << 8 | z << 16;
}

VWLMM_KERNEL(emu_selftest_sync_early_return)
VWLMM_KERNEL(emu_selftest_shared)
VWLMM_KERNEL(emu_selftest_shuffle)
VWLMM_KERNEL(emu_selftest_block_reduce)
VWLMM_KERNEL(emu_selftest_deadlock)
VWLMM_KERNEL(emu_selftest_partial_warp_full_mask)
VWLMM_KERNEL(emu_selftest_atomics)
VWLMM_KERNEL(emu_selftest_indices)
