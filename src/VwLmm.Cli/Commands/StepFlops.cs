using VwLmm.Model;

namespace VwLmm.Cli.Commands;

/// <summary>
/// Analytic FLOP count of one VW-LMM step over B samples, each one image (N_img patch rows) followed by
/// <c>textTokens</c> text tokens. Counted: every matrix product (linears, heads, patch embedding) and the two attention
/// products QKᵀ and PV; norms, activations, softmax and losses are left out (they are O(rows·width), not O(rows·width²)).
/// A linear of M rows, K inputs, N outputs costs 2MNK forward and 4MNK backward (dX and dW); the patch embedding has no
/// dX (pixels need no gradient). Attention over T keys costs 4·T²·width per sample forward (bidirectional) or
/// 2·T(T+1)·width (causal: only the lower triangle, as the kernels compute it), backward twice that.
/// bench/reference/torch_peer.py mirrors this formula; the side-by-side runner checks that both agree.
/// </summary>
public sealed record StepFlops(double Linear, double PatchEmbed, double Attention)
{
    /// <summary>Forward-only FLOPs (train = 3 × this, less the patch embedding's missing dX).</summary>
    public double Forward => Linear + PatchEmbed + Attention;

    /// <summary>Forward + backward FLOPs of a train step.</summary>
    public double Train => 3 * Linear + 2 * PatchEmbed + 3 * Attention;

    /// <summary>Forward FLOPs of one step over <paramref name="batch"/> samples of one image and <paramref name="textTokens"/> text tokens.</summary>
    public static StepFlops Of(VwLmmConfig config, int batch, int textTokens)
    {
        var v = config.Vision;
        var l = config.Llm;
        double b = batch, np = v.NumPatches, tv = np + 1, cv = v.HiddenSize, fv = v.IntermediateSize;
        double d = l.HiddenSize, kv = l.NumKeyValueHeads * l.HeadDim, f = l.IntermediateSize, vocab = l.VocabSize;
        double seq = config.ImageTokens + textTokens;
        double layersV = config.VisionLayersUsed, layersL = l.NumHiddenLayers;

        double patch = 2 * b * np * cv * (v.NumChannels * v.PatchSize * v.PatchSize);
        double visionLinear = layersV * 2 * b * tv * (4 * cv * cv + 2 * cv * fv);
        double projector = 2 * b * config.ImageTokens * (cv * d + (config.ProjectorType == ProjectorType.Mlp2xGelu ? d * d : 0));
        double vmHead = config.VmLossWeight > 0 ? 2 * b * config.ImageTokens * d * vocab : 0;
        double llmLinear = layersL * 2 * b * seq * (2 * d * d + 2 * d * kv + 3 * d * f);
        double lmHead = 2 * b * seq * d * vocab;
        double attention = layersV * 4 * b * tv * tv * cv + layersL * 2 * b * seq * (seq + 1) * d;
        return new StepFlops(visionLinear + projector + vmHead + llmLinear + lmHead, patch, attention);
    }
}
