using VwLmm.Core;
using VwLmm.Data.Conversations;
using VwLmm.Data.Images;
using VwLmm.Data.ShapesGrid;
using VwLmm.Data.Text;
using VwLmm.Model.Training;

namespace VwLmm.Model.Recipes;

/// <summary>
/// METHOD §7.3's variants: A (λ = 0, the LLaVA baseline), B (VW-LMM as released), C (detached target), D (pif), E (B with
/// reverse KL), F (B with the VM head initialised from lm_head instead of embed_tokens); and G, D with the VM head left
/// at its random initialisation (frozen, METHOD §4.3's first unknown) and λ = <see cref="ShapesGridRecipe.FrozenHeadVmLossWeight"/>:
/// D's own head saturates or flattens p and the decoder loses the image (docs/RESULTS.md, sessions 18 and 32); and Twins,
/// B with the shape questions of instruction tuning trained beside their counterfactual twins
/// (<see cref="ShapesGridWorld.Twin"/>, <see cref="StageConfig.TwinWeight"/> = <see cref="ShapesGridRecipe.TwinLossWeight"/>).
/// </summary>
public enum ShapesGridVariant { Baseline, VwLmm, Detach, Pif, Reverse, LmHead, PifFrozenHead, Twins }

/// <summary>Which stages a ShapesGrid run trains after the vision pretraining (<see cref="ShapesGridRecipe.TrainConfig"/>).</summary>
public enum ShapesGridStages { Lookup, Llava }

/// <summary>
/// Size of a ShapesGrid run: the default demo budget, or the CI-sized quick one. QaAverageDecay is the decay of the
/// moving average of weights that becomes the instruction-tuned model in the default stages (<see cref="StageConfig.EmaDecay"/>;
/// 0: the last step's weights); QaWeightDecay is their instruction stage's AdamW weight decay.
/// </summary>
public sealed record ShapesGridBudget(int VisionSteps, int TextSteps, int AlignSteps, int CaptionSteps, int QaSteps, int BatchSize, int EvalImages,
                                      double QaAverageDecay = 0, double QaWeightDecay = 0)
{
    /// <summary>
    /// The `vwlmm demo` budget: under ten minutes on two cores. About the last 1,000 of the 4,000 instruction steps
    /// weigh in the average: held-out answers swing by ten to fifteen questions between checkpoints 250 steps apart, and the average
    /// answered more held-out colour questions over six seeds (docs/RESULTS.md, session 25). Twice version 6's
    /// instruction steps with weight decay 0.1 answered more held-out colour questions over six seeds and as many shape
    /// ones (session 37); it takes both, as 3,000 steps without decay lost held-out shape (session 25) and the decay over
    /// 2,000 steps lost held-out colour (session 38).
    /// </summary>
    public static ShapesGridBudget Default { get; } = new(2400, 120, 200, 400, 4000, 16, 200, QaAverageDecay: 0.999, QaWeightDecay: 0.1);
    /// <summary>
    /// `demo --quick` and the CI test: a couple of minutes. No average: 300 steps end while the model still learns
    /// fast, and an average over them lags it (seed 1: 35.8% of questions against 45.0%).
    /// </summary>
    public static ShapesGridBudget Quick { get; } = new(300, 40, 30, 30, 300, 12, 60);

    /// <summary>Images per vision-pretraining step.</summary>
    public const int VisionBatchSize = 32;
}

/// <summary>
/// The built-in VW-LMM recipe on the ShapesGrid world (METHOD §7): the paper's LLaVA stages plus the two pretrainings a
/// toy world needs, since nothing here comes pretrained — (v) the vision tower learns to name each patch's content
/// (the stand-in for CLIP), (0) text-only LM pretraining on the world's sentences; then (1) alignment on captions with
/// the VM loss (projector and VM head trainable, then the LLM too) and (2) instruction tuning on QA (projector, LLM and
/// VM head).
/// </summary>
public sealed class ShapesGridRecipe
{
    public const string TokenizerFile = "tokenizer.model";
    /// <summary>Upper bound on the tokenizer's size: the world's corpus makes every word one piece well before it.</summary>
    public const int VocabSize = 512;

    /// <summary>The demo's world: 32 px images of 4×4 cells, one 8 px ViT patch per cell (METHOD §7.1's size), which
    /// keeps sequences short enough to train in minutes on two cores.</summary>
    public static ShapesGridOptions DefaultOptions { get; } = new() { ImageSize = 32, PatchSize = 8 };

    public ShapesGridRecipe(ulong seed, ShapesGridOptions? options = null)
    {
        World = new ShapesGridWorld(seed, options ?? DefaultOptions);
        Preprocessor = new ClipPreprocessor(new ClipPreprocessorOptions { Size = World.Options.ImageSize, Pad = false });
    }

    public ShapesGridWorld World { get; }
    public ClipPreprocessor Preprocessor { get; }

    /// <summary>The folder under <paramref name="root"/> that caches a seed's tokenizer and trained models; named by
    /// <see cref="ShapesGridWorld.Version"/> and <see cref="Version"/> so a cache built from an older world or recipe is never reused.</summary>
    public static string CacheDir(string root, ulong seed) => Path.Combine(root, $"shapesgrid-v{ShapesGridWorld.Version}.{Version}-seed{seed}");

    /// <summary>Bumped whenever the stages change, so a model trained by an older recipe is never reused.</summary>
    public const int Version = 9;

    public static ConversationTemplate Template => ConversationTemplate.ShapesChat;

    /// <summary>Loads dir/tokenizer.model, training it on the world's corpus first when absent.</summary>
    public SentencePieceTokenizer LoadOrTrainTokenizer(string dir)
    {
        string path = Path.Combine(dir, TokenizerFile);
        if (!File.Exists(path))
        {
            var model = BpeTrainer.Train(World.TokenizerCorpus(3000), new BpeTrainerOptions { VocabSize = VocabSize, HardVocabLimit = false });
            model.Write(path);
        }
        return SentencePieceTokenizer.Load(path);
    }

    /// <summary>The ShapesGrid model preset sized to the tokenizer and image options, with the VW-LMM variant applied.</summary>
    public VwLmmConfig ModelConfig(ITokenizer tokenizer, ShapesGridVariant variant = ShapesGridVariant.VwLmm) =>
        VwLmmConfig.Presets.ShapesGrid with
        {
            Vision = VwLmmConfig.Presets.ShapesGrid.Vision with { ImageSize = World.Options.ImageSize, PatchSize = World.Options.PatchSize },
            Llm = VwLmmConfig.Presets.ShapesGrid.Llm with { VocabSize = tokenizer.VocabSize },
            VmHeadInit = variant switch
            {
                ShapesGridVariant.LmHead => VmHeadInit.LmHead,
                ShapesGridVariant.PifFrozenHead => VmHeadInit.Random,
                _ => VmHeadInit.EmbedTokens,
            },
            VmKlDirection = variant == ShapesGridVariant.Reverse ? KlDirection.Reverse : KlDirection.Forward,
            VmLossWeight = variant switch
            {
                ShapesGridVariant.Baseline => 0,
                ShapesGridVariant.PifFrozenHead => FrozenHeadVmLossWeight,
                _ => 1,
            },
            VmDetachTarget = variant == ShapesGridVariant.Detach,
            UsePif = variant is ShapesGridVariant.Pif or ShapesGridVariant.PifFrozenHead,
        };

    /// <summary>
    /// λ of <see cref="ShapesGridVariant.PifFrozenHead"/>. With the head frozen, the KL can still flatten p through the
    /// projector: at λ = 1 and 0.3 it does, and the decoder loses the image as D's does; at 0.01 and 0 the text loss
    /// alone lets p settle on a few words and colour is lost; 0.05 and 0.2 lost most of the image too (seed 1; 0.05
    /// kept it in seeds 2 and 3, 0.2 in seed 2; 0.1 in all six seeds run; docs/RESULTS.md, session 32).
    /// </summary>
    public const double FrozenHeadVmLossWeight = 0.1;

    /// <summary>
    /// β of <see cref="ShapesGridVariant.Twins"/>, in the stages with an answer prior. Over every word of the vocabulary
    /// (not just the classes') β = 0.1 and 1 kept the decoder from reading the image at all; over the classes, 0.01 answered
    /// fewer held-out shape questions than 0.1 (seed 1, docs/RESULTS.md, session 39). Over six seeds the variant answers
    /// fewer held-out colour and shape questions than <see cref="ShapesGridVariant.VwLmm"/> (session 40).
    /// </summary>
    public const double TwinLossWeight = 0.1;

    /// <summary>Whether <paramref name="variant"/> trains the VM head (every variant but <see cref="ShapesGridVariant.PifFrozenHead"/>).</summary>
    public static bool TrainsVmHead(ShapesGridVariant variant) => variant != ShapesGridVariant.PifFrozenHead;

    /// <summary>
    /// The stages after <see cref="PretrainVision"/>, with the tower frozen throughout. <see cref="ShapesGridStages.Lookup"/>
    /// (the default): instruction tuning of projector, LLM and VM head on colour and shape questions only, each training
    /// image's followed by a colour and a shape question that name their objects by cell
    /// (<see cref="ShapesGridWorld.CellQuestions"/>; version 8), from <see cref="InitScheme.Torch"/>.
    /// <see cref="ShapesGridStages.Llava"/>: LLaVA's recipe on top of a text-pretrained LLM — alignment trains the
    /// projector and the VM head (started from the trained embed_tokens) under the frozen LLM, a second caption stage
    /// adds the LLM, instruction tuning asks every question kind. Text that names colour×shape
    /// pairs (the world's sentences, captions, "is there a red triangle ?", "red triangle" answers) teaches the decoder
    /// pair features that do not transfer to the held-out pairs; docs/RESULTS.md has the measurements.
    /// </summary>
    /// <remarks>
    /// <see cref="ShapesGridVariant.Twins"/> gives the stages with an answer prior their twins (none without one).
    /// With answerPrior, instruction tuning trains against the frame-relative answer prior of
    /// <see cref="AnswerPriorClasses"/> (<see cref="AnswerPrior"/>): what the question's colour or shape word alone says
    /// about the answer on the training combinations is explained by the prior, not learned. A variant that does not
    /// train the VM head (<see cref="TrainsVmHead"/>) has it taken out of every stage.
    /// </remarks>
    public TrainConfig TrainConfig(ShapesGridBudget budget, ulong seed, bool answerPrior = false, ShapesGridStages stages = ShapesGridStages.Lookup,
                                   ShapesGridVariant variant = ShapesGridVariant.VwLmm)
    {
        var config = StageList(budget, seed, answerPrior, stages);
        if (variant == ShapesGridVariant.Twins)
            config = config with { Stages = [.. config.Stages.Select(s => s.AnswerPrior is null ? s : s with { TwinWeight = TwinLossWeight })] };
        return TrainsVmHead(variant)
            ? config
            : config with { Stages = [.. config.Stages.Select(s => s with { Trainable = [.. s.Trainable.Where(g => g != ParameterGroup.VmHead)] })] };
    }

    /// <summary>
    /// What the lookup stage trains: the LLM and the VM head. The projector stays at its random initialisation, a fixed
    /// random map of the tower's features, whose colour and shape the tower already codes apart (its probes read both on
    /// held-out combinations); trained on the training pairs alone, it answered fewer held-out-pair questions (six
    /// seeds: docs/RESULTS.md, session 47).
    /// </summary>
    public static IReadOnlyList<ParameterGroup> LookupTrainable { get; } = [ParameterGroup.Llm, ParameterGroup.VmHead];

    private static TrainConfig StageList(ShapesGridBudget budget, ulong seed, bool answerPrior, ShapesGridStages stages) => new()
    {
        Seed = seed,
        MaxLength = 128,
        LogEvery = 10,
        Stages = stages == ShapesGridStages.Lookup
            ?
            [
                new StageConfig { Name = "instruct", Data = "qa:colour,shape+cells", Trainable = LookupTrainable, Steps = budget.QaSteps, Lr = 1e-3, WarmupRatio = 0.05, MinLrRatio = 0.1, BatchSize = budget.BatchSize, InitVmHead = true,
                                  WeightDecay = budget.QaWeightDecay, AnswerPrior = answerPrior ? AnswerPriorClasses : null, EmaDecay = budget.QaAverageDecay },
            ]
            :
            [
                new StageConfig { Name = "lm", Data = "text", Trainable = [ParameterGroup.Llm], Steps = budget.TextSteps, Lr = 3e-3, WarmupRatio = 0.05, MinLrRatio = 0.1, BatchSize = budget.BatchSize },
                new StageConfig { Name = "align", Data = "captions", Trainable = [ParameterGroup.Projector, ParameterGroup.VmHead], Steps = budget.AlignSteps, Lr = 1e-3, WarmupRatio = 0.05, MinLrRatio = 0.1, BatchSize = budget.BatchSize, InitVmHead = true },
                new StageConfig { Name = "captions", Data = "captions", Trainable = [ParameterGroup.Projector, ParameterGroup.Llm, ParameterGroup.VmHead], Steps = budget.CaptionSteps, Lr = 1e-3, WarmupRatio = 0.05, MinLrRatio = 0.1, BatchSize = budget.BatchSize },
                new StageConfig { Name = "instruct", Data = "qa", Trainable = [ParameterGroup.Projector, ParameterGroup.Llm, ParameterGroup.VmHead], Steps = budget.QaSteps, Lr = 5e-4, WarmupRatio = 0.05, MinLrRatio = 0.1, BatchSize = budget.BatchSize,
                                  AnswerPrior = answerPrior ? AnswerPriorClasses : null },
            ],
    };

    /// <summary>The initialisation each stage list starts from.</summary>
    public static InitScheme Init(ShapesGridStages stages) => stages == ShapesGridStages.Lookup ? InitScheme.Torch : InitScheme.Hf;

    /// <summary>The answer prior's word classes: the colours, and the shapes with their plurals.</summary>
    public static IReadOnlyList<IReadOnlyList<string>> AnswerPriorClasses { get; } =
    [
        Enum.GetValues<ObjectColour>().Select(Words.Of).ToList(),
        Enum.GetValues<ObjectShape>().SelectMany(s => new[] { Words.Of(s), Words.Plural(s) }).ToList(),
    ];

    /// <summary>
    /// Stage "vision", run before <see cref="TrainConfig"/>'s stages: the tower learns to name each patch's content
    /// (<see cref="ShapesGridVisionPretraining"/>). Returns its probes' accuracy on the first EvalImages held-out images.
    /// </summary>
    public VisionProbeAccuracy PretrainVision(VwLmmModel model, ShapesGridBudget budget, ulong seed, Action<int, double>? onStep = null)
    {
        using var pretraining = TrainVision(model, budget, seed, onStep);
        return pretraining.Evaluate(budget.EvalImages);
    }

    /// <summary>The vision stage of <see cref="PretrainVision"/>, returning the pretraining with its probes (the caller disposes it).</summary>
    public ShapesGridVisionPretraining TrainVision(VwLmmModel model, ShapesGridBudget budget, ulong seed, Action<int, double>? onStep = null)
    {
        var pretraining = new ShapesGridVisionPretraining(model, this, seed);
        try
        {
            pretraining.Train(budget.VisionSteps, ShapesGridBudget.VisionBatchSize, VisionLr, onStep: onStep);
            return pretraining;
        }
        catch
        {
            pretraining.Dispose();
            throw;
        }
    }

    private const double VisionLr = 2e-3;

    /// <summary>
    /// The training sources the stages name: "text", "captions", "qa" (every question kind, 5% text-only), and
    /// "qa:KIND,KIND…" (image conversations asking only those kinds: colour, shape, count, existence, position), with
    /// "+cells" at the end each followed by <see cref="ShapesGridWorld.CellQuestions"/>.
    /// </summary>
    public ITrainingSource Source(string name, ITokenizer tokenizer) => name switch
    {
        "text" => new TextSource(this, tokenizer),
        "captions" => new CaptionSource(this, tokenizer),
        "qa" => new QaSource(this, tokenizer, null, false),
        _ when name.StartsWith("qa:", StringComparison.Ordinal) && name.EndsWith(CellsSuffix, StringComparison.Ordinal) =>
            new QaSource(this, tokenizer, ParseKinds(name, name["qa:".Length..^CellsSuffix.Length]), true),
        _ when name.StartsWith("qa:", StringComparison.Ordinal) => new QaSource(this, tokenizer, ParseKinds(name, name["qa:".Length..]), false),
        _ => throw new ArgumentException($"ShapesGrid has no data source '{name}' (text, captions, qa, qa:KIND,…[{CellsSuffix}])"),
    };

    private const string CellsSuffix = "+cells";

    /// <summary>Whether <paramref name="name"/> is one of <see cref="Source"/>'s names (its kinds unchecked).</summary>
    public static bool IsSourceName(string name) => name is "text" or "captions" or "qa" || name.StartsWith("qa:", StringComparison.Ordinal);

    private static QuestionKind[] ParseKinds(string name, string kinds) =>
        kinds.Split(',').Select(k => Enum.TryParse<QuestionKind>(k, ignoreCase: true, out var kind) && !int.TryParse(k, out _)
            ? kind
            : throw new ArgumentException($"data source '{name}': '{k}' is not a question kind (colour, shape, count, existence, position)")).Distinct().ToArray();

    /// <summary>
    /// Training-split image <paramref name="index"/> from far past every index a stage reads (the sources' Count, the
    /// vision pretraining's steps × batch): the training distribution, with no held-out combination, never trained on.
    /// </summary>
    public ShapesGridSample UnseenTrainingSample(long index) => World.Sample(Split.Train, UnseenTrainingOffset + index);

    private const long UnseenTrainingOffset = 1L << 40;

    /// <summary>CLIP-normalised CHW pixels of an image.</summary>
    public float[] Pixels(RgbImage image) => Preprocessor.Process(image);

    // The world is infinite; a fixed count makes epochs (and so the shuffled order) well defined.
    private const int SourceSize = 1 << 16;

    private sealed class TextSource(ShapesGridRecipe r, ITokenizer tok) : ITrainingSource
    {
        public int Count => SourceSize;

        public TrainingExample Get(int index)
        {
            var ids = tok.Encode(r.World.PretrainingText(index)).Append(tok.EosId).ToArray();
            return new TrainingExample(new TokenizedConversation(ids, ids), null);
        }
    }

    private sealed class CaptionSource(ShapesGridRecipe r, ITokenizer tok) : ITrainingSource
    {
        public int Count => SourceSize;

        public ConversationTemplate Template => ConversationTemplate.Plain;

        public TrainingExample Get(int index)
        {
            var s = r.World.Sample(Split.Train, index);
            return new TrainingExample(Template.Encode(s.CaptionConversation("image"), tok), r.Pixels(s.Image));
        }
    }

    private sealed class QaSource(ShapesGridRecipe r, ITokenizer tok, QuestionKind[]? kinds, bool cellQuestions) : ITrainingSource
    {
        public int Count => SourceSize;

        public ConversationTemplate Template => ShapesGridRecipe.Template;

        public TrainingExample Get(int index)
        {
            var conv = Conversation(index);
            return new TrainingExample(Template.Encode(conv, tok), conv.HasImage ? r.Pixels(r.World.Render(r.World.SceneAt(Split.Train, index))) : null);
        }

        public TwinExample? Twin(int index) =>
            kinds is null && r.World.IsTextOnly(Split.Train, index) ? null
            : r.World.Twin(index, "image", kinds ?? Enum.GetValues<QuestionKind>()) is { } twin
                ? new TwinExample(new TrainingExample(Template.Encode(twin.Conversation, tok), r.Pixels(r.World.Render(twin.Scene))), twin.Question)
                : null;

        // The answer prior counts every example a stage trains on: without rendering and preprocessing their images.
        public TokenizedConversation Tokens(int index) => Template.Encode(Conversation(index), tok);

        private ConversationSample Conversation(int index) => kinds is null
            ? r.World.InstructionConversation(Split.Train, index, "image")
            : r.World.QaConversation(Split.Train, index, "image", kinds, cellQuestions);
    }
}
