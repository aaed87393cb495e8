using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>Launchers for kernels/attention.cu (fused flash-style attention, forward and backward).</summary>
public sealed unsafe partial class CudaBackend
{
    private const string AttentionModule = "attention";
    private const int DsumRowsPerBlock = 8;
    // kernels/attention.cu's DECODE_KEYS and DECODE_THREADS.
    private const int DecodeKeys = 64, DecodeThreads = 128;

    /// <summary>The entry points of one head dim and the tile sizes of kernels/attention.cu's AttnTiles&lt;D&gt;
    /// (forward BQ×BK, dQ BQD×BK, dK/dV BKB×BQB); every block has 4 threads per tile row.</summary>
    private sealed record AttentionKernels(int D, int BQ, int BK, int BQD, int BKB, int BQB)
    {
        public string Forward { get; } = $"attention_forward_d{D}_f32";
        public string Dkdv { get; } = $"attention_backward_dkdv_d{D}_f32";
        public string Dq { get; } = $"attention_backward_dq_d{D}_f32";
        public string Decode { get; } = $"attention_decode_d{D}_f32";
        private int LD => D + 4;
        public uint ForwardShared => (uint)(((BQ + 2 * BK) * LD + BQ * (BK + 1)) * sizeof(float));
        public uint DqShared => (uint)((2 * (BQD + BK) * LD + BQD * (BK + 1)) * sizeof(float));
        public uint DkdvShared => (uint)((2 * (BKB + BQB) * LD + 2 * BKB * (BQB + 1) + 2 * BQB) * sizeof(float));
    }

    private static readonly AttentionKernels Attention32 = new(32, 32, 32, 32, 32, 32), Attention64 = new(64, 32, 32, 32, 32, 32),
                                             Attention80 = new(80, 32, 16, 32, 32, 16), Attention128 = new(128, 32, 16, 16, 32, 8);

    private static AttentionKernels AttentionKernelsFor(string op, int D) => D switch
    {
        32 => Attention32,
        64 => Attention64,
        80 => Attention80,
        128 => Attention128,
        _ => throw new ArgumentException($"{op}: head dim D={D} has no CUDA kernel (supported: 32, 64, 80, 128)", nameof(D)),
    };

    private static void CheckAttentionAlignment(string op, params ReadOnlySpan<nint> pointers)
    {
        // o, dq, dk and dv rows (D a multiple of 16 floats) are written as float4; inputs are read as floats.
        foreach (nint p in pointers)
            if ((p & 15) != 0) throw new ArgumentException($"{op}: o, dq, dk and dv must be 16-byte aligned on the CUDA backend");
    }

    public void AttentionForward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor? keyLengths,
                                 int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale)
    {
        var kernels = AttentionKernelsFor(nameof(AttentionForward), D);
        if (B == 0 || Tq == 0 || H == 0) return;
        nint po = o.Ptr, pl = lse.Ptr, pq = q.Ptr, pk = k.Ptr, pv = v.Ptr, pn = PtrOrNull(keyLengths);
        CheckAttentionAlignment(nameof(AttentionForward), po);
        if (Tq == 1)
        {
            AttentionDecode(kernels, po, pl, pq, pk, pv, pn, B, Tk, S, H, Hkv, D, scale);
            return;
        }
        int c = causal ? 1 : 0;
        ReadOnlySpan<KernelArg> args = [&po, &pl, &pq, &pk, &pv, &pn, &Tq, &Tk, &S, &H, &Hkv, &c, &scale];
        Launch(AttentionModule, kernels.Forward, (CeilDiv(Tq, kernels.BQ), (uint)H, (uint)B),
               ((uint)(4 * kernels.BQ), 1, 1), kernels.ForwardShared, args);
    }

    /// <summary>
    /// One query per sample, split over chunks of keys, then combined (kernels/attention.cu, "Decode"). The partials
    /// take the scratch buffer sized for all S slots, so a step recorded with Tk = S finds it grown by an eager step
    /// with fewer keys.
    /// </summary>
    private void AttentionDecode(AttentionKernels kernels, nint po, nint pl, nint pq, nint pk, nint pv, nint pn,
                                 int B, int Tk, int S, int H, int Hkv, int D, float scale)
    {
        int chunks = Math.Max(1, (int)CeilDiv(Tk, DecodeKeys));
        nint partial = Scratch((long)B * H * Math.Max(chunks, (int)CeilDiv(S, DecodeKeys)) * (D + 2));
        ReadOnlySpan<KernelArg> args = [&partial, &pq, &pk, &pv, &pn, &Tk, &S, &H, &Hkv, &scale];
        Launch(AttentionModule, kernels.Decode, ((uint)chunks, (uint)H, (uint)B), (DecodeThreads, 1, 1), 0, args);
        ReadOnlySpan<KernelArg> combineArgs = [&po, &pl, &partial, &chunks, &H, &D];
        Launch(AttentionModule, "attention_decode_combine_f32", ((uint)H, (uint)B, 1), (DecodeThreads, 1, 1), 0, combineArgs);
    }

    public void AttentionBackward(Tensor? dq, Tensor? dk, Tensor? dv, Tensor dO, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse,
                                  Tensor? keyLengths, int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale,
                                  bool accumulate)
    {
        var kernels = AttentionKernelsFor(nameof(AttentionBackward), D);
        if (B == 0 || Tq == 0 || H == 0 || Tk == 0 || (dq is null && dk is null && dv is null))
        {
            // Nothing flows, so a store is all zeros.
            if (!accumulate)
                foreach (var g in (ReadOnlySpan<Tensor?>)[dq, dk, dv])
                    if (g is not null) Fill(g, 0f);
            return;
        }
        nint pdq = PtrOrNull(dq), pdk = PtrOrNull(dk), pdv = PtrOrNull(dv), pdo = dO.Ptr, pq = q.Ptr, pk = k.Ptr,
             pv = v.Ptr, po = o.Ptr, pl = lse.Ptr, pn = PtrOrNull(keyLengths);
        CheckAttentionAlignment(nameof(AttentionBackward), pdq, pdk, pdv);
        int c = causal ? 1 : 0, acc = accumulate ? 1 : 0;
        long rows = (long)B * Tq * H;
        nint pds = Scratch(rows);

        ReadOnlySpan<KernelArg> dsumArgs = [&pds, &pdo, &po, &B, &Tq, &H, &D];
        Launch(AttentionModule, "attention_dsum_f32", (CeilDiv(rows, DsumRowsPerBlock), 1, 1), (32 * DsumRowsPerBlock, 1, 1), 0, dsumArgs);
        if (dk is not null || dv is not null)
        {
            // A store covers all S rows: those no query sees are zeroed.
            ReadOnlySpan<KernelArg> args = [&pdk, &pdv, &pdo, &pq, &pk, &pv, &pl, &pds, &pn, &Tq, &Tk, &S, &H, &Hkv, &c, &scale, &acc];
            Launch(AttentionModule, kernels.Dkdv, (CeilDiv(accumulate ? Tk : S, kernels.BKB), (uint)Hkv, (uint)B),
                   ((uint)(4 * kernels.BKB), 1, 1), kernels.DkdvShared, args);
        }
        if (dq is not null)
        {
            ReadOnlySpan<KernelArg> args = [&pdq, &pdo, &pq, &pk, &pv, &pl, &pds, &pn, &Tq, &Tk, &S, &H, &Hkv, &c, &scale, &acc];
            Launch(AttentionModule, kernels.Dq, (CeilDiv(Tq, kernels.BQD), (uint)H, (uint)B),
                   ((uint)(4 * kernels.BQD), 1, 1), kernels.DqShared, args);
        }
    }
}
