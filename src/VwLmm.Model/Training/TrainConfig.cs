using System.Text.Json;
using System.Text.Json.Serialization;
using VwLmm.Core;

namespace VwLmm.Model.Training;

/// <summary>One stage of a staged recipe: its data source, trainable groups, length and optimiser settings.</summary>
public sealed record StageConfig
{
    public required string Name { get; init; }
    /// <summary>Name of the training source (resolved by the caller: e.g. "text", "captions", "qa", or a dataset).</summary>
    public required string Data { get; init; }
    public required IReadOnlyList<ParameterGroup> Trainable { get; init; }
    /// <summary>Optimiser steps; with <see cref="Epochs"/> set, derived from it by
    /// <see cref="TrainConfig.WithEpochsResolved"/> once the source's size is known.</summary>
    public required int Steps { get; init; }
    /// <summary>Passes over the stage's data source, instead of a step count: ⌈epochs × examples / (batch_size × grad_accum)⌉ steps.</summary>
    public double? Epochs { get; init; }
    public required double Lr { get; init; }
    public double MinLrRatio { get; init; }
    public double WarmupRatio { get; init; } = 0.03;
    public int BatchSize { get; init; } = 16;
    public int GradAccum { get; init; } = 1;
    public double WeightDecay { get; init; }
    public double GradClip { get; init; } = 1.0;
    /// <summary>λ for this stage; null uses the model config's vm_loss_weight.</summary>
    public double? VmLossWeight { get; init; }
    /// <summary>
    /// Re-apply the model config's vm_head_init (a copy of lm_head or embed_tokens) when the stage starts, for recipes
    /// that pretrain the LLM in an earlier stage: the VM head should start from the trained matrix, not the random one.
    /// </summary>
    public bool InitVmHead { get; init; }
    /// <summary>
    /// Word classes (e.g. [colours, shapes]) for a product-of-experts answer prior during this stage
    /// (<see cref="AnswerPrior"/>); null: none. Each word must be one token.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<string>>? AnswerPrior { get; init; }
    /// <summary>
    /// How many of the examples the stage trains on, in training order, the answer prior is counted on; null: all of
    /// them. A prior counted on fewer misses rare answers the training data has, so the model learns those pairs itself.
    /// </summary>
    public int? AnswerPriorSamples { get; init; }
    /// <summary>
    /// Decay d of a moving average of the stage's trainable weights (<see cref="ParameterAverage"/>: a ← d·a + (1 − d)·θ
    /// after every step, from the weights the stage starts with), which replaces the weights when the stage ends;
    /// 0: none. About the last 1/(1 − d) steps weigh in.
    /// </summary>
    public double EmaDecay { get; init; }
    /// <summary>
    /// Rate of the decoder's residual dropout in this stage (<see cref="LlamaDecoder.Forward"/>); 0: none. Each micro-batch
    /// draws its masks from the run's seed and its position in the run, so a resumed run draws the same ones.
    /// </summary>
    public double Dropout { get; init; }
    /// <summary>
    /// Weight β of the counterfactual twin loss (<see cref="TwinLoss"/>): every example the source has a twin for
    /// (<see cref="ITrainingSource.Twin"/>) is trained with its twin beside it in the micro-batch, and β times the squared
    /// difference of the two answers' logits over the <see cref="AnswerPrior"/> classes' words (centred within each class,
    /// summed over the words, averaged over the pairs) is added to the loss; 0: none. Needs <see cref="AnswerPrior"/>.
    /// </summary>
    public double TwinWeight { get; init; }
    /// <summary>
    /// Runs the stage's steps from <see cref="BranchFrom"/> on this many times, each branch from the weights, AdamW
    /// moments and moving average the first had at that step, and on its own order of the data past it; the stage ends
    /// with the mean of the branches' final weights (a "model soup" of one trajectory's forks: Wortsman et al. 2022).
    /// 1: no branches. Each further branch costs steps − branch_from steps.
    /// </summary>
    public int Branches { get; init; } = 1;
    /// <summary>The stage step at which the branches fork, in [0, steps).</summary>
    public int BranchFrom { get; init; }

    /// <summary>Optimiser steps the stage runs, every branch's counted.</summary>
    [JsonIgnore]
    public int TotalSteps => Steps + (Branches - 1) * (Steps - BranchFrom);

    /// <summary>Linear warmup, then cosine decay to MinLrRatio·Lr (HF's schedule when MinLrRatio = 0).</summary>
    public double LearningRate(int step)
    {
        int warm = (int)Math.Ceiling(WarmupRatio * Steps);
        if (step < warm) return Lr * (step + 1) / warm;
        double progress = Steps <= warm ? 1 : (double)(step - warm) / (Steps - warm);
        return Lr * (MinLrRatio + (1 - MinLrRatio) * 0.5 * (1 + Math.Cos(Math.PI * progress)));
    }
}

/// <summary>
/// A training run: seed, stages, logging and checkpoint cadence. Read from JSON with snake_case keys; unknown keys
/// are errors (a typo must not silently train the wrong thing).
/// </summary>
public sealed record TrainConfig
{
    public ulong Seed { get; init; } = 1;
    public required IReadOnlyList<StageConfig> Stages { get; init; }
    /// <summary>Longest example in positions, images spliced in; longer ones are cut. Null: the model's context
    /// (max_position_embeddings), which it may not exceed.</summary>
    public int? MaxLength { get; init; }
    public int LogEvery { get; init; } = 10;
    /// <summary>Save a resumable checkpoint every N global steps (0: only at the end of the run).</summary>
    public int CheckpointEvery { get; init; }

    public int TotalSteps => Stages.Sum(s => s.TotalSteps);

    /// <summary>This config with the steps of every stage given in epochs, from its data source's size.</summary>
    public TrainConfig WithEpochsResolved(Func<string, int> examples) => this with
    {
        Stages = [.. Stages.Select(s => s.Epochs is not { } epochs ? s : s with { Steps = StepsFor(s, epochs, examples(s.Data)) })],
    };

    private static int StepsFor(StageConfig s, double epochs, int examples)
    {
        // In decimal, so that a fraction such as 0.1 epochs of 30 examples is 3 steps, not the 4 that 0.1 × 30 in binary
        // floating point (3.0000000000000004) would round up to.
        decimal steps = Math.Ceiling((decimal)epochs * examples / ((decimal)s.BatchSize * s.GradAccum));
        return steps <= int.MaxValue ? (int)steps
            : throw new InvalidDataException($"stage '{s.Name}': {epochs} epochs of {examples} examples are more than {int.MaxValue} steps");
    }

    /// <summary>Throws on the first key out of range, naming source, stage and key. A stage given in epochs has its
    /// steps only once its source is known (<see cref="WithEpochsResolved"/>): the trainer validates again then.</summary>
    public void Validate(string source, bool stepsResolved = false)
    {
        if (Stages.Count == 0) throw new InvalidDataException($"{source}: 'stages' is empty");
        foreach (var (s, i) in Stages.Select((s, i) => (s, i)))
        {
            string at = $"{source}: stages[{i}] ('{s.Name}')";
            if (s.Steps < 0) throw new InvalidDataException($"{at}: 'steps' must be ≥ 0");
            if (s.Epochs is { } e && !(e > 0 && double.IsFinite(e))) throw new InvalidDataException($"{at}: 'epochs' must be > 0");
            if (!(s.Lr > 0)) throw new InvalidDataException($"{at}: 'lr' must be > 0");
            Count(s.BatchSize, MaxBatchSize, "batch_size", at);
            Count(s.GradAccum, MaxGradAccum, "grad_accum", at);
            if (s.WarmupRatio is < 0 or > 1) throw new InvalidDataException($"{at}: 'warmup_ratio' must be in [0,1]");
            if (s.MinLrRatio is < 0 or > 1) throw new InvalidDataException($"{at}: 'min_lr_ratio' must be in [0,1]");
            if (s.Trainable.Count == 0) throw new InvalidDataException($"{at}: 'trainable' is empty");
            if (s.AnswerPrior is { } classes && (classes.Count == 0 || classes.Any(c => c.Count == 0 || c.Any(string.IsNullOrWhiteSpace))))
                throw new InvalidDataException($"{at}: 'answer_prior' must be a non-empty array of non-empty arrays of words");
            if (s.AnswerPriorSamples < 1) throw new InvalidDataException($"{at}: 'answer_prior_samples' must be ≥ 1");
            Fraction(s.EmaDecay, "ema_decay", at);
            Fraction(s.Dropout, "dropout", at);
            NonNegative(s.WeightDecay, "weight_decay", at);
            NonNegative(s.GradClip, "grad_clip", at);
            if (s.VmLossWeight is { } lambda) NonNegative(lambda, "vm_loss_weight", at);
            NonNegative(s.TwinWeight, "twin_weight", at);
            if (s.TwinWeight > 0 && s.AnswerPrior is null)
                throw new InvalidDataException($"{at}: 'twin_weight' needs 'answer_prior' (its classes are the words whose logits twins compare)");
            if (s.Branches < 1) throw new InvalidDataException($"{at}: 'branches' must be ≥ 1");
            if (s.BranchFrom < 0 || s.Branches > 1 && (s.Epochs is null || stepsResolved) && s.BranchFrom >= s.Steps)
                throw new InvalidDataException($"{at}: 'branch_from' must be in [0, steps) ({s.Steps} steps)");
            if (s.BranchFrom > 0 && s.Branches == 1) throw new InvalidDataException($"{at}: 'branch_from' needs 'branches' > 1");
        }
        if (MaxLength < 2) throw new InvalidDataException($"{source}: 'max_length' must be ≥ 2");
        if (LogEvery < 1) throw new InvalidDataException($"{source}: 'log_every' must be ≥ 1");
        if (CheckpointEvery < 0) throw new InvalidDataException($"{source}: 'checkpoint_every' must be ≥ 0");
    }

    /// <summary>
    /// The most examples one micro-batch may hold. A micro-batch is built, and its activations kept for the backward
    /// pass, all at once: the pixels of 65,536 of LLaVA's 336-pixel images alone are 88 GB, and a larger batch fills the
    /// memory slowly enough to look like a hang. Gradient accumulation reaches larger batches.
    /// </summary>
    public const int MaxBatchSize = 1 << 16;

    /// <summary>
    /// The most micro-batches one optimiser step accumulates: 65,536 of the default 16 examples are a million examples a
    /// step, and a step logs nothing until it ends.
    /// </summary>
    public const int MaxGradAccum = 1 << 16;

    private static void Count(int value, int max, string key, string at)
    {
        if (value < 1 || value > max) throw new InvalidDataException($"{at}: '{key}' must be in [1, {max}], got {value}");
    }

    private static void Fraction(double value, string key, string at)
    {
        if (!(value is >= 0 and < 1)) throw new InvalidDataException($"{at}: '{key}' must be in [0,1)");
    }

    private static void NonNegative(double value, string key, string at)
    {
        if (!(value >= 0)) throw new InvalidDataException($"{at}: '{key}' must be ≥ 0");
    }

    /// <summary>Top-level keys: the run's own, plus those the caller interprets (model, data sources, tokenizer, output).</summary>
    public static readonly string[] TopKeys = ["seed", "stages", "max_length", "log_every", "checkpoint_every", "model", "shapesgrid", "datasets", "tokenizer", "out"];
    private static readonly string[] StageKeys =
        ["name", "data", "trainable", "steps", "epochs", "lr", "min_lr_ratio", "warmup_ratio", "batch_size", "grad_accum", "weight_decay", "grad_clip", "vm_loss_weight", "init_vm_head", "answer_prior", "answer_prior_samples", "ema_decay", "dropout", "twin_weight", "branches", "branch_from"];

    /// <summary>Parses the run part of a train config (model/shapesgrid/datasets/tokenizer/out keys are the caller's).</summary>
    public static TrainConfig Parse(JsonElement root, string source)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{source}: expected a JSON object");
        RejectUnknown(root, TopKeys, source);
        if (!root.TryGetProperty("stages", out var stages) || stages.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{source}: 'stages' must be an array");
        var list = new List<StageConfig>();
        int i = 0;
        foreach (var s in stages.EnumerateArray())
        {
            string at = $"{source}: stages[{i++}]";
            if (s.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{at}: expected an object");
            RejectUnknown(s, StageKeys, at);
            int? steps = Int(s, "steps", at);
            double? epochs = Num(s, "epochs", at);
            if (steps is not null && epochs is not null) throw new InvalidDataException($"{at}: 'steps' and 'epochs' exclude each other; give one");
            list.Add(new StageConfig
            {
                Name = Str(s, "name", at) ?? $"stage{i}",
                Data = Str(s, "data", at) ?? throw new InvalidDataException($"{at}: 'data' is missing"),
                Trainable = Groups(s, at),
                Steps = steps ?? (epochs is null ? throw new InvalidDataException($"{at}: 'steps' (or 'epochs') is missing") : 0),
                Epochs = epochs,
                Lr = Num(s, "lr", at) ?? throw new InvalidDataException($"{at}: 'lr' is missing"),
                MinLrRatio = Num(s, "min_lr_ratio", at) ?? 0,
                WarmupRatio = Num(s, "warmup_ratio", at) ?? 0.03,
                BatchSize = Int(s, "batch_size", at) ?? 16,
                GradAccum = Int(s, "grad_accum", at) ?? 1,
                WeightDecay = Num(s, "weight_decay", at) ?? 0,
                GradClip = Num(s, "grad_clip", at) ?? 1.0,
                VmLossWeight = Num(s, "vm_loss_weight", at),
                InitVmHead = Bool(s, "init_vm_head", at) ?? false,
                AnswerPrior = WordClasses(s, "answer_prior", at),
                AnswerPriorSamples = Int(s, "answer_prior_samples", at),
                EmaDecay = Num(s, "ema_decay", at) ?? 0,
                Dropout = Num(s, "dropout", at) ?? 0,
                TwinWeight = Num(s, "twin_weight", at) ?? 0,
                Branches = Int(s, "branches", at) ?? 1,
                BranchFrom = Int(s, "branch_from", at) ?? 0,
            });
        }
        var cfg = new TrainConfig
        {
            Stages = list,
            Seed = (ulong)(NonNegative(root, "seed", source) ?? 1),
            MaxLength = Int(root, "max_length", source),
            LogEvery = Int(root, "log_every", source) ?? 10,
            CheckpointEvery = Int(root, "checkpoint_every", source) ?? 0,
        };
        cfg.Validate(source);
        return cfg;
    }

    /// <summary>An object's keys must be known and each given once (<see cref="JsonKeys.FirstRepeated"/>).</summary>
    public static void RejectUnknown(JsonElement o, string[] known, string at)
    {
        foreach (var p in o.EnumerateObject())
            if (Array.IndexOf(known, p.Name) < 0)
                throw new InvalidDataException($"{at}: unknown key '{p.Name}' (known: {string.Join(", ", known)})");
        if (JsonKeys.FirstRepeated(o) is { } repeated) throw new InvalidDataException($"{at}: key '{repeated}' is given twice");
    }

    private static string? Str(JsonElement o, string key, string at) =>
        !o.TryGetProperty(key, out var v) ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString() : throw new InvalidDataException($"{at}: '{key}' must be a string");

    private static int? Int(JsonElement o, string key, string at) =>
        !o.TryGetProperty(key, out var v) ? null
        : JsonInt.Read(v, out string problem) ?? throw new InvalidDataException($"{at}: '{key}' {problem}");

    /// <summary>o's key as a non-negative 32-bit integer, null when absent; otherwise a one-line error naming at and key.</summary>
    public static int? NonNegative(JsonElement o, string key, string at) =>
        Int(o, key, at) is not { } x ? null : x >= 0 ? x : throw new InvalidDataException($"{at}: '{key}' must be a non-negative integer");

    private static bool? Bool(JsonElement o, string key, string at) =>
        !o.TryGetProperty(key, out var v) ? null
        : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw new InvalidDataException($"{at}: '{key}' must be true or false");

    private static double? Num(JsonElement o, string key, string at) =>
        !o.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.Number && double.IsFinite(v.GetDouble()) ? v.GetDouble()
        : throw new InvalidDataException($"{at}: '{key}' must be a finite number");

    private static IReadOnlyList<IReadOnlyList<string>>? WordClasses(JsonElement o, string key, string at)
    {
        if (!o.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        string shape = $"{at}: '{key}' must be an array of arrays of words, e.g. [[\"red\", \"blue\"], [\"circle\", \"square\"]]";
        if (v.ValueKind != JsonValueKind.Array) throw new InvalidDataException(shape);
        return v.EnumerateArray().Select(c => c.ValueKind != JsonValueKind.Array ? throw new InvalidDataException(shape)
            : (IReadOnlyList<string>)c.EnumerateArray().Select(w => w.ValueKind == JsonValueKind.String ? w.GetString()! : throw new InvalidDataException(shape)).ToList()).ToList();
    }

    private static IReadOnlyList<ParameterGroup> Groups(JsonElement o, string at)
    {
        if (!o.TryGetProperty("trainable", out var v) || v.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{at}: 'trainable' must be an array of vision|projector|llm|vm_head");
        return v.EnumerateArray().Select(e => (e.ValueKind == JsonValueKind.String ? e.GetString() : e.GetRawText()) switch
        {
            "vision" => ParameterGroup.Vision,
            "projector" => ParameterGroup.Projector,
            "llm" => ParameterGroup.Llm,
            "vm_head" => ParameterGroup.VmHead,
            var other => throw new InvalidDataException($"{at}: unknown trainable group '{other}' (vision, projector, llm, vm_head)"),
        }).ToList();
    }
}
