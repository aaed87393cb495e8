// embedding.cu — row gather (token embedding lookup, LLaVA splice of image rows into the text sequence), its
// deterministic scatter-add backward, and row scatter (a KV cache append).
// gather_rows_f32: grid R (one block per output row), any 1-D block striding over C.
// gather_rows_backward_f32: grid S, one block per destination row that receives gradient, any 1-D block striding over
// C; the launcher hands it the source rows of every destination, grouped and in increasing r (a counting of the map
// on the host). Each thread owns columns of one destination row and adds the rows of its group in that order into a
// register, so repeated ids (an embedding row hit many times) sum exactly and in a fixed order, with no atomics, and
// every destination row is read and written once. Saves nothing. Rows use float4 when C % 4 == 0 and all base
// pointers are 16-byte aligned.
// scatter_rows_f32: grid R (one block per source row), any 1-D block striding over C. The destination rows are read
// on the device, so a decode step captured in a CUDA graph finds its cache slots in device memory; they are distinct,
// so blocks never write the same row.
#include "common.cuh"

namespace
{
template <int W>
__device__ void copy_row(float* y, const float* src, int C)
{
    for (int i = (int)threadIdx.x * W; i < C; i += (int)blockDim.x * W)
    {
        Vec<W> v = src ? Vec<W>::load(src, i) : Vec<W>{};
        v.store(y, i);
    }
}

template <int W>
__device__ void add_rows(float* dst, const float* dy, const int* rows, int count, int C)
{
    for (int i = (int)threadIdx.x * W; i < C; i += (int)blockDim.x * W)
    {
        Vec<W> acc = Vec<W>::load(dst, i);
        for (int j = 0; j < count; j++)
        {
            Vec<W> d = Vec<W>::load(dy + (long long)rows[j] * C, i);
            for (int k = 0; k < W; k++) acc.v[k] += d.v[k];
        }
        acc.store(dst, i);
    }
}

// The row that map value m names: a row m (m ≥ 0) or b row −2−m (m ≤ −2).
template <class T> __device__ __forceinline__ T* map_row(T* a, T* b, int m, int C)
{
    return m >= 0 ? a + (long long)m * C : b + (long long)(-2 - m) * C;
}
}  // namespace

// y [R,C]: row r = srcA [·,C] row map[r] (≥ 0), srcB [·,C] row −2−map[r] (≤ −2), zeros (−1). Grid R.
extern "C" __global__ void gather_rows_f32(float* y, const float* __restrict__ srcA, const float* __restrict__ srcB,
                                           const int* __restrict__ map, int R, int C)
{
    if ((int)blockIdx.x >= R) return;
    int m = map[blockIdx.x];
    const float* src = m == -1 ? nullptr : map_row(srcA, srcB, m, C);
    float* yr = y + (long long)blockIdx.x * C;
    if (C % 4 == 0 && aligned16(y) && aligned16(srcA) && aligned16(srcB))
        copy_row<4>(yr, src, C);
    else
        copy_row<1>(yr, src, C);
}

// For destination s = blockIdx.x: row dstMap[s] (a map value: ≥ 0 a dSrcA row, ≤ −2 dSrcB row −2−m) += Σ dy [R,C]
// rows order[start[s] .. start[s+1]) in that order. Grid S.
extern "C" __global__ void gather_rows_backward_f32(float* dSrcA, float* dSrcB, const float* __restrict__ dy,
                                                    const int* __restrict__ order, const int* __restrict__ start,
                                                    const int* __restrict__ dstMap, int S, int C)
{
    int s = (int)blockIdx.x;
    if (s >= S) return;
    float* dst = map_row(dSrcA, dSrcB, dstMap[s], C);
    const int* rows = order + start[s];
    int count = start[s + 1] - start[s];
    if (C % 4 == 0 && aligned16(dSrcA) && aligned16(dSrcB) && aligned16(dy))
        add_rows<4>(dst, dy, rows, count, C);
    else
        add_rows<1>(dst, dy, rows, count, C);
}

// dst [·,C] row rows[r] = src [R,C] row r. Grid R.
extern "C" __global__ void scatter_rows_f32(float* dst, const float* __restrict__ src, const int* __restrict__ rows,
                                            int R, int C)
{
    if ((int)blockIdx.x >= R) return;
    float* dr = dst + (long long)rows[blockIdx.x] * C;
    const float* sr = src + (long long)blockIdx.x * C;
    if (C % 4 == 0 && aligned16(dst) && aligned16(src))
        copy_row<4>(dr, sr, C);
    else
        copy_row<1>(dr, sr, C);
}

VWLMM_KERNEL(gather_rows_f32)
VWLMM_KERNEL(gather_rows_backward_f32)
VWLMM_KERNEL(scatter_rows_f32)
