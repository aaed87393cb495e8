using VwLmm.Core;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;

namespace VwLmm.Model;

/// <summary>
/// Losses and outputs of one forward pass. Total = Text + λ·Vm (the means, unweighted in their results). Logits [B·L, V],
/// or [R, V] at <see cref="Batch.LossRows"/> from a forward with lossRowsOnly; VmLogits [N_img·images, V] when computed.
/// </summary>
public readonly record struct ModelOutput(LossResult Text, LossResult Vm, double Total, Tensor Logits, Tensor? VmLogits, Tensor? ImageFeatures);

/// <summary>How <see cref="VwLmmModel.InitializeRandom"/> draws matrices and embeddings.</summary>
public enum InitScheme
{
    /// <summary>HF's initializer_range everywhere: N(0, 0.02).</summary>
    Hf,
    /// <summary>
    /// PyTorch's module defaults on the projector, decoder and VM head — embeddings N(0, 1), Linear weights
    /// U(±1/√fan_in) — with the vision tower kept at <see cref="Hf"/> (towers arrive pretrained). A small decoder
    /// learns ShapesGrid's lookups from these and generalises them to unseen colour×shape pairs; from N(0, 0.02) it fits
    /// the training pairs only (docs/RESULTS.md, session 7).
    /// </summary>
    Torch,
}

/// <summary>
/// VW-LMM (METHOD §1–§3): CLIP tower → projector → x; the VM head labels each image row with its visual word
/// p = softmax(W_vm·x); x (or, with pif, x̃ = pᵀE) is spliced into the token embeddings; the LLaMA decoder's LM head at
/// position t−1 predicts the visual word of image position t (forward KL, summed over the vocabulary, averaged over
/// image tokens) alongside ordinary next-token prediction.
/// </summary>
public sealed class VwLmmModel : IDisposable
{
    /// <param name="weights">Storage of the linear layers' weights: F32, or BF16 for inference (half the memory and the
    /// bytes a decoded token reads; such a model cannot be trained).</param>
    public VwLmmModel(IBackend backend, VwLmmConfig config, DType weights = DType.F32)
    {
        config.Validate();
        Backend = backend;
        Config = config;
        var expected = Checkpoints.HfNames.Expected(config);
        Parameters = new ParameterStore(backend, weights, expected.Where(t => t.Linear).Select(t => t.Name).ToHashSet(StringComparer.Ordinal));
        try
        {
            Vision = new VisionTower(Parameters, config);
            Projector = new Projector(Parameters, config);
            Decoder = new LlamaDecoder(Parameters, config.Llm);
            VmHead = Parameters.Add(Checkpoints.HfNames.VmHead, config.Llm.VocabSize, config.Llm.HiddenSize);
        }
        catch (OutOfMemoryException)
        {
            Parameters.Dispose();
            double mib = expected.Sum(t => (double)t.Shape.Numel * (t.Linear ? weights.Size() : sizeof(float))) / (1 << 20);
            throw new InsufficientMemoryException(
                $"the model's {config.ParameterCount():N0} parameters ({mib:N1} MiB) do not fit in the {backend.Name} backend's memory");
        }
    }

    public IBackend Backend { get; }
    public VwLmmConfig Config { get; private set; }
    public ParameterStore Parameters { get; }

    /// <summary>Records the conversation template the model is trained with, so that its checkpoints name it (metadata
    /// only: nothing the model computes reads it).</summary>
    public void RecordConversationTemplate(ConversationTemplate template) =>
        Config = Config with { ConversationTemplate = template.Name };
    public VisionTower Vision { get; }
    public Projector Projector { get; }
    public LlamaDecoder Decoder { get; }
    public Parameter VmHead { get; }

    /// <summary>
    /// Initialisation from a seed: norm gains 1, biases 0, matrices and embeddings per <paramref name="scheme"/>; then the
    /// VM head per config (random, or a copy of lm_head / embed_tokens — METHOD §1.4 leaves this open).
    /// </summary>
    public void InitializeRandom(ulong seed, InitScheme scheme = InitScheme.Hf)
    {
        var rng = new Rng(seed);
        foreach (var p in Parameters.All)
        {
            var host = new float[p.Numel];
            bool torch = scheme == InitScheme.Torch && ParameterStore.GroupOf(p.Name) != ParameterGroup.Vision;
            if (IsNormGain(p.Name)) Array.Fill(host, 1f);
            else if (torch && p.Name == Checkpoints.HfNames.EmbedTokens)
                for (int i = 0; i < host.Length; i++) host[i] = (float)rng.NextNormal();
            else if (torch && p.Shape.Rank == 2)
            {
                double bound = 1 / Math.Sqrt(p.Shape[1]);
                for (int i = 0; i < host.Length; i++) host[i] = (float)(bound * (2 * rng.NextDouble() - 1));
            }
            else if (p.Shape.Rank >= 2 || p.Name.EndsWith("class_embedding", StringComparison.Ordinal))
                for (int i = 0; i < host.Length; i++) host[i] = (float)(0.02 * rng.NextNormal());
            p.SetValues(host);
        }
        ApplyVmHeadInit();
    }

    /// <summary>Copies lm_head or embed_tokens into the VM head when the config asks for it.</summary>
    public void ApplyVmHeadInit()
    {
        var src = Config.VmHeadInit switch
        {
            VmHeadInit.LmHead => Decoder.LmHead,
            VmHeadInit.EmbedTokens => Decoder.EmbedTokens,
            _ => null,
        };
        if (src is null) return;
        if (src.Value.DType == DType.F32 && VmHead.Value.DType == DType.F32) Backend.Copy(VmHead.Value, src.Value, VmHead.Numel);
        // BF16 weights (inference): embed_tokens stays F32, so the copy goes through the host and rounds it as a BF16
        // checkpoint would; a BF16 lm_head comes back unchanged.
        else VmHead.SetValues(src.Value.ToArray());
    }

    private static bool IsNormGain(string name) =>
        name.EndsWith(".weight", StringComparison.Ordinal) &&
        (name.Contains("layernorm", StringComparison.Ordinal) || name.Contains("layer_norm", StringComparison.Ordinal) ||
         name.Contains("layrnorm", StringComparison.Ordinal) || name == Checkpoints.HfNames.FinalNorm);

    /// <summary>pixels [NI,3,S,S] → projector output x [NI·N_img, d].</summary>
    public Tensor EncodeImages(Tape tape, Tensor pixels) => Projector.Forward(tape, Vision.Forward(tape, pixels));

    /// <summary>x [N, d] → VM-head logits a [N, V].</summary>
    public Tensor VisualWordLogits(Tape tape, Tensor x) => Ops.Linear(tape, x, VmHead.Value);

    /// <summary>What the decoder receives for image rows: x, or with pif x̃ = softmax(W_vm·x)ᵀE.</summary>
    public Tensor DecoderImageRows(Tape tape, Tensor x, ref Tensor? vmLogits)
    {
        if (!Config.UsePif) return x;
        vmLogits ??= VisualWordLogits(tape, x);
        return Ops.MatMul(tape, Ops.Softmax(tape, vmLogits), Decoder.EmbedTokens.Value);
    }

    /// <summary>
    /// One forward pass over a spliced batch; pixels [ImageCount,3,S,S] (null for a text-only batch). With a recording
    /// tape the losses' gradients are seeded, so tape.Backward() completes the step. The VM loss is skipped (0) when λ = 0
    /// (the config's, unless vmLossWeight overrides it) or the batch has no image position with a predecessor.
    /// textLogitBias [B·L, V], when given, is added to the logits the text loss sees (a training-only prior,
    /// <see cref="Training.AnswerPrior"/>); the returned logits and the VM loss do not include it. dropout: the decoder's
    /// residual dropout while training (<see cref="LlamaDecoder.Forward"/>); none by default. lossRowsOnly: the logits
    /// (and textLogitBias) are [R, V] at <see cref="Batch.LossRows"/> instead of [B·L, V], which is all a training step
    /// reads and spares the last layer's MLP and the LM head the other rows; the losses are the same.
    /// </summary>
    public ModelOutput Forward(Tape tape, Batch batch, Tensor? pixels, double? vmLossWeight = null, Tensor? textLogitBias = null,
                               DropoutPlan dropout = default, bool lossRowsOnly = false)
    {
        var cfg = Config;
        float lambda = (float)(vmLossWeight ?? cfg.VmLossWeight);
        if (batch.ImageTokens != Vision.TokensPerImage && batch.ImageCount > 0)
            throw new ArgumentException($"batch built for {batch.ImageTokens} tokens per image, the model makes {Vision.TokensPerImage}");
        Tensor? x = null, vmLogits = null, imageRows = null;
        if (batch.ImageCount > 0)
        {
            if (pixels is null || pixels.Shape.Rank != 4 || pixels.Shape[0] != batch.ImageCount)
                throw new ArgumentException($"batch has {batch.ImageCount} images, pixels are {(pixels is null ? "missing" : pixels.Shape.ToString())}");
            x = EncodeImages(tape, pixels);
            bool vmLoss = lambda > 0 && batch.VmPairCount > 0;
            if (vmLoss) vmLogits = VisualWordLogits(tape, x);
            imageRows = DecoderImageRows(tape, x, ref vmLogits);
        }
        var inputs = Ops.Gather(tape, Decoder.EmbedTokens.Value, imageRows, batch.Map);
        var hidden = Decoder.Forward(tape, inputs, batch.B, batch.L, batch.Positions, batch.KeyLengths, dropout,
                                     lossRowsOnly ? batch.LossRows : default);
        var logits = Decoder.Logits(tape, hidden);
        var text = Ops.CrossEntropy(tape, textLogitBias is null ? logits : Ops.Add(tape, logits, textLogitBias),
                                    lossRowsOnly ? batch.LossTargets : batch.Targets);
        var vm = vmLogits is not null && lambda > 0 && batch.VmPairCount > 0
            ? Ops.VisualWordKl(tape, logits, vmLogits, lossRowsOnly ? batch.LossVmPairs : batch.VmPairs, lambda,
                               cfg.VmKlDirection == KlDirection.Reverse, cfg.VmDetachTarget)
            : new LossResult(0, 0, null);
        return new ModelOutput(text, vm, text.Mean + lambda * vm.Mean, logits, vmLogits, x);
    }

    public void Dispose() => Parameters.Dispose();
}
