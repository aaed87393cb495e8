using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>
/// Launchers for kernels/vocab.cu (cross-entropy, visual-word KL, softmax over rows of [N,V]). Targets and pairs are
/// read back to the host to be checked, as on the CPU backend: one stream synchronisation per loss, which the caller
/// pays anyway when it reads the losses.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    private const string VocabModule = "vocab";
    /// <summary>Threads per row: about one float4 per thread for short rows, 512 (16 warps) for vocabularies.</summary>
    private static uint VocabThreads(int V) => (uint)Math.Clamp((V / 4 + 31) / 32 * 32, 32, 512);

    public void CrossEntropy(Tensor losses, Tensor? dlogits, Tensor logits, Tensor targets, int N, int V, float gradScale, bool accumulate)
    {
        if (N == 0) return;
        var t = HostInts(N);
        Download<int>(targets, t);
        IndexChecks.Targets(nameof(CrossEntropy), t, V);
        nint pl = losses.Ptr, pd = PtrOrNull(dlogits), px = logits.Ptr, pt = targets.Ptr;
        int acc = accumulate ? 1 : 0;
        ReadOnlySpan<KernelArg> args = [&pl, &pd, &px, &pt, &N, &V, &gradScale, &acc];
        Launch(VocabModule, "cross_entropy_f32", ((uint)N, 1, 1), (VocabThreads(V), 1, 1), 0, args);
    }

    /// <summary>
    /// One block per pair. Pairs that share a gradient row would race in one launch, so then each pair gets its own
    /// launch, in pair order: exact and deterministic, and never taken by the model (one pair per image token).
    /// </summary>
    public void VisualWordKl(Tensor losses, Tensor? dLm, Tensor? dVm, Tensor lmLogits, Tensor vmLogits, Tensor pairs,
                             int N, int V, bool reverse, float gradScale)
    {
        if (N == 0) return;
        var p = HostInts(2 * N);
        Download<int>(pairs, p);
        IndexChecks.VisualWordPairs(nameof(VisualWordKl), p, (int)(lmLogits.Numel / V), (int)(vmLogits.Numel / V));
        bool shared = (dLm is not null && !RowsDistinct(p, 0)) || (dVm is not null && !RowsDistinct(p, 1));
        nint pl = losses.Ptr, pdl = PtrOrNull(dLm), pdv = PtrOrNull(dVm), plm = lmLogits.Ptr, pvm = vmLogits.Ptr, pp = pairs.Ptr;
        int first = 0, rev = reverse ? 1 : 0;
        ReadOnlySpan<KernelArg> args = [&pl, &pdl, &pdv, &plm, &pvm, &pp, &first, &V, &rev, &gradScale];
        if (!shared)
            Launch(VocabModule, "visual_word_kl_f32", ((uint)N, 1, 1), (VocabThreads(V), 1, 1), 0, args);
        else
            for (first = 0; first < N; first++)
                Launch(VocabModule, "visual_word_kl_f32", (1, 1, 1), (VocabThreads(V), 1, 1), 0, args);
    }

    /// <summary>Whether column <paramref name="column"/> of pairs [N,2] names no row twice.</summary>
    private bool RowsDistinct(ReadOnlySpan<int> pairs, int column)
    {
        _seenRows.Clear();
        for (int i = column; i < pairs.Length; i += 2)
            if (!_seenRows.Add(pairs[i])) return false;
        return true;
    }

    public void SoftmaxForward(Tensor y, Tensor x, int N, int V)
    {
        if (N == 0) return;
        nint py = y.Ptr, px = x.Ptr;
        ReadOnlySpan<KernelArg> args = [&py, &px, &N, &V];
        Launch(VocabModule, "softmax_forward_f32", ((uint)N, 1, 1), (VocabThreads(V), 1, 1), 0, args);
    }

    public void SoftmaxBackward(Tensor dx, Tensor dy, Tensor y, int N, int V)
    {
        if (N == 0) return;
        nint pdx = dx.Ptr, pdy = dy.Ptr, py = y.Ptr;
        ReadOnlySpan<KernelArg> args = [&pdx, &pdy, &py, &N, &V];
        Launch(VocabModule, "softmax_backward_f32", ((uint)N, 1, 1), (VocabThreads(V), 1, 1), 0, args);
    }
}
