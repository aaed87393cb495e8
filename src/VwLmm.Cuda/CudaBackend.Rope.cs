using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>Launchers for kernels/rope.cu (rotate-half RoPE over [B,T,H,D], one block per (b, t) row).</summary>
public sealed unsafe partial class CudaBackend
{
    private const string RopeModule = "rope";

    /// <summary>About one rotated pair per thread, a multiple of 32 in [32, 256].</summary>
    private static uint RopeThreads(int H, int D) => (uint)Math.Clamp((H * D / 2 + 31) / 32 * 32, 32, 256);

    public void RopeForward(Tensor y, Tensor x, Tensor positions, int B, int T, int H, int D, float theta)
    {
        if (B == 0 || T == 0 || H == 0 || D == 0) return;
        nint py = y.Ptr, px = x.Ptr, pp = positions.Ptr;
        ReadOnlySpan<KernelArg> args = [&py, &px, &pp, &H, &D, &theta];
        Launch(RopeModule, "rope_forward_f32", (checked((uint)((long)B * T)), 1, 1), (RopeThreads(H, D), 1, 1), (uint)(D * sizeof(float)), args);
    }

    public void RopeBackward(Tensor dx, Tensor dy, Tensor positions, int B, int T, int H, int D, float theta, bool accumulate)
    {
        if (B == 0 || T == 0 || H == 0 || D == 0) return;
        nint pdx = dx.Ptr, pdy = dy.Ptr, pp = positions.Ptr;
        int acc = accumulate ? 1 : 0;
        ReadOnlySpan<KernelArg> args = [&pdx, &pdy, &pp, &H, &D, &theta, &acc];
        Launch(RopeModule, "rope_backward_f32", (checked((uint)((long)B * T)), 1, 1), (RopeThreads(H, D), 1, 1), (uint)(D * sizeof(float)), args);
    }
}
