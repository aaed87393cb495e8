// attention.cu — fused scaled-dot-product attention in fp32, FlashAttention-2 structure, no T×T matrix in memory.
// Layouts (IBackend.AttentionForward): q, o, dO [B,Tq,H,D]; k, v, dk, dv [B,S,Hkv,D] of which rows [0, Tk) are used;
// lse, dsum [B,H,Tq]. Query head h reads kv head h/(H/Hkv). Query t sees the key prefix [0, n(t)) with
// n(t) = min(Tk, keyLengths[b], causal ? t+Tk−Tq+1 : Tk): bottom-right causal alignment and key padding are both upper
// bounds, so a tile loop stops at the last row's n and masks the others per row.
// Every block has 4 threads per row of its tile: S = Q·Kᵀ is split over keys (thread part p takes keys p, p+4, …),
// output rows over D (part p owns float4 columns 4p, 4p+16, …, conflict-free in shared memory). Entry points exist
// for D = 32, 64, 80, 128 (templates take any multiple of 16 up to 128); tiles keep dynamic shared memory under 48 KiB
// (AttnTiles, mirrored by CudaBackend.Attention.cs). Softmax runs in the log2 domain: p = exp2(s·scale·log2e − m).
// Forward: grid (ceil(Tq/BQ), H, B), block 4·BQ; streams K/V tiles through shared memory with an online softmax;
//   writes o and saves lse (natural log; −inf and o = 0 for a query with no visible key).
// Backward (recomputes p from lse, accumulates += or, with accumulate = 0, stores, null outputs skipped, no atomics):
//   attention_dsum_f32: dsum = rowsum(dO∘o), one warp per row;
//   dK/dV: grid (ceil(Tk/BKB), Hkv, B) (ceil(S/BKB) when storing, so that rows no query sees are zeroed), block
//     4·BKB; a block owns its key rows and loops over the query tiles of all H/Hkv query heads of its group, so dk/dv
//     are written once, in a fixed order;
//   dQ: grid (ceil(Tq/BQD), H, B), block 4·BQD; a block owns its query rows and loops over the key tiles.
// Decode (Tq = 1, split over keys as in flash-decoding): the forward's 32-row tiles would leave 31 rows idle and one
// block per head walking every key tile in turn, so
//   attention_decode_d<D>_f32: grid (ceil(Tk/DECODE_KEYS), H, B), block DECODE_THREADS; a block scores its chunk of
//     keys (two threads per key), takes the chunk's max m and sum l of exp2(s − m) and its unnormalised output
//     Σ p·v (D columns × G = DECODE_THREADS/D key groups, summed in group order), and saves (m, l, Σ p·v) in
//     partial [B,H,chunks,D+2]; a chunk past the sample's keys saves l = 0 only;
//   attention_decode_combine_f32: grid (H, B), any 1-D block; rescales the chunks to their common max in chunk order
//     (deterministic; empty chunks skipped, so a grid sized for the whole cache gives the bits of one sized for the
//     keys in use) and writes o and lse as the forward does.
#include "common.cuh"

#define VWLMM_LOG2E 1.4426950408889634f
#define VWLMM_LN2 0.6931471805599453f

// Tile sizes per head dim: the forward tiles BQ query rows × BK key rows, dQ BQD × BK, dK/dV BKB key rows × BQB
// query rows. The row stride in shared memory is D+4 floats: float4-aligned, and rows 4 floats apart land on different
// banks.
template <int D> struct AttnTiles
{
    static_assert(D % 16 == 0 && D <= 128, "head dim must be a multiple of 16, at most 128");
    static constexpr int LD = D + 4;
    static constexpr int BQ = 32, BK = D > 64 ? 16 : 32, BQD = D > 80 ? 16 : 32;
    static constexpr int BKB = 32, BQB = D > 80 ? 8 : D > 64 ? 16 : 32;
};

struct AttnShape
{
    int Tq, Tk, S, H, Hkv, causal;
    // Visible key prefix length of query t of a sample whose key-padding limit is len (≤ Tk).
    __device__ __forceinline__ int visible(int t, int len) const
    {
        return max(0, causal ? min(len, t + Tk - Tq + 1) : len);
    }
};

__device__ __forceinline__ int key_limit(const int* keyLengths, int b, int Tk)
{
    return keyLengths ? min(Tk, keyLengths[b]) : Tk;
}

// dst [rows, LD] (shared) = src rows [0, rows) of stride `stride` (global); rows ≥ valid become 0 and are never read
// from global memory (cache rows past Tk may hold anything).
template <int D>
__device__ __forceinline__ void load_rows(float* dst, const float* src, long long stride, int rows, int valid)
{
    for (int i = (int)threadIdx.x; i < rows * D; i += (int)blockDim.x)
    {
        int r = i / D, d = i - r * D;
        dst[r * AttnTiles<D>::LD + d] = r < valid ? src[r * stride + d] : 0.0f;
    }
}

// out[i] = a · rows[part + 4i] for shared rows of stride LD: each float4 of `a` is read once for all N rows.
template <int D, int N>
__device__ __forceinline__ void row_dots(float (&out)[N], const float* a, const float* rows, int part)
{
    for (int i = 0; i < N; i++) out[i] = 0.0f;
    for (int d = 0; d < D; d += 4)
    {
        float4 x = *reinterpret_cast<const float4*>(a + d);
        for (int i = 0; i < N; i++)
        {
            float4 y = *reinterpret_cast<const float4*>(rows + (part + 4 * i) * AttnTiles<D>::LD + d);
            out[i] += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
        }
    }
}

// acc[c] (+)= w · row[4·part + 16·c .. +4): this thread's float4 columns of a shared row.
template <int D> __device__ __forceinline__ void axpy_columns(float4* acc, float w, const float* row, int part)
{
    for (int c = 0; c < D / 16; c++)
    {
        float4 x = *reinterpret_cast<const float4*>(row + 4 * part + 16 * c);
        acc[c].x += w * x.x;
        acc[c].y += w * x.y;
        acc[c].z += w * x.z;
        acc[c].w += w * x.w;
    }
}

// Reduces over the 4 threads of a row (adjacent lanes of one warp; every lane of the warp calls).
template <class Op> __device__ __forceinline__ float quad_reduce(float v, Op op)
{
    v = op(v, __shfl_xor_sync(VWLMM_FULL_MASK, v, 1));
    return op(v, __shfl_xor_sync(VWLMM_FULL_MASK, v, 2));
}

template <int D>
__device__ void attention_forward(float* o, float* lse, const float* q, const float* k, const float* v,
                                  const int* keyLengths, AttnShape sh, float scale)
{
    using T = AttnTiles<D>;
    constexpr int BQ = T::BQ, BK = T::BK, LD = T::LD, PL = BK + 1;
    EXTERN_SHARED(float, smem);
    float* sq = smem;
    float* sk = sq + BQ * LD;
    float* sv = sk + BK * LD;
    float* sp = sv + BK * LD;  // [BQ, BK+1] probabilities of the current key tile

    int r = (int)threadIdx.x >> 2, part = (int)threadIdx.x & 3;
    int b = (int)blockIdx.z, h = (int)blockIdx.y, t0 = (int)blockIdx.x * BQ, t = t0 + r;
    int hk = h / (sh.H / sh.Hkv), len = key_limit(keyLengths, b, sh.Tk);
    int n = sh.visible(t, len), nmax = sh.visible(min(t0 + BQ, sh.Tq) - 1, len);
    long long qStride = (long long)sh.H * D, kStride = (long long)sh.Hkv * D;
    const float* kb = k + (long long)b * sh.S * kStride + (long long)hk * D;
    const float* vb = v + (long long)b * sh.S * kStride + (long long)hk * D;
    load_rows<D>(sq, q + ((long long)b * sh.Tq + t0) * qStride + (long long)h * D, qStride, BQ, sh.Tq - t0);

    float4 acc[D / 16] = {};
    float m = -INFINITY, l = 0.0f, scale2 = scale * VWLMM_LOG2E;
    for (int j0 = 0; j0 < nmax; j0 += BK)
    {
        __syncthreads();  // the previous tile is consumed (and, the first time, sq is loaded)
        load_rows<D>(sk, kb + j0 * kStride, kStride, BK, nmax - j0);
        load_rows<D>(sv, vb + j0 * kStride, kStride, BK, nmax - j0);
        __syncthreads();
        float s[BK / 4], tileMax = -INFINITY;
        row_dots<D>(s, sq + r * LD, sk, part);
        for (int i = 0; i < BK / 4; i++)
        {
            s[i] = j0 + part + 4 * i < n ? s[i] * scale2 : -INFINITY;
            tileMax = fmaxf(tileMax, s[i]);
        }
        float mNew = fmaxf(m, quad_reduce(tileMax, MaxOp()));
        // While nothing is visible mNew is −inf: keep p = 0 and avoid exp2(−inf − −inf).
        bool any = mNew != -INFINITY;
        float alpha = any ? exp2f(m - mNew) : 1.0f, sum = 0.0f;
        for (int i = 0; i < BK / 4; i++)
        {
            float p = any ? exp2f(s[i] - mNew) : 0.0f;
            sp[r * PL + part + 4 * i] = p;
            sum += p;
        }
        l = l * alpha + quad_reduce(sum, SumOp());
        m = mNew;
        __syncwarp();
        for (int c = 0; c < D / 16; c++)
        {
            acc[c].x *= alpha;
            acc[c].y *= alpha;
            acc[c].z *= alpha;
            acc[c].w *= alpha;
        }
        for (int c = 0; c < BK; c++) axpy_columns<D>(acc, sp[r * PL + c], sv + c * LD, part);
    }
    if (t >= sh.Tq) return;
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float* orow = o + ((long long)b * sh.Tq + t) * qStride + (long long)h * D;
    for (int c = 0; c < D / 16; c++)
        *reinterpret_cast<float4*>(orow + 4 * part + 16 * c) =
            make_float4(acc[c].x * inv, acc[c].y * inv, acc[c].z * inv, acc[c].w * inv);
    if (part == 0) lse[((long long)b * sh.H + h) * sh.Tq + t] = l > 0.0f ? (m + log2f(l)) * VWLMM_LN2 : -INFINITY;
}

#define DECODE_KEYS 64
#define DECODE_THREADS 128

template <int D>
__device__ void attention_decode(float* partial, const float* q, const float* k, const float* v, const int* keyLengths,
                                 int Tk, int S, int H, int Hkv, float scale)
{
    constexpr int G = DECODE_THREADS / D >= 1 ? DECODE_THREADS / D : 1, WARPS = DECODE_THREADS / 32;
    __shared__ float sq[D], sp[DECODE_KEYS], sacc[G][D], warpMax[WARPS], warpSum[WARPS];
    int c = (int)blockIdx.x, h = (int)blockIdx.y, b = (int)blockIdx.z, tid = (int)threadIdx.x;
    int j0 = c * DECODE_KEYS, n = min(DECODE_KEYS, key_limit(keyLengths, b, Tk) - j0);
    float* out = partial + (((long long)b * H + h) * gridDim.x + c) * (D + 2);
    if (n <= 0)
    {
        if (tid == 0) out[1] = 0.0f;
        return;
    }
    long long kStride = (long long)Hkv * D;
    long long base = ((long long)b * S + j0) * kStride + (long long)(h / (H / Hkv)) * D;
    for (int d = tid; d < D; d += DECODE_THREADS) sq[d] = q[((long long)b * H + h) * D + d];
    __syncthreads();

    // Thread pair (2·key, 2·key + 1) sums the two halves of q·k.
    int key = tid >> 1, half = tid & 1, warp = tid >> 5, lane = tid & 31;
    float s = 0.0f;
    if (key < n)
    {
        const float* kr = k + base + key * kStride + half * (D / 2);
        for (int d = 0; d < D / 2; d++) s += sq[half * (D / 2) + d] * kr[d];
    }
    s += __shfl_xor_sync(VWLMM_FULL_MASK, s, 1);
    s = key < n ? s * scale * VWLMM_LOG2E : -INFINITY;
    float m = warp_reduce(s, MaxOp(), 32);
    if (lane == 0) warpMax[warp] = m;
    __syncthreads();
    for (int w = 0; w < WARPS; w++) m = fmaxf(m, warpMax[w]);
    float p = key < n ? exp2f(s - m) : 0.0f;
    if (half == 0) sp[key] = p;
    float l = warp_reduce(half == 0 ? p : 0.0f, SumOp(), 32);
    if (lane == 0) warpSum[warp] = l;
    __syncthreads();

    int g = tid / D, d = tid - g * D;
    if (g < G)
    {
        const float* vc = v + base + d;
        float a = 0.0f;
        for (int j = g; j < n; j += G) a += sp[j] * vc[j * kStride];
        sacc[g][d] = a;
    }
    __syncthreads();
    if (tid < D)
    {
        float a = sacc[0][tid];
        for (int i = 1; i < G; i++) a += sacc[i][tid];
        out[2 + tid] = a;
    }
    if (tid == 0)
    {
        float total = 0.0f;
        for (int w = 0; w < WARPS; w++) total += warpSum[w];
        out[0] = m;
        out[1] = total;
    }
}

extern "C" __global__ void attention_decode_combine_f32(float* o, float* lse, const float* __restrict__ partial, int chunks,
                                                       int H, int D)
{
    int h = (int)blockIdx.x, b = (int)blockIdx.y;
    const float* p = partial + ((long long)b * H + h) * chunks * (D + 2);
    float m = -INFINITY, l = 0.0f;
    for (int c = 0; c < chunks; c++)
        if (p[c * (D + 2) + 1] > 0.0f) m = fmaxf(m, p[c * (D + 2)]);
    for (int c = 0; c < chunks; c++)
        if (p[c * (D + 2) + 1] > 0.0f) l += p[c * (D + 2) + 1] * exp2f(p[c * (D + 2)] - m);
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int d = (int)threadIdx.x; d < D; d += (int)blockDim.x)
    {
        float a = 0.0f;
        for (int c = 0; c < chunks; c++)
            if (p[c * (D + 2) + 1] > 0.0f) a += p[c * (D + 2) + 2 + d] * exp2f(p[c * (D + 2)] - m);
        o[((long long)b * H + h) * D + d] = a * inv;
    }
    if (threadIdx.x == 0) lse[(long long)b * H + h] = l > 0.0f ? (m + log2f(l)) * VWLMM_LN2 : -INFINITY;
}

// dsum [B,H,Tq] = Σ_d dO·o per query row (row i of [B·Tq·H] rows); block = 8 warps, one row each.
extern "C" __global__ void attention_dsum_f32(float* dsum, const float* __restrict__ dO, const float* __restrict__ o,
                                              int B, int Tq, int H, int D)
{
    long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= (long long)B * Tq * H) return;
    const float* a = dO + row * D;
    const float* c = o + row * D;
    float s = 0.0f;
    for (int d = (int)(threadIdx.x & 31u); d < D; d += 32) s += a[d] * c[d];
    s = warp_reduce(s, SumOp(), 32);
    int h = (int)(row % H);
    long long bt = row / H;
    int t = (int)(bt % Tq), b = (int)(bt / Tq);
    if ((threadIdx.x & 31u) == 0) dsum[((long long)b * H + h) * Tq + t] = s;
}

template <int D>
__device__ void attention_backward_dkdv(float* dk, float* dv, const float* dO, const float* q, const float* k,
                                        const float* v, const float* lse, const float* dsum, const int* keyLengths,
                                        AttnShape sh, float scale, int accumulate)
{
    using T = AttnTiles<D>;
    constexpr int BKB = T::BKB, BQB = T::BQB, LD = T::LD, PL = BQB + 1;
    EXTERN_SHARED(float, smem);
    float* sk = smem;
    float* sv = sk + BKB * LD;
    float* sq = sv + BKB * LD;
    float* sdo = sq + BQB * LD;
    float* sp = sdo + BQB * LD;   // [BKB, BQB+1] p, transposed: row = key
    float* sds = sp + BKB * PL;   // [BKB, BQB+1] dS = p·(dP − dsum)
    float* slse = sds + BKB * PL; // [BQB] lse·log2e
    float* sdsum = slse + BQB;    // [BQB]

    int c = (int)threadIdx.x >> 2, part = (int)threadIdx.x & 3;
    int b = (int)blockIdx.z, hk = (int)blockIdx.y, j0 = (int)blockIdx.x * BKB, j = j0 + c;
    int len = key_limit(keyLengths, b, sh.Tk), group = sh.H / sh.Hkv;
    long long qStride = (long long)sh.H * D, kStride = (long long)sh.Hkv * D;
    long long row = (long long)b * sh.S * kStride + (long long)j * kStride + (long long)hk * D;
    if (j0 >= len)  // no query sees these keys: their gradients are 0
    {
        if (!accumulate && j < sh.S)
            for (int d = part; d < D; d += 4)
            {
                if (dk) dk[row + d] = 0.0f;
                if (dv) dv[row + d] = 0.0f;
            }
        return;
    }
    long long kvOffset = (long long)b * sh.S * kStride + (long long)j0 * kStride + (long long)hk * D;
    load_rows<D>(sk, k + kvOffset, kStride, BKB, len - j0);
    load_rows<D>(sv, v + kvOffset, kStride, BKB, len - j0);
    // The first query that sees key j0 under the causal limit j ≤ t + Tk − Tq.
    int tFirst = sh.causal ? max(0, j0 - (sh.Tk - sh.Tq)) : 0;
    tFirst -= tFirst % BQB;
    float scale2 = scale * VWLMM_LOG2E;

    float4 accK[D / 16] = {}, accV[D / 16] = {};
    for (int g = 0; g < group; g++)
    {
        int h = hk * group + g;
        const float* lseRow = lse + ((long long)b * sh.H + h) * sh.Tq;
        const float* dsumRow = dsum + ((long long)b * sh.H + h) * sh.Tq;
        for (int t0 = tFirst; t0 < sh.Tq; t0 += BQB)
        {
            __syncthreads();  // the previous query tile is consumed (and, the first time, sk/sv are loaded)
            long long qOffset = ((long long)b * sh.Tq + t0) * qStride + (long long)h * D;
            load_rows<D>(sq, q + qOffset, qStride, BQB, sh.Tq - t0);
            load_rows<D>(sdo, dO + qOffset, qStride, BQB, sh.Tq - t0);
            if ((int)threadIdx.x < BQB)
            {
                int t = t0 + (int)threadIdx.x;
                slse[threadIdx.x] = t < sh.Tq ? lseRow[t] * VWLMM_LOG2E : 0.0f;
                sdsum[threadIdx.x] = t < sh.Tq ? dsumRow[t] : 0.0f;
            }
            __syncthreads();
            float s[BQB / 4], dp[BQB / 4];
            row_dots<D>(s, sk + c * LD, sq, part);
            row_dots<D>(dp, sv + c * LD, sdo, part);
            for (int i = 0; i < BQB / 4; i++)
            {
                int rr = part + 4 * i, t = t0 + rr;
                float p = t < sh.Tq && j < sh.visible(t, len) ? exp2f(s[i] * scale2 - slse[rr]) : 0.0f;
                sp[c * PL + rr] = p;
                sds[c * PL + rr] = p * (dp[i] - sdsum[rr]);
            }
            __syncwarp();
            for (int rr = 0; rr < BQB; rr++)
            {
                axpy_columns<D>(accV, sp[c * PL + rr], sdo + rr * LD, part);
                axpy_columns<D>(accK, sds[c * PL + rr], sq + rr * LD, part);
            }
        }
    }
    // Rows in [len, Tk) got no contribution: they are zeroed when storing (acc is 0 there), else left alone; rows
    // ≥ Tk are this launch's only when storing.
    if (j >= sh.S || (accumulate && j >= len)) return;
    float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int cc = 0; cc < D / 16; cc++)
    {
        int d = 4 * part + 16 * cc;
        if (dk)
        {
            float4* p = reinterpret_cast<float4*>(dk + row + d);
            float4 x = accumulate ? *p : zero;
            *p = make_float4(x.x + scale * accK[cc].x, x.y + scale * accK[cc].y, x.z + scale * accK[cc].z,
                             x.w + scale * accK[cc].w);
        }
        if (dv)
        {
            float4* p = reinterpret_cast<float4*>(dv + row + d);
            float4 x = accumulate ? *p : zero;
            *p = make_float4(x.x + accV[cc].x, x.y + accV[cc].y, x.z + accV[cc].z, x.w + accV[cc].w);
        }
    }
}

template <int D>
__device__ void attention_backward_dq(float* dq, const float* dO, const float* q, const float* k, const float* v,
                                      const float* lse, const float* dsum, const int* keyLengths, AttnShape sh,
                                      float scale, int accumulate)
{
    using T = AttnTiles<D>;
    constexpr int BQ = T::BQD, BK = T::BK, LD = T::LD, PL = BK + 1;
    EXTERN_SHARED(float, smem);
    float* sq = smem;
    float* sdo = sq + BQ * LD;
    float* sk = sdo + BQ * LD;
    float* sv = sk + BK * LD;
    float* sds = sv + BK * LD;  // [BQ, BK+1]

    int r = (int)threadIdx.x >> 2, part = (int)threadIdx.x & 3;
    int b = (int)blockIdx.z, h = (int)blockIdx.y, t0 = (int)blockIdx.x * BQ, t = t0 + r;
    int hk = h / (sh.H / sh.Hkv), len = key_limit(keyLengths, b, sh.Tk);
    int n = t < sh.Tq ? sh.visible(t, len) : 0, nmax = sh.visible(min(t0 + BQ, sh.Tq) - 1, len);
    long long qStride = (long long)sh.H * D, kStride = (long long)sh.Hkv * D;
    long long qOffset = ((long long)b * sh.Tq + t0) * qStride + (long long)h * D;
    load_rows<D>(sq, q + qOffset, qStride, BQ, sh.Tq - t0);
    load_rows<D>(sdo, dO + qOffset, qStride, BQ, sh.Tq - t0);
    const float* kb = k + (long long)b * sh.S * kStride + (long long)hk * D;
    const float* vb = v + (long long)b * sh.S * kStride + (long long)hk * D;
    long long stat = ((long long)b * sh.H + h) * sh.Tq + t;
    float lse2 = n > 0 ? lse[stat] * VWLMM_LOG2E : 0.0f, ds0 = n > 0 ? dsum[stat] : 0.0f;
    float scale2 = scale * VWLMM_LOG2E;

    float4 acc[D / 16] = {};
    for (int j0 = 0; j0 < nmax; j0 += BK)
    {
        __syncthreads();
        load_rows<D>(sk, kb + j0 * kStride, kStride, BK, nmax - j0);
        load_rows<D>(sv, vb + j0 * kStride, kStride, BK, nmax - j0);
        __syncthreads();
        float s[BK / 4], dp[BK / 4];
        row_dots<D>(s, sq + r * LD, sk, part);
        row_dots<D>(dp, sdo + r * LD, sv, part);
        for (int i = 0; i < BK / 4; i++)
        {
            int cc = part + 4 * i;
            float p = j0 + cc < n ? exp2f(s[i] * scale2 - lse2) : 0.0f;
            sds[r * PL + cc] = p * (dp[i] - ds0);
        }
        __syncwarp();
        for (int cc = 0; cc < BK; cc++) axpy_columns<D>(acc, sds[r * PL + cc], sk + cc * LD, part);
    }
    if (t >= sh.Tq) return;
    float* row = dq + ((long long)b * sh.Tq + t) * qStride + (long long)h * D;
    for (int c = 0; c < D / 16; c++)
    {
        float4* p = reinterpret_cast<float4*>(row + 4 * part + 16 * c);
        float4 x = accumulate ? *p : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        *p = make_float4(x.x + scale * acc[c].x, x.y + scale * acc[c].y, x.z + scale * acc[c].z, x.w + scale * acc[c].w);
    }
}

// One entry point per pass and supported head dim (attention_<pass>_d<D>_f32). Each is written out with its body on
// a line of its own: NVRTC 11.2 with -lineinfo recurses until it crashes on a kernel defined on one source line
// (as a macro expansion would be).
#define ATTENTION_SHAPE_PARAMS const int* __restrict__ keyLengths, int Tq, int Tk, int S, int H, int Hkv, int causal, float scale
#define ATTENTION_SHAPE_ARGS keyLengths, AttnShape{Tq, Tk, S, H, Hkv, causal}, scale
#define ATTENTION_FORWARD_PARAMS                                                                                     \
    float* o, float* lse, const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,      \
        ATTENTION_SHAPE_PARAMS
#define ATTENTION_FORWARD_ARGS o, lse, q, k, v, ATTENTION_SHAPE_ARGS
#define ATTENTION_DKDV_PARAMS                                                                                        \
    float* dk, float* dv, const float* __restrict__ dO, const float* __restrict__ q, const float* __restrict__ k,     \
        const float* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ dsum, ATTENTION_SHAPE_PARAMS, \
        int accumulate
#define ATTENTION_DKDV_ARGS dk, dv, dO, q, k, v, lse, dsum, ATTENTION_SHAPE_ARGS, accumulate
#define ATTENTION_DQ_PARAMS                                                                                          \
    float* dq, const float* __restrict__ dO, const float* __restrict__ q, const float* __restrict__ k,                \
        const float* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ dsum, ATTENTION_SHAPE_PARAMS, \
        int accumulate
#define ATTENTION_DQ_ARGS dq, dO, q, k, v, lse, dsum, ATTENTION_SHAPE_ARGS, accumulate

extern "C" __global__ void attention_forward_d32_f32(ATTENTION_FORWARD_PARAMS)
{ attention_forward<32>(ATTENTION_FORWARD_ARGS); }

extern "C" __global__ void attention_forward_d64_f32(ATTENTION_FORWARD_PARAMS)
{ attention_forward<64>(ATTENTION_FORWARD_ARGS); }

extern "C" __global__ void attention_forward_d80_f32(ATTENTION_FORWARD_PARAMS)
{ attention_forward<80>(ATTENTION_FORWARD_ARGS); }

extern "C" __global__ void attention_forward_d128_f32(ATTENTION_FORWARD_PARAMS)
{ attention_forward<128>(ATTENTION_FORWARD_ARGS); }

#define ATTENTION_DECODE_PARAMS                                                                                      \
    float* partial, const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,            \
        const int* __restrict__ keyLengths, int Tk, int S, int H, int Hkv, float scale
#define ATTENTION_DECODE_ARGS partial, q, k, v, keyLengths, Tk, S, H, Hkv, scale

extern "C" __global__ void attention_decode_d32_f32(ATTENTION_DECODE_PARAMS)
{ attention_decode<32>(ATTENTION_DECODE_ARGS); }

extern "C" __global__ void attention_decode_d64_f32(ATTENTION_DECODE_PARAMS)
{ attention_decode<64>(ATTENTION_DECODE_ARGS); }

extern "C" __global__ void attention_decode_d80_f32(ATTENTION_DECODE_PARAMS)
{ attention_decode<80>(ATTENTION_DECODE_ARGS); }

extern "C" __global__ void attention_decode_d128_f32(ATTENTION_DECODE_PARAMS)
{ attention_decode<128>(ATTENTION_DECODE_ARGS); }

extern "C" __global__ void attention_backward_dkdv_d32_f32(ATTENTION_DKDV_PARAMS)
{ attention_backward_dkdv<32>(ATTENTION_DKDV_ARGS); }

extern "C" __global__ void attention_backward_dkdv_d64_f32(ATTENTION_DKDV_PARAMS)
{ attention_backward_dkdv<64>(ATTENTION_DKDV_ARGS); }

extern "C" __global__ void attention_backward_dkdv_d80_f32(ATTENTION_DKDV_PARAMS)
{ attention_backward_dkdv<80>(ATTENTION_DKDV_ARGS); }

extern "C" __global__ void attention_backward_dkdv_d128_f32(ATTENTION_DKDV_PARAMS)
{ attention_backward_dkdv<128>(ATTENTION_DKDV_ARGS); }

extern "C" __global__ void attention_backward_dq_d32_f32(ATTENTION_DQ_PARAMS)
{ attention_backward_dq<32>(ATTENTION_DQ_ARGS); }

extern "C" __global__ void attention_backward_dq_d64_f32(ATTENTION_DQ_PARAMS)
{ attention_backward_dq<64>(ATTENTION_DQ_ARGS); }

extern "C" __global__ void attention_backward_dq_d80_f32(ATTENTION_DQ_PARAMS)
{ attention_backward_dq<80>(ATTENTION_DQ_ARGS); }

extern "C" __global__ void attention_backward_dq_d128_f32(ATTENTION_DQ_PARAMS)
{ attention_backward_dq<128>(ATTENTION_DQ_ARGS); }

VWLMM_KERNEL(attention_forward_d32_f32)
VWLMM_KERNEL(attention_forward_d64_f32)
VWLMM_KERNEL(attention_forward_d80_f32)
VWLMM_KERNEL(attention_forward_d128_f32)
VWLMM_KERNEL(attention_decode_d32_f32)
VWLMM_KERNEL(attention_decode_d64_f32)
VWLMM_KERNEL(attention_decode_d80_f32)
VWLMM_KERNEL(attention_decode_d128_f32)
VWLMM_KERNEL(attention_decode_combine_f32)
VWLMM_KERNEL(attention_backward_dkdv_d32_f32)
VWLMM_KERNEL(attention_backward_dkdv_d64_f32)
VWLMM_KERNEL(attention_backward_dkdv_d80_f32)
VWLMM_KERNEL(attention_backward_dkdv_d128_f32)
VWLMM_KERNEL(attention_backward_dq_d32_f32)
VWLMM_KERNEL(attention_backward_dq_d64_f32)
VWLMM_KERNEL(attention_backward_dq_d80_f32)
VWLMM_KERNEL(attention_backward_dq_d128_f32)
VWLMM_KERNEL(attention_dsum_f32)
