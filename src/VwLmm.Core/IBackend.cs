namespace VwLmm.Core;

/// <summary>Pointwise activations. Gelu is the exact erf form (PyTorch default); QuickGelu is x·σ(1.702x) (CLIP); Silu is x·σ(x).</summary>
public enum Activation { Gelu, QuickGelu, Silu }

/// <summary>
/// The op contract both backends obey. Row-major, explicit dimensions (B batch, T/S sequence, C channels, H heads,
/// D head dim, V vocabulary, N rows). Ops do not validate shapes: <see cref="Ops"/> does that before calling them.
/// Conventions:
/// - Every backward entry point ACCUMULATES into its gradient outputs (dx += …); callers zero fresh gradient buffers.
///   Those that take <c>accumulate</c> store instead when it is false (dx = …), writing every element of each output,
///   zero where nothing flows, so that a gradient the op reaches first needs no fill (the bits are those of adding to
///   zeros, but for a zero's sign). A null gradient output means "not needed" and its work is skipped (frozen weights,
///   inputs without grad).
/// - Index tensors are I32. Float tensors are F32, except a BF16 weight matrix in Gemm (see there).
/// - Reductions are deterministic: the same inputs give bit-identical outputs on the same backend and thread count.
/// </summary>
public interface IBackend : IDisposable
{
    string Name { get; }

    // ---- memory ----
    /// <summary>Allocates <paramref name="bytes"/> of backend memory (uninitialised, 256-byte aligned).</summary>
    DeviceBuffer Allocate(long bytes);
    /// <summary>Copies host elements into the first src.Length elements of dst.</summary>
    void Upload<T>(Tensor dst, ReadOnlySpan<T> src) where T : unmanaged;
    /// <summary>Copies the first dst.Length elements of src to the host.</summary>
    void Download<T>(Tensor src, Span<T> dst) where T : unmanaged;
    /// <summary>Waits for all queued work (no-op on the CPU).</summary>
    void Synchronize();

    // ---- elementwise: x,y [n] ----
    /// <summary>x[0..x.Numel) = value (bit pattern of value for I32 only when value is 0).</summary>
    void Fill(Tensor x, float value);
    /// <summary>dst[0..n) = src[0..n).</summary>
    void Copy(Tensor dst, Tensor src, long n);
    /// <summary>y = a + b, all [n]. y may alias a or b.</summary>
    void Add(Tensor y, Tensor a, Tensor b, long n);
    /// <summary>y += alpha·x, [n].</summary>
    void Axpy(Tensor y, Tensor x, long n, float alpha);
    /// <summary>x *= alpha, [n].</summary>
    void Scale(Tensor x, long n, float alpha);
    /// <summary>x [N,C] += bias [P,C] with row n taking bias row n mod P (P=1: bias; P=T: position embeddings).</summary>
    void BiasAdd(Tensor x, Tensor bias, int N, int C, int P);
    /// <summary>dbias [P,C] += Σ over rows n ≡ p (mod P) of dy [N,C].</summary>
    void BiasBackward(Tensor dbias, Tensor dy, int N, int C, int P);

    // ---- GEMM ----
    /// <summary>
    /// For b in [0,batch): C_b [M,N] = alpha·op(A_b)·op(B_b) + beta·C_b, row-major with leading dimensions lda/ldb/ldc
    /// (row pitch in elements of the stored matrix) and element strides between batch items. op(A) is [M,K]
    /// (A stored [K,M] when transA), op(B) is [K,N] (B stored [N,K] when transB).
    /// B may be BF16 when transB and !transA (a linear layer whose weights are stored in bf16 for inference, strides
    /// and pitches still in elements): the result is the F32 product with B widened exactly (bf16 bits &lt;&lt; 16), to
    /// f32 rounding. The CPU gives the bits of the F32 Gemm on the widened matrix on its own GEMM, and on OpenBLAS when
    /// M ≤ 4 and beta = 0 (decoding) or N·K ≤ 2²¹ (one widened block); a larger B_b goes to OpenBLAS a block of rows at
    /// a time, whose order of summation depends on the block, so an element may differ from the F32 Gemm's by
    /// summation-order rounding (seen: 2⁻²⁵·Σ_k |alpha·a_k·b_k|). Any other non-F32 operand throws. A and C are always
    /// F32. With <paramref name="bias"/> (F32), C_b [m, n] += bias[b·strideBias + n] after the product, then with
    /// <paramref name="addend"/> (F32, C's layout: a residual stream) C_b += addend_b, each rounded on its own: the bits
    /// of this Gemm followed by <see cref="BiasAdd"/> and <see cref="Add"/> (which is what a backend may run). Either
    /// needs C's rows dense (ldc = N); the addend must not overlap C.
    /// </summary>
    void Gemm(bool transA, bool transB, int M, int N, int K, float alpha,
              Tensor A, int lda, long strideA, Tensor B, int ldb, long strideB,
              float beta, Tensor C, int ldc, long strideC, int batch, Tensor? bias = null, long strideBias = 0, Tensor? addend = null);

    // ---- normalisation: x,y [N,C] ----
    /// <summary>y = (x−mean)·rstd·gamma + beta per row; saves mean [N], rstd [N].</summary>
    void LayerNormForward(Tensor y, Tensor mean, Tensor rstd, Tensor x, Tensor gamma, Tensor beta, int N, int C, float eps);
    /// <summary>dx [N,C] +=, dgamma [C] +=, dbeta [C] += from dy, x, gamma and the saved mean/rstd.</summary>
    void LayerNormBackward(Tensor? dx, Tensor? dgamma, Tensor? dbeta, Tensor dy, Tensor x, Tensor gamma, Tensor mean, Tensor rstd, int N, int C);
    /// <summary>y = x·rstd·gamma with rstd = 1/sqrt(mean(x²)+eps); saves rstd [N].</summary>
    void RmsNormForward(Tensor y, Tensor rstd, Tensor x, Tensor gamma, int N, int C, float eps);
    /// <summary>dx [N,C] +=, dgamma [C] += from dy, x, gamma, rstd.</summary>
    void RmsNormBackward(Tensor? dx, Tensor? dgamma, Tensor dy, Tensor x, Tensor gamma, Tensor rstd, int N, int C);

    // ---- activations: [n] ----
    /// <summary>y = act(x).</summary>
    void ActivationForward(Tensor y, Tensor x, long n, Activation act);
    /// <summary>dx += act'(x)·dy (dx = … unless accumulate), all [n].</summary>
    void ActivationBackward(Tensor dx, Tensor dy, Tensor x, long n, Activation act, bool accumulate);
    /// <summary>y = silu(gate)·up (LLaMA MLP), all [n].</summary>
    void SwiGluForward(Tensor y, Tensor gate, Tensor up, long n);
    /// <summary>dgate += dy·up·silu'(gate), dup += dy·silu(gate) (= … unless accumulate), all [n]; dgate and dup may be one buffer when accumulating.</summary>
    void SwiGluBackward(Tensor? dgate, Tensor? dup, Tensor dy, Tensor gate, Tensor up, long n, bool accumulate);
    /// <summary>
    /// Inverted dropout over [n]: y = x·(1/(1 − rate)) where <see cref="DropoutMask.Keeps"/>(seed, i) and 0 elsewhere
    /// (y += that when accumulate). Backward is the same call on dy with the same seed. y may alias x unless accumulating.
    /// </summary>
    void Dropout(Tensor y, Tensor x, long n, float rate, ulong seed, bool accumulate);

    // ---- attention ----
    /// <summary>
    /// Fused scaled-dot-product attention with online softmax (no T×T matrix). q [B,Tq,H,D]; k,v [B,S,Hkv,D] of which
    /// the first Tk rows are used; o [B,Tq,H,D]; saves lse [B,H,Tq] (natural-log logsumexp of the scaled scores).
    /// Query head h reads kv head h/(H/Hkv) (GQA). Query t sits at position t+Tk−Tq: with causal it sees keys j ≤ t+Tk−Tq.
    /// keyLengths (I32 [B], optional) masks keys j ≥ keyLengths[b]. A query with no visible key gets o = 0, lse = −inf.
    /// </summary>
    void AttentionForward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor? keyLengths,
                          int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale);
    /// <summary>
    /// dq [B,Tq,H,D] +=, dk, dv [B,S,Hkv,D] += (first Tk rows), recomputing probabilities from lse. No atomics. Unless
    /// accumulate, they are stored, and dk, dv rows no query sees (rows Tk … S − 1 among them) become 0.
    /// </summary>
    void AttentionBackward(Tensor? dq, Tensor? dk, Tensor? dv, Tensor dO, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse,
                           Tensor? keyLengths, int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale,
                           bool accumulate);

    // ---- rotary position embedding ----
    /// <summary>
    /// y [B,T,H,D] = rotate-half RoPE of x [B,T,H,D] (HF LLaMA: pairs (i, i+D/2), angle pos·theta^(−2i/D)) with
    /// pos = positions[b·T+t] (I32 [B,T]). y may alias x.
    /// </summary>
    void RopeForward(Tensor y, Tensor x, Tensor positions, int B, int T, int H, int D, float theta);
    /// <summary>dx [B,T,H,D] += inverse rotation of dy [B,T,H,D] (dx = … unless accumulate).</summary>
    void RopeBackward(Tensor dx, Tensor dy, Tensor positions, int B, int T, int H, int D, float theta, bool accumulate);

    // ---- patch embedding ----
    /// <summary>
    /// img [B,Cin,Hi,Wi] (NCHW) and w [C,Cin,P,P] → y [B,Np,C], Np = (Hi/P)(Wi/P) patches in row-major grid order:
    /// a convolution with stride P and no bias.
    /// </summary>
    void PatchEmbedForward(Tensor y, Tensor img, Tensor w, int B, int Cin, int Hi, int Wi, int P, int C);
    /// <summary>dw [C,Cin,P,P] += from dy [B,Np,C] and img.</summary>
    void PatchEmbedBackward(Tensor dw, Tensor dy, Tensor img, int B, int Cin, int Hi, int Wi, int P, int C);

    // ---- row gather / splice / embedding ----
    /// <summary>
    /// y [R,C]: row r = srcA[map[r]] if map[r] ≥ 0, srcB[−2−map[r]] if map[r] ≤ −2, zeros if map[r] = −1 (map I32 [R]).
    /// Token embedding is srcA = table with map = ids; the LLaVA splice adds srcB = image features.
    /// </summary>
    void GatherRows(Tensor y, Tensor srcA, Tensor? srcB, Tensor map, int R, int C);
    /// <summary>dSrcA[map[r]] += dy[r], dSrcB[−2−map[r]] += dy[r]; rows added in increasing r (deterministic, no atomics).</summary>
    void GatherRowsBackward(Tensor? dSrcA, Tensor? dSrcB, Tensor dy, Tensor map, int R, int C);
    /// <summary>dst [*,C] row rows[r] = src [R,C] row r for r in [0,R) (rows I32 [R], distinct, each in range of dst): how a KV cache appends a step's keys at slots the device holds.</summary>
    void ScatterRows(Tensor dst, Tensor src, Tensor rows, int R, int C);

    // ---- vocabulary-row ops (always fp32) ----
    /// <summary>
    /// Softmax cross-entropy per row. logits [N,V], targets I32 [N] (−100 = ignored) → losses [N] (0 when ignored).
    /// When dlogits is given: dlogits [N,V] += gradScale·(softmax − onehot) on non-ignored rows; unless accumulate,
    /// dlogits = that, and 0 on ignored rows.
    /// </summary>
    void CrossEntropy(Tensor losses, Tensor? dlogits, Tensor logits, Tensor targets, int N, int V, float gradScale, bool accumulate);
    /// <summary>
    /// Visual-word KL for pairs i in [0,N): pairs I32 [N,2] = (lmRow, vmRow), the LM row being the position before the
    /// image token whose VM row labels it. q = softmax(lmLogits[lmRow]), p = softmax(vmLogits[vmRow]).
    /// losses [N] = KL(p‖q) (forward) or KL(q‖p) (reverse). Gradients scaled by gradScale and accumulated:
    /// dLm[lmRow] += ∂/∂lm, dVm[vmRow] += ∂/∂vm (dVm null = detached target).
    /// </summary>
    void VisualWordKl(Tensor losses, Tensor? dLm, Tensor? dVm, Tensor lmLogits, Tensor vmLogits, Tensor pairs,
                      int N, int V, bool reverse, float gradScale);
    /// <summary>y [N,V] = softmax of each row of x.</summary>
    void SoftmaxForward(Tensor y, Tensor x, int N, int V);
    /// <summary>dx [N,V] += y⊙(dy − Σ_v dy·y).</summary>
    void SoftmaxBackward(Tensor dx, Tensor dy, Tensor y, int N, int V);

    // ---- optimiser ----
    /// <summary>result[slot] = Σ x[i]² over [n] (F32 result vector; deterministic two-stage reduction).</summary>
    void SumSquares(Tensor result, int slot, Tensor x, long n);
    /// <summary>
    /// Fused AdamW with decoupled weight decay on [n]: g = grad·gradScale; m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²;
    /// param −= lr·(m̂/(√v̂+eps) + wd·param) with bias corrections for <paramref name="step"/> (1-based).
    /// </summary>
    void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, long n, float lr, float beta1, float beta2, float eps,
               float weightDecay, int step, float gradScale);

    // ---- optimiser over a parameter list (one pass; entry by entry the same bits as the ops above) ----
    /// <summary>grad i [nᵢ] = 0 for every entry.</summary>
    void ZeroGradients(ParameterList list);
    /// <summary>result[i] = Σ grad i² for every entry (F32 result [list.Count]; each as <see cref="SumSquares"/>).</summary>
    void GradientSumsOfSquares(Tensor result, ParameterList list);
    /// <summary><see cref="AdamW(Tensor, Tensor, Tensor, Tensor, long, float, float, float, float, float, int, float)"/>
    /// on every entry, with the entry's weight decay.</summary>
    void AdamW(ParameterList list, float lr, float beta1, float beta2, float eps, int step, float gradScale);
}

/// <summary>The operand types <see cref="IBackend.Gemm"/> admits, checked by every backend before it reads them: any
/// other type would be read as garbage.</summary>
public static class GemmOperands
{
    /// <summary>A and C F32; B F32, or BF16 as the weight W of x·Wᵀ (transB, not transA). Throws naming the operand.</summary>
    public static void Check(bool transA, bool transB, Tensor A, Tensor B, Tensor C)
    {
        if (A.DType != DType.F32) throw new ArgumentException($"Gemm: A is {A.DType}, expected F32 (shape {A.Shape})", nameof(A));
        if (C.DType != DType.F32) throw new ArgumentException($"Gemm: C is {C.DType}, expected F32 (shape {C.Shape})", nameof(C));
        if (B.DType == DType.BF16 ? transA || !transB : B.DType != DType.F32)
            throw new ArgumentException($"Gemm: B is {B.DType} (shape {B.Shape}) with transA={transA}, transB={transB}; "
                                        + "expected F32, or BF16 with transB and not transA", nameof(B));
    }

    /// <summary>
    /// A bias and an addend, when given: F32, C's rows dense (ldc = N), an [N] run of the bias for each of the batch's
    /// items, and an addend as large as C's extent that is not C.
    /// </summary>
    public static void CheckEpilogue(Tensor? bias, long strideBias, Tensor? addend, Tensor C, int M, int N, int ldc, long strideC, int batch)
    {
        if (bias is null && addend is null) return;
        if (ldc != N) throw new ArgumentException($"Gemm: a bias or addend needs dense rows of C, got ldc {ldc} for N {N}", nameof(ldc));
        if (bias is not null)
        {
            if (bias.DType != DType.F32) throw new ArgumentException($"Gemm: bias is {bias.DType}, expected F32 (shape {bias.Shape})", nameof(bias));
            if (strideBias < 0 || bias.Numel < (batch - 1) * strideBias + N)
                throw new ArgumentException($"Gemm: bias {bias.Shape} holds no [{N}] run at stride {strideBias} for each of {batch} items", nameof(bias));
        }
        if (addend is not null)
        {
            if (addend.DType != DType.F32) throw new ArgumentException($"Gemm: addend is {addend.DType}, expected F32 (shape {addend.Shape})", nameof(addend));
            if (addend.Ptr == C.Ptr) throw new ArgumentException("Gemm: the addend is C itself (use beta = 1)", nameof(addend));
            if (addend.Numel < (batch - 1) * strideC + (long)M * N)
                throw new ArgumentException($"Gemm: addend {addend.Shape} is smaller than C's {batch} items of [{M},{N}] at stride {strideC}", nameof(addend));
        }
    }
}
