// patch_embed.cu — the patch-embedding kernel: im2col for the ViT patch embedding (a convolution with stride = kernel
// = P and no bias), whose GEMMs run in cuBLAS. Every patch becomes one row of K = Cin·P·P values in w's (ci, ky, kx)
// order, so y [B·Np, C] = cols · wᵀ and dw [C, K] += dyᵀ · cols (CudaBackend.PatchEmbed.cs).
// Launch: im2col_f32 is a 1-D grid-stride loop over the B·Np·K column elements (any 1-D grid and block); consecutive
// threads write consecutive elements and read runs of P contiguous pixels. With stride = P the columns are a
// permutation of the image (minus the border), so saves nothing: backward rebuilds them for one image read and write.
#include "common.cuh"

// cols [B·Np, Cin·P·P] from img [B,Cin,Hi,Wi] (NCHW): row (b, gy, gx) of the (Hi/P)×(Wi/P) grid in row-major order,
// column (ci, ky, kx) = img[b, ci, gy·P + ky, gx·P + kx]. A border narrower than P is dropped.
extern "C" __global__ void im2col_f32(float* cols, const float* __restrict__ img, int B, int Cin, int Hi, int Wi, int P)
{
    int gh = Hi / P, gw = Wi / P, K = Cin * P * P;
    long long n = (long long)B * gh * gw * K;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        long long row = i / K;
        int k = (int)(i - row * K);
        int kx = k % P, ky = k / P % P, ci = k / (P * P);
        int gx = (int)(row % gw), gy = (int)(row / gw % gh), b = (int)(row / ((long long)gw * gh));
        cols[i] = img[(((long long)b * Cin + ci) * Hi + gy * P + ky) * Wi + gx * P + kx];
    }
}

VWLMM_KERNEL(im2col_f32)
