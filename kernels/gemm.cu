// gemm.cu — the GEMM of a linear layer whose weight matrix B [N,K] is stored in bf16 (raw unsigned short bits; an
// exact f32 is the bits << 16), beside the cuBLAS SGEMM that does every F32 GEMM.
// bf16_to_f32: widens n elements to f32, a 1-D grid-stride loop (any 1-D grid and block); the launcher widens B a
// chunk of rows at a time into scratch for cuBLAS when A has more rows than gemv_bf16 takes.
// gemv_bf16: C_b [M,N] = alpha·A_b [M,K]·B_b [N,K]ᵀ + beta·C_b for M ≤ GEMV_MAX_M (decoding), grid
// (ceil(N/GEMV_WARPS), min(batch, 65535)), block GEMV_WARPS·32. One warp per row n of B_b reads that row once —
// 8 bf16 per 16-byte load when the row and every row of A are 16-byte aligned (a scalar tail for K mod 8), element by
// element otherwise — and keeps the M dot products in registers; lane partials are summed by a fixed shuffle tree, so
// the result is deterministic without atomics and row i's bits do not depend on M. beta = 0 does not read C.
// Bandwidth-bound: B's 2·N·K bytes are nearly all the traffic, half of what an F32 B moves. Saves nothing.
#include "common.cuh"

#define GEMV_WARPS 4
#define GEMV_MAX_M 4

namespace
{
__device__ __forceinline__ float bf16_to_float(unsigned short bits) { return __uint_as_float((unsigned)bits << 16); }

// The two bf16 values packed in a little-endian 32-bit word: element k in the low half, k + 1 in the high half.
__device__ __forceinline__ float bf16_low(unsigned pair) { return __uint_as_float(pair << 16); }
__device__ __forceinline__ float bf16_high(unsigned pair) { return __uint_as_float(pair & 0xffff0000u); }

template <int M>
__device__ void gemv_bf16_rows(float* C, const float* A, const unsigned short* B, int N, int K, float alpha, float beta,
                               int lda, int ldb, int ldc, long long strideA, long long strideB, long long strideC,
                               int batch)
{
    int lane = (int)(threadIdx.x & 31u);
    int n = (int)blockIdx.x * GEMV_WARPS + (int)(threadIdx.x >> 5);
    if (n >= N) return;
    for (int b = (int)blockIdx.y; b < batch; b += (int)gridDim.y)
    {
        const float* a = A + b * strideA;
        const unsigned short* w = B + b * strideB + (long long)n * ldb;
        float acc[M];
        for (int i = 0; i < M; i++) acc[i] = 0.0f;
        // Pitches that are not multiples of 8 (B) or 4 (A), or offset views, leave rows unaligned: those go element by
        // element, which costs bandwidth but never a misaligned vector load.
        int K8 = aligned16(w) && aligned16(a) && lda % 4 == 0 ? K & ~7 : 0;
        VWLMM_UNROLL(4)
        for (int k = 8 * lane; k < K8; k += 8 * 32)
        {
            uint4 q = *reinterpret_cast<const uint4*>(w + k);
            float wk[8] = {bf16_low(q.x), bf16_high(q.x), bf16_low(q.y), bf16_high(q.y),
                           bf16_low(q.z), bf16_high(q.z), bf16_low(q.w), bf16_high(q.w)};
            for (int i = 0; i < M; i++)
            {
                const float* ai = a + (long long)i * lda + k;
                float4 x0 = *reinterpret_cast<const float4*>(ai), x1 = *reinterpret_cast<const float4*>(ai + 4);
                acc[i] += x0.x * wk[0] + x0.y * wk[1] + x0.z * wk[2] + x0.w * wk[3]
                        + x1.x * wk[4] + x1.y * wk[5] + x1.z * wk[6] + x1.w * wk[7];
            }
        }
        for (int k = K8 + lane; k < K; k += 32)
        {
            float wk = bf16_to_float(w[k]);
            for (int i = 0; i < M; i++) acc[i] += a[(long long)i * lda + k] * wk;
        }
        for (int i = 0; i < M; i++) acc[i] = warp_reduce(acc[i], SumOp(), 32);
        if (lane == 0)
        {
            float* c = C + b * strideC + n;
            for (int i = 0; i < M; i++)
            {
                float* ci = c + (long long)i * ldc;
                *ci = beta == 0.0f ? alpha * acc[i] : alpha * acc[i] + beta * *ci;
            }
        }
    }
}
}  // namespace

// y [n] = x [n] widened to f32, exactly (NaN payloads, infinities, subnormals and signed zeros included).
extern "C" __global__ void bf16_to_f32(float* y, const unsigned short* __restrict__ x, long long n)
{
    GRID_STRIDE_LOOP(i, n) y[i] = bf16_to_float(x[i]);
}

// C_b [M,N] = alpha·A_b [M,K]·B_b [N,K]ᵀ + beta·C_b for b < batch, pitches lda, ldb, ldc and batch strides in elements.
extern "C" __global__ void gemv_bf16(float* C, const float* __restrict__ A, const unsigned short* __restrict__ B,
                                     int M, int N, int K, float alpha, float beta, int lda, int ldb, int ldc,
                                     long long strideA, long long strideB, long long strideC, int batch)
{
    switch (M)
    {
    case 1: gemv_bf16_rows<1>(C, A, B, N, K, alpha, beta, lda, ldb, ldc, strideA, strideB, strideC, batch); break;
    case 2: gemv_bf16_rows<2>(C, A, B, N, K, alpha, beta, lda, ldb, ldc, strideA, strideB, strideC, batch); break;
    case 3: gemv_bf16_rows<3>(C, A, B, N, K, alpha, beta, lda, ldb, ldc, strideA, strideB, strideC, batch); break;
    case GEMV_MAX_M: gemv_bf16_rows<GEMV_MAX_M>(C, A, B, N, K, alpha, beta, lda, ldb, ldc, strideA, strideB, strideC, batch); break;
    // The launcher sends more rows to cuBLAS: anything else here is a launcher bug, not a shape to compute.
    default: __trap();
    }
}

VWLMM_KERNEL(bf16_to_f32)
VWLMM_KERNEL(gemv_bf16)
