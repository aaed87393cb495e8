namespace VwLmm.Cuda;

/// <summary>
/// The work of one CUDA backend op call: DRAM bytes it must move and floating-point operations it performs. This is
/// the cost model of docs/KERNELS.md in one place; `vwlmm bench --device cuda` divides it by measured time.
/// Bytes are compulsory traffic (each tensor read or written once; an accumulated output counts as read + write), except
/// the vocab kernels, whose second sweep over a row is counted as DRAM traffic as KERNELS.md's table does. Flops count
/// a multiply-add as 2 and a transcendental (exp, erf) as 10, so element-wise figures are nominal.
/// </summary>
public readonly record struct KernelCost(double Bytes, double Flops)
{
    private const double F = sizeof(float);
    private const double Transcendental = 10;

    public static KernelCost operator +(KernelCost a, KernelCost b) => new(a.Bytes + b.Bytes, a.Flops + b.Flops);

    /// <summary>C [M,N] (+)= op(A)·op(B) per batch item: 2MNK flops; A and B read, C written (and read when accumulating).</summary>
    public static KernelCost Gemm(long m, long n, long k, long batch = 1, bool accumulate = false) =>
        new(F * batch * (m * k + k * n + m * n * (accumulate ? 2 : 1)), 2.0 * batch * m * n * k);

    /// <summary>C [M,N] = A·Bᵀ per batch item with B [N,K] in bf16 (a linear layer's weights): 2MNK flops; A read, B read
    /// at 2 bytes an element, C written.</summary>
    public static KernelCost GemmBf16(long m, long n, long k, long batch = 1) =>
        new(batch * (F * (m * k + m * n) + 2.0 * k * n), 2.0 * batch * m * n * k);

    /// <summary>Query–key pairs scored by attention: Σ_t n(t), n(t) = min(Tk, t+Tk−Tq+1) when causal, else Tk.</summary>
    public static long VisiblePairs(int Tq, int Tk, bool causal)
    {
        if (!causal) return (long)Tq * Tk;
        long pairs = 0;
        for (int t = 0; t < Tq; t++) pairs += Math.Clamp(t + Tk - Tq + 1, 0, Tk);
        return pairs;
    }

    /// <summary>Flash forward: S = Q·Kᵀ and O = P·V are 4·D flops per visible pair (the exp2 per pair is not counted);
    /// q, o [B,Tq,H,D] and k, v [B,Tk,Hkv,D] once, lse [B,H,Tq] written.</summary>
    public static KernelCost AttentionForward(int B, int Tq, int Tk, int H, int Hkv, int D, bool causal) =>
        new(F * ((double)B * Tq * H * D * 2 + (double)B * Tk * Hkv * D * 2 + (double)B * H * Tq),
            4.0 * B * H * VisiblePairs(Tq, Tk, causal) * D);

    /// <summary>dsum + dK/dV + dQ passes: 7/2 of the forward's flops (S and dP recomputed in both passes); q, o, dO and
    /// k, v read, dq, dk, dv accumulated, lse read, dsum written and read.</summary>
    public static KernelCost AttentionBackward(int B, int Tq, int Tk, int H, int Hkv, int D, bool causal) =>
        new(F * ((double)B * Tq * H * D * 5 + (double)B * Tk * Hkv * D * 6 + 3.0 * B * H * Tq),
            14.0 * B * H * VisiblePairs(Tq, Tk, causal) * D);

    /// <summary>x [N,C] read, y written, mean/rstd [N] saved; 6 flops per element (mean, centred sum of squares, scale-shift).</summary>
    public static KernelCost LayerNormForward(long N, long C) => new(F * (2.0 * N * C + 2 * N + 2 * C), 6.0 * N * C);

    /// <summary>dy, x read, dx accumulated, one [C] partial row of dγ and dβ per 32-row block written and summed; 13 flops per element.</summary>
    public static KernelCost LayerNormBackward(long N, long C) =>
        new(F * (4.0 * N * C + 2 * N + 2.0 * 2 * PartialRows(N) * C + 2.0 * 2 * C), 13.0 * N * C);

    /// <summary>x [N,C] read, y written, rstd [N] saved; 4 flops per element.</summary>
    public static KernelCost RmsNormForward(long N, long C) => new(F * (2.0 * N * C + N + C), 4.0 * N * C);

    /// <summary>dy, x read, dx accumulated, dγ partial rows written and summed; 10 flops per element.</summary>
    public static KernelCost RmsNormBackward(long N, long C) =>
        new(F * (4.0 * N * C + N + 2.0 * PartialRows(N) * C + 2.0 * C), 10.0 * N * C);

    private static long PartialRows(long N) => (N + 31) / 32;

    /// <summary>y = act(x) over [n]: 8 bytes and one transcendental + 4 flops per element.</summary>
    public static KernelCost ActivationForward(long n) => new(F * 2 * n, (Transcendental + 4) * n);

    /// <summary>dx += act'(x)·dy: dy, x read, dx accumulated; two transcendentals + 4 flops per element.</summary>
    public static KernelCost ActivationBackward(long n) => new(F * 4 * n, (2 * Transcendental + 4) * n);

    /// <summary>y = silu(gate)·up: 12 bytes, one exp + 3 flops per element.</summary>
    public static KernelCost SwiGluForward(long n) => new(F * 3 * n, (Transcendental + 3) * n);

    /// <summary>dgate, dup accumulated from dy, gate, up: 28 bytes, one exp + 8 flops per element.</summary>
    public static KernelCost SwiGluBackward(long n) => new(F * 7 * n, (Transcendental + 8) * n);

    /// <summary>Dropout storing y: x read, y written; the mask's SplitMix64 counted as 8 operations per element.</summary>
    public static KernelCost Dropout(long n) => new(F * 2 * n, 9 * n);

    /// <summary>Rotate-half RoPE of [B,T,H,D]: x read, y written, positions read; 6 flops per pair (3 per element).</summary>
    public static KernelCost RopeForward(int B, int T, int H, int D) => Rope(B, T, H, D, 2);

    /// <summary>dx += Rᵀ·dy: dy read, dx accumulated.</summary>
    public static KernelCost RopeBackward(int B, int T, int H, int D) => Rope(B, T, H, D, 3);

    private static KernelCost Rope(int B, int T, int H, int D, int passes)
    {
        double n = (double)B * T * H * D;
        return new(F * (passes * n + (double)B * T), 3 * n);
    }

    /// <summary>im2col (image read, columns written) then cols [B·Np, Cin·P²] · wᵀ → y [B·Np, C].</summary>
    public static KernelCost PatchEmbedForward(int B, int Cin, int Hi, int Wi, int P, int C)
    {
        long m = (long)B * (Hi / P) * (Wi / P), k = (long)Cin * P * P;
        return Im2Col(B, Cin, Hi, Wi, m, k) + Gemm(m, C, k);
    }

    /// <summary>im2col again, then dw [C, Cin·P²] += dyᵀ · cols.</summary>
    public static KernelCost PatchEmbedBackward(int B, int Cin, int Hi, int Wi, int P, int C)
    {
        long m = (long)B * (Hi / P) * (Wi / P), k = (long)Cin * P * P;
        return Im2Col(B, Cin, Hi, Wi, m, k) + Gemm(C, k, m, accumulate: true);
    }

    private static KernelCost Im2Col(int B, int Cin, int Hi, int Wi, long m, long k) => new(F * ((double)B * Cin * Hi * Wi + (double)m * k), 0);

    /// <summary>Softmax cross-entropy with the logit gradient over [N,V]: logits read twice, dlogits accumulated (16 bytes per
    /// logit), two exps and ≈ 4 flops per logit.</summary>
    public static KernelCost CrossEntropyWithGradient(long N, long V) => new(F * (4.0 * N * V + 2 * N), (2 * Transcendental + 4) * N * V);

    /// <summary>Visual-word KL with both logit gradients, N pairs of [V] rows: both rows read twice, both gradients
    /// accumulated (32 bytes per pair element), four exps and ≈ 8 flops per pair element.</summary>
    public static KernelCost VisualWordKlWithGradients(long N, long V) => new(F * (8.0 * N * V + 3 * N), (4 * Transcendental + 8) * N * V);

    /// <summary>Row gather / splice into y [R,C]: each row read and written, map read.</summary>
    public static KernelCost GatherRows(long R, long C) => new(F * (2.0 * R * C + R), 0);

    /// <summary>Row scatter of src [R,C] into distinct rows of dst: the gather's traffic, the other way round.</summary>
    public static KernelCost ScatterRows(long R, long C) => GatherRows(R, C);

    /// <summary>Scatter-add of dy [R,C] into <paramref name="destinations"/> distinct rows: dy read once, each destination
    /// accumulated once, the host-sorted grouping (12 bytes per row) uploaded and read; one add per element.</summary>
    public static KernelCost GatherRowsBackward(long R, long C, long destinations) =>
        new(F * (1.0 * R * C + 2.0 * destinations * C) + 2 * 12.0 * R, (double)R * C);

    /// <summary>Fused AdamW over [n]: param, grad, m, v read, param, m, v written (28 bytes); ≈ 15 flops per element.</summary>
    public static KernelCost AdamW(long n) => new(28.0 * n, 15.0 * n);

    /// <summary>Σx² over [n]: x read once, 2 flops per element.</summary>
    public static KernelCost SumSquares(long n) => new(F * n, 2.0 * n);

    /// <summary>x [n] = value: one write per element.</summary>
    public static KernelCost Fill(long n) => new(F * n, 0);
}
