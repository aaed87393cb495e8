using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using VwLmm.Core;
using VwLmm.Data.Batching;
using VwLmm.Data.Text;
using VwLmm.Model.Checkpoints;

namespace VwLmm.Model.Training;

/// <summary>What one optimiser step measured (written as a JSONL line on log steps); Loss = LossText + λ·LossVm +
/// LossTwin (the twin loss with its weight, <see cref="TwinLoss"/>; null in a stage without); TokensPerSecond counts every
/// position the step's batches ran (prompt, image and answer; not padding); TruncatedExamples counts the step's
/// examples that max_length cut once their images were spliced in; Branch is the stage's branch the step belongs to
/// (<see cref="StageConfig.Branches"/>; 0 in a stage without).</summary>
public sealed record StepMetrics(
    string Stage, int StageStep, int StageSteps, int GlobalStep, int TotalSteps, double LossText, double LossVm, double Loss,
    double GradNorm, double Lr, double TokensPerSecond, double Seconds, double? VisualWordEntropy, int? DistinctVisualWords,
    int TruncatedExamples, int Branch, double? LossTwin = null);

/// <summary>Where a run stands: enough, with the saved parameters and moments, to continue it bit for bit.</summary>
public sealed record TrainerState(int Stage, int StageStep, int GlobalStep, int AdamStep, ulong Seed, int Branch = 0);

/// <summary>
/// Runs a staged recipe: per stage, the trainable groups, a fresh AdamW (zero moments even for groups an earlier stage
/// trained), warmup + cosine LR, gradient accumulation
/// and clipping. The data order is a function of (seed, stage, branch, step) alone, so a resumed run sees the same batches;
/// with the parameters and AdamW moments saved exactly (F32), the CPU losses after resume equal the uninterrupted
/// run's bit for bit.
/// </summary>
public sealed class Trainer : IDisposable
{
    public const string CheckpointDirName = "checkpoint";
    private const string StateFile = "trainer_state.json";
    private const string OptimizerFile = "optimizer.safetensors";
    private const string AverageSuffix = ".ema";

    private readonly VwLmmModel _model;
    private readonly TrainConfig _config;
    private readonly Func<string, ITrainingSource> _sources;
    private readonly ITokenizer? _tokenizer;
    private readonly Arena _arena;
    private readonly Tape _tape;
    private float[] _pixels = [];
    private TrainerState _state;
    private AdamW? _adam;
    private ParameterAverage? _average;
    private StageBranches? _branches;
    private int[] _order = [];
    private (int stage, int epoch, int branch) _orderKey = (-1, -1, -1);
    private (int stage, int branch, AnswerPrior? prior) _prior = (-1, -1, null);
    private (int stage, TwinLoss? loss) _twins = (-1, null);
    // Per stage, its answer prior's words as tokens, class by class, and each token's class (null without a prior):
    // made when the trainer is, so a bad word stops the run before its first step, not when its stage begins.
    private readonly (int[][] Tokens, Dictionary<int, int> ClassOf)?[] _classTokens;
    private readonly List<(int sample, int answer, int twin)> _pairs = [];
    private readonly List<int> _rowsA = [], _rowsB = [];

    /// <summary>The tokenizer is needed only by stages with an answer prior (to find their class words). Stages given in
    /// epochs get their step counts here, from their sources' sizes.</summary>
    public Trainer(VwLmmModel model, TrainConfig config, Func<string, ITrainingSource> sources, long arenaBytes = 1L << 30, ITokenizer? tokenizer = null)
    {
        _model = model;
        // Positions past the context were never trained, and generation refuses prompts that reach them.
        int context = model.Config.Llm.MaxPositionEmbeddings;
        if (config.MaxLength > context)
            throw new InvalidDataException($"max_length {config.MaxLength} exceeds the model's context of {context} positions (max_position_embeddings)");
        _config = config.WithEpochsResolved(name => sources(name).Count) with { MaxLength = config.MaxLength ?? context };
        _config.Validate("train config", stepsResolved: true);
        _sources = sources;
        _tokenizer = tokenizer;
        _classTokens = [.. _config.Stages.Select(s => s.AnswerPrior is null ? ((int[][], Dictionary<int, int>)?)null : ClassTokens(s))];
        _arena = new Arena(model.Backend, arenaBytes);
        _tape = new Tape(model.Backend, _arena, record: true);
        _state = new TrainerState(0, 0, 0, 0, config.Seed);
        // Chat and eval default to the template the model answers in: that of the last stage with conversations.
        if (_config.Stages.Select(s => sources(s.Data).Template).LastOrDefault(t => t is not null) is { } template)
            model.RecordConversationTemplate(template);
    }

    public TrainerState State => _state;
    public bool Finished => _state.Stage >= _config.Stages.Count;

    /// <summary>Called after every step.</summary>
    public Action<StepMetrics>? OnStep { get; set; }

    /// <summary>Called with a checkpoint's directory before it is moved into place (to add files such as the tokenizer).</summary>
    public Action<string>? OnCheckpoint { get; set; }

    /// <summary>Trains until done or cancelled; on cancellation the current state is saved (when outDir is given).</summary>
    public void Run(string? outDir, CancellationToken cancel, TextWriter? metricsLog = null)
    {
        while (!Finished)
        {
            var stage = _config.Stages[_state.Stage];
            var source = _sources(stage.Data);
            if (source.Count == 0) throw new InvalidDataException($"stage '{stage.Name}': data source '{stage.Data}' is empty");
            _model.Parameters.SetTrainable(stage.Trainable);
            if (stage.InitVmHead && _state.StageStep == 0 && _state.Branch == 0) _model.ApplyVmHeadInit();
            _adam ??= NewOptimizer(stage);
            if (stage.EmaDecay > 0) _average ??= NewAverage(stage);
            while (_state.StageStep < stage.Steps)
            {
                if (stage.Branches > 1 && _branches is null && _state.StageStep == stage.BranchFrom)
                {
                    _branches = NewBranches(stage);
                    _branches.Fork(_average);
                }
                if (cancel.IsCancellationRequested)
                {
                    if (outDir is not null) SaveCheckpoint(outDir);
                    return;
                }
                StepMetrics? step;
                try
                {
                    step = Step(stage, source, cancel);
                }
                // A bad example (an image that does not decode, a file gone) surfaces while its batch is read, before the
                // step changes any weight: the last step's state is whole, so it is saved, and the run can go on once
                // the data is fixed instead of starting over.
                catch (Exception e) when (e is InvalidDataException or IOException && outDir is not null && _state.GlobalStep > 0)
                {
                    SaveCheckpoint(outDir);
                    throw new InvalidDataException($"{e.Message} (saved {Path.Combine(outDir, CheckpointDirName)} at step {_state.GlobalStep}: fix the data, then --resume)", e);
                }
                if (step is not { } m)
                {
                    if (outDir is not null) SaveCheckpoint(outDir);
                    return;
                }
                // A non-finite loss or gradient ends the run: AdamW skipped the update, and nothing is saved over the
                // last good checkpoint.
                if (!double.IsFinite(m.Loss) || !double.IsFinite(m.GradNorm))
                    throw new InvalidDataException($"stage '{stage.Name}', step {m.StageStep}: the {(double.IsFinite(m.Loss) ? $"gradient norm is {m.GradNorm}" : $"loss is {m.Loss}")} (L_text {m.LossText}, L_vm {m.LossVm}); training diverged or the data holds non-finite values (a lower lr or grad_clip may help)");
                if (metricsLog is not null && (m.StageStep % Math.Max(1, _config.LogEvery) == 0 || m.StageStep == stage.Steps))
                    metricsLog.WriteLine(JsonSerializer.Serialize(m, JsonOptions));
                OnStep?.Invoke(m);
                if (outDir is not null && _config.CheckpointEvery > 0 && _state.GlobalStep % _config.CheckpointEvery == 0)
                    SaveCheckpoint(outDir);
            }
            _average?.CopyToParameters();
            if (_branches is not null)
            {
                _branches.Add(_state.Branch);
                if (_state.Branch + 1 < stage.Branches)
                {
                    // The next branch: from the fork's weights, moments, average and step, on its own data order.
                    _branches.Restart(_average);
                    _adam!.StepCount = stage.BranchFrom;
                    _state = _state with { Branch = _state.Branch + 1, StageStep = stage.BranchFrom, AdamStep = stage.BranchFrom };
                    continue;
                }
                _branches.SetMean(stage.Branches);
                _branches.Dispose();
                _branches = null;
            }
            _average?.Dispose();
            _average = null;
            _state = _state with { Stage = _state.Stage + 1, StageStep = 0, AdamStep = 0, Branch = 0 };
            _adam?.Dispose();
            _adam = null;
        }
        if (outDir is not null) SaveCheckpoint(outDir);
    }

    /// <summary>The stage's optimiser, its moments zeroed (a resume then loads the saved ones over them).</summary>
    private AdamW NewOptimizer(StageConfig stage)
    {
        var adam = new AdamW(_model.Backend, _model.Parameters.All, weightDecay: (float)stage.WeightDecay) { StepCount = _state.AdamStep };
        adam.ResetMoments();
        return adam;
    }

    /// <summary>The stage's moving average of its trainable weights, starting from their values now.</summary>
    private ParameterAverage NewAverage(StageConfig stage) =>
        new(_model.Backend, _model.Parameters.All.Where(p => p.Trainable), (float)stage.EmaDecay);

    /// <summary>The buffers of a stage with branches, over the same parameters as its average.</summary>
    private StageBranches NewBranches(StageConfig stage) =>
        new(_model.Backend, _model.Parameters.All.Where(p => p.Trainable), average: stage.EmaDecay > 0);

    /// <summary>One optimiser step; null when <paramref name="cancel"/> stopped it between micro-batches, having changed
    /// no weight, moment or count.</summary>
    private StepMetrics? Step(StageConfig stage, ITrainingSource source, CancellationToken cancel)
    {
        var sw = Stopwatch.StartNew();
        var adam = _adam!;
        var builder = new BatchBuilder(_model.Vision.TokensPerImage, _config.MaxLength!.Value, _model.Config.Llm.VocabSize);
        double text = 0, vm = 0, total = 0;
        long tokens = 0;
        int truncated = 0;
        double? entropy = null;
        int? distinct = null;
        bool logStep = (_state.StageStep + 1) % Math.Max(1, _config.LogEvery) == 0 || _state.StageStep + 1 == stage.Steps;
        var prior = PriorFor(stage, source, builder);
        var twinLoss = TwinLossFor(stage);
        double? twin = twinLoss is null ? null : 0;
        adam.ZeroGrad();
        for (int micro = 0; micro < stage.GradAccum; micro++)
        {
            // A long accumulation would keep a signal waiting for minutes. Until AdamW steps, only the gradients have
            // changed, and they are not saved: the checkpoint then is that of the last whole step, as between steps.
            if (micro > 0 && cancel.IsCancellationRequested) return null;
            long first = ((long)_state.StageStep * stage.GradAccum + micro) * stage.BatchSize;
            var examples = Examples(stage, source, first, twinLoss is not null);
            var batch = builder.Build(examples.Select(e => e.Tokens).ToList());
            _tape.Reset();
            _tape.Track(_model.Parameters.All);
            var pixels = batch.ImageCount > 0 ? Ops.Input(_tape, GatherPixels(batch, examples), PixelShape(batch.ImageCount)) : null;
            var bias = prior is null ? null : Ops.Gather(_tape, Ops.Input(_tape, prior.Table, prior.Contexts, prior.Vocab), null, prior.RowMap(batch, lossRowsOnly: true));
            var output = _model.Forward(_tape, batch, pixels, stage.VmLossWeight, bias, DropoutFor(stage, micro), lossRowsOnly: true);
            double twinTerm = twinLoss is null ? 0 : AddTwinLoss(twinLoss, stage, batch, output.Logits);
            _tape.Backward();
            text += output.Text.Mean / stage.GradAccum;
            vm += output.Vm.Mean / stage.GradAccum;
            total += (output.Total + twinTerm) / stage.GradAccum;
            twin += twinTerm / stage.GradAccum;
            tokens += batch.KeyLengths.Sum();
            truncated += batch.TruncatedCount;
            if (logStep && micro == 0 && output.VmLogits is not null)
                (entropy, distinct) = VisualWordStatistics(output.VmLogits);
        }
        double lr = stage.LearningRate(_state.StageStep);
        double norm = adam.Step((float)lr, (float)stage.GradClip, 1f / stage.GradAccum);
        _average?.Update();
        _state = _state with { StageStep = _state.StageStep + 1, GlobalStep = _state.GlobalStep + 1, AdamStep = adam.StepCount };
        double seconds = sw.Elapsed.TotalSeconds;
        return new StepMetrics(stage.Name, _state.StageStep, stage.Steps, _state.GlobalStep, _config.TotalSteps, text, vm, total,
                               norm, lr, tokens / Math.Max(seconds, 1e-9), seconds, entropy, distinct, truncated, _state.Branch, twin);
    }

    /// <summary>The micro-batch's examples from position first of the stage's order; with twins, each example the source
    /// has a twin for is followed by it, and _pairs says where they are.</summary>
    private TrainingExample[] Examples(StageConfig stage, ITrainingSource source, long first, bool twins)
    {
        _pairs.Clear();
        if (!twins)
        {
            var examples = new TrainingExample[stage.BatchSize];
            for (int i = 0; i < examples.Length; i++) examples[i] = source.Get(IndexAt(source, stage, _state.Branch, first + i));
            return examples;
        }
        var list = new List<TrainingExample>(2 * stage.BatchSize);
        for (int i = 0; i < stage.BatchSize; i++)
        {
            int index = IndexAt(source, stage, _state.Branch, first + i);
            list.Add(source.Get(index));
            if (source.Twin(index) is not { } twin) continue;
            _pairs.Add((list.Count - 1, twin.Answer, list.Count));
            list.Add(twin.Example);
        }
        return [.. list];
    }

    /// <summary>Adds the twin loss of the micro-batch's pairs (<see cref="Examples"/>) to the tape; returns its value.</summary>
    private double AddTwinLoss(TwinLoss loss, StageConfig stage, Batch batch, Tensor logits)
    {
        _rowsA.Clear();
        _rowsB.Clear();
        foreach (var (sample, answer, twin) in _pairs)
            if (TwinLoss.AnswerRow(batch, sample, answer) is int a && TwinLoss.AnswerRow(batch, twin, 0) is int b)
            {
                // Answer rows are supervised, so the step's logits (Batch.LossRows) hold them.
                _rowsA.Add(batch.LossRowOf(a));
                _rowsB.Add(batch.LossRowOf(b));
            }
        return loss.Add(_tape, logits, CollectionsMarshal.AsSpan(_rowsA), CollectionsMarshal.AsSpan(_rowsB), (float)stage.TwinWeight);
    }

    /// <summary>The stage's twin loss over its answer prior's words; null when the stage has no twin weight.</summary>
    private TwinLoss? TwinLossFor(StageConfig stage)
    {
        if (!(stage.TwinWeight > 0)) return null;
        if (_twins.stage != _state.Stage)
            _twins = (_state.Stage, new TwinLoss(_model.Config.Llm.VocabSize, _classTokens[_state.Stage]!.Value.Tokens));
        return _twins.loss;
    }

    /// <summary>The token of each word of the stage's answer prior classes, class by class, and each token's class; each
    /// word must be one token, and no token may be listed twice.</summary>
    private (int[][] Tokens, Dictionary<int, int> ClassOf) ClassTokens(StageConfig stage)
    {
        var tok = _tokenizer ?? throw new InvalidOperationException($"stage '{stage.Name}': answer_prior needs the trainer's tokenizer");
        var classOf = new Dictionary<int, int>();
        int[][] tokens = [.. stage.AnswerPrior!.Select((words, c) => words.Select(word =>
        {
            var ids = tok.Encode(word, addBos: false);
            if (ids.Length != 1)
                throw new InvalidDataException($"stage '{stage.Name}': answer_prior word '{word}' is {ids.Length} tokens; each must be one token");
            if (!classOf.TryAdd(ids[0], c))
                throw new InvalidDataException($"stage '{stage.Name}': answer_prior word '{word}' is {(classOf[ids[0]] == c ? "listed twice" : "in two classes")}");
            return ids[0];
        }).ToArray())];
        return (tokens, classOf);
    }

    /// <summary>The stage's dropout for a micro-batch of this step: its seed follows from the run's seed, the global
    /// step and the micro-batch alone, so a resumed run drops what the uninterrupted one did.</summary>
    private DropoutPlan DropoutFor(StageConfig stage, int micro) =>
        new((float)stage.Dropout, Rng.SplitMix64(Rng.SplitMix64(_config.Seed ^ DropoutStream, _state.GlobalStep), micro));

    // Keeps the dropout seeds apart from the other draws made from the run's seed.
    private const ulong DropoutStream = 0xD7_0900_75EE_D5UL;

    /// <summary>
    /// The stage's answer prior, counted once per stage on the examples the stage trains on, in training order (all of
    /// them, or the first <see cref="StageConfig.AnswerPriorSamples"/>; in a stage with branches, each branch's own,
    /// counted as it starts; a resumed run counts the same); null when the stage has none or no context names a class word.
    /// </summary>
    private AnswerPrior? PriorFor(StageConfig stage, ITrainingSource source, BatchBuilder builder)
    {
        if (stage.AnswerPrior is null) return null;
        if ((_prior.stage, _prior.branch) == (_state.Stage, _state.Branch)) return _prior.prior;
        long visited = (long)stage.Steps * stage.GradAccum * stage.BatchSize;
        int n = (int)Math.Min(visited, stage.AnswerPriorSamples ?? int.MaxValue);
        var batches = Enumerable.Range(0, (n + stage.BatchSize - 1) / stage.BatchSize).Select(i =>
            builder.Build(Enumerable.Range(i * stage.BatchSize, Math.Min(stage.BatchSize, n - i * stage.BatchSize)).Select(k => source.Tokens(IndexAt(source, stage, _state.Branch, k))).ToList()));
        var prior = AnswerPrior.Count(batches, _classTokens[_state.Stage]!.Value.ClassOf, _model.Config.Llm.VocabSize);
        _prior = (_state.Stage, _state.Branch, prior.Contexts > 0 ? prior : null);
        return _prior.prior;
    }

    // Epoch e of stage s visits the source in a permutation drawn from (seed, s, e); branch b > 0 of a stage with
    // branches draws the examples of its steps past the fork from a permutation of its own, (seed, s, e, b).
    private int IndexAt(ITrainingSource source, StageConfig stage, int branch, long k)
    {
        int epoch = (int)(k / source.Count);
        if (k < (long)stage.BranchFrom * stage.GradAccum * stage.BatchSize) branch = 0;
        if (_orderKey != (_state.Stage, epoch, branch) || _order.Length != source.Count)
        {
            _order = Enumerable.Range(0, source.Count).ToArray();
            ulong salt = (ulong)branch * 0x9E37_79B9_7F4A_7C15UL;
            new Rng(_config.Seed ^ ((ulong)(_state.Stage + 1) << 48) ^ ((ulong)epoch << 16) ^ salt).Shuffle<int>(_order);
            _orderKey = (_state.Stage, epoch, branch);
        }
        return _order[(int)(k % source.Count)];
    }

    private int[] PixelShape(int images)
    {
        var v = _model.Config.Vision;
        return [images, v.NumChannels, v.ImageSize, v.ImageSize];
    }

    /// <summary>The batch's images in order, in a host buffer reused across steps.</summary>
    private ReadOnlySpan<float> GatherPixels(Batch batch, TrainingExample[] examples)
    {
        var v = _model.Config.Vision;
        int per = v.NumChannels * v.ImageSize * v.ImageSize;
        if (_pixels.Length < batch.ImageCount * per) _pixels = new float[batch.ImageCount * per];
        var all = _pixels;
        for (int i = 0; i < batch.ImageCount; i++)
        {
            var px = examples[batch.Images[i].Sample].Pixels
                ?? throw new InvalidDataException($"example {batch.Images[i].Sample} has an image placeholder but no pixels");
            if (px.Length != per) throw new InvalidDataException($"example {batch.Images[i].Sample}: pixels have {px.Length} values, expected {per}");
            px.CopyTo(all, i * per);
        }
        return all.AsSpan(0, batch.ImageCount * per);
    }

    /// <summary>Mean entropy (nats) of the visual words p = softmax(a) and the number of distinct argmax words.</summary>
    public static (double entropy, int distinct) VisualWordStatistics(Tensor vmLogits)
    {
        int n = vmLogits.Shape[0], v = vmLogits.Shape[1];
        var a = vmLogits.ToArray();
        var seen = new HashSet<int>();
        double sum = 0;
        for (int r = 0; r < n; r++)
        {
            var row = a.AsSpan(r * v, v);
            int arg = HostMath.ArgMax(row);
            float max = row[arg];
            seen.Add(arg);
            double z = 0, ez = 0;
            for (int j = 0; j < v; j++)
            {
                double e = Math.Exp(row[j] - max);
                z += e;
                ez += e * (row[j] - max);
            }
            sum += Math.Log(z) - ez / z;
        }
        return (n == 0 ? 0 : sum / n, seen.Count);
    }

    /// <summary>
    /// Writes outDir/checkpoint: the model in HF layout, trainer_state.json and optimizer.safetensors (AdamW moments
    /// as &lt;param&gt;.exp_avg / .exp_avg_sq; mid-stage, the moving average of a stage with ema_decay as &lt;param&gt;.ema,
    /// while the model files hold the last step's weights; past a branched stage's fork, <see cref="StageBranches.Saved"/>). Built in a temporary directory and swapped in, so a crash mid-save keeps
    /// the previous checkpoint (as checkpoint.old-PID when it falls between the two moves: see <see cref="ResumableCheckpoint"/>).
    /// </summary>
    public void SaveCheckpoint(string outDir)
    {
        AtomicFile.ReplaceDirectory(Path.Combine(outDir, CheckpointDirName), temp =>
        {
            ModelCheckpoint.Save(_model, temp);
            var moments = new List<SafetensorsEntry>();
            foreach (var p in _model.Parameters.All)
            {
                if (p.ExpAvg is null || p.ExpAvgSq is null || !p.Trainable) continue;
                moments.Add(new SafetensorsEntry(p.Name + ".exp_avg", p.Shape, p.ExpAvg.ToArray()));
                moments.Add(new SafetensorsEntry(p.Name + ".exp_avg_sq", p.Shape, p.ExpAvgSq.ToArray()));
            }
            if (_average is { } avg)
                for (int i = 0; i < avg.Parameters.Count; i++)
                    moments.Add(new SafetensorsEntry(avg.Parameters[i].Name + AverageSuffix, avg.Parameters[i].Shape, avg.Average(i).ToArray()));
            if (_branches is { } branches)
                foreach (var (name, value) in branches.Saved(_state.Branch))
                    moments.Add(new SafetensorsEntry(name, value.Shape, value.ToArray()));
            SafetensorsWriter.Write(Path.Combine(temp, OptimizerFile), moments);
            AtomicFile.WriteAllText(Path.Combine(temp, StateFile), StateJson());
            OnCheckpoint?.Invoke(temp);
        });
    }

    /// <summary>
    /// trainer_state.json: the state, and the max_length and stages (as this run configured them) that the run has
    /// begun, which a resumed run must repeat to repeat the bits (<see cref="Resume"/> checks them).
    /// </summary>
    private string StateJson()
    {
        var json = JsonSerializer.SerializeToNode(_state, JsonOptions)!.AsObject();
        json["max_length"] = _config.MaxLength;
        json["stages"] = JsonSerializer.SerializeToNode(_config.Stages.Take(BegunStages(_state)).ToList(), JsonOptions);
        return json.ToJsonString();
    }

    private static int BegunStages(TrainerState s) => s.Stage + (s.StageStep > 0 ? 1 : 0);

    /// <summary>
    /// How <paramref name="config"/> (its steps resolved from epochs) differs from the run that wrote the checkpoint
    /// in <paramref name="checkpointDir"/>, in a stage that run has begun or in max_length; null when it does not.
    /// Resuming across such a difference would neither repeat that run nor be a run of this config. Stages not begun
    /// may differ, and more may follow (that is how a finished run trains further). State files written before the
    /// stages were recorded are not checked.
    /// </summary>
    public static string? DifferenceFrom(string checkpointDir, TrainConfig config) => ReadState(Path.Combine(checkpointDir, StateFile), config).Difference;

    /// <summary>
    /// A checkpoint's trainer_state.json and how the stages it began differ from <paramref name="config"/>'s (null: they
    /// do not); a file that is not such a state, a key of the wrong kind or a negative count included, is an
    /// InvalidDataException naming it.
    /// </summary>
    private static (TrainerState State, string? Difference) ReadState(string statePath, TrainConfig config)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(statePath));
            var state = doc.RootElement.Deserialize<TrainerState>(JsonOptions) ?? throw new InvalidDataException($"{statePath}: empty trainer state");
            if (state.Stage < 0 || state.StageStep < 0 || state.GlobalStep < 0 || state.AdamStep < 0 || state.Branch < 0)
                throw new InvalidDataException($"{statePath}: a negative stage, step or branch ({state})");
            return (state, DifferenceFrom(doc.RootElement, config));
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException)
        {
            throw new InvalidDataException($"{statePath}: not a trainer state that vwlmm train writes: {e.Message}");
        }
    }

    private static string? DifferenceFrom(JsonElement state, TrainConfig config)
    {
        if (state.TryGetProperty("max_length", out var maxLength) && config.MaxLength is { } given && maxLength.GetInt32() != given)
            return $"the checkpoint's run had max_length {maxLength.GetInt32()}, this config {config.MaxLength}";
        if (!state.TryGetProperty("stages", out var begun)) return null;
        int i = 0;
        foreach (var stored in begun.EnumerateArray())
        {
            string name = stored.GetProperty("name").GetString()!;
            if (i >= config.Stages.Count) return $"the checkpoint's run began stage {i} ('{name}'), this config has {config.Stages.Count} stages";
            if (JsonDifference.First(stored, JsonSerializer.SerializeToElement(config.Stages[i], JsonOptions)) is { } d)
                return $"stage {i} ('{name}') ran with {d.Key} {d.Was}, this config gives {d.Now}";
            i++;
        }
        return null;
    }

    /// <summary>
    /// The checkpoint to resume outDir from: outDir/checkpoint or, when a crash between <see cref="SaveCheckpoint"/>'s
    /// two moves left only the previous one moved aside, the most advanced complete checkpoint.old-PID (said on
    /// <paramref name="log"/>); null when there is neither.
    /// </summary>
    public static string? ResumableCheckpoint(string outDir, TextWriter log)
    {
        string final = Path.Combine(outDir, CheckpointDirName);
        if (Directory.Exists(final)) return final;
        if (!Directory.Exists(outDir)) return null;
        string? aside = Directory.GetDirectories(outDir, CheckpointDirName + ".old-*")
            .Select(d => (dir: d, step: CompleteCheckpointStep(d)))
            .Where(c => c.step is not null)
            .OrderByDescending(c => c.step)
            .Select(c => c.dir)
            .FirstOrDefault();
        if (aside is not null) log.WriteLine($"{final} is missing (a checkpoint save was interrupted): resuming from {aside}");
        return aside;
    }

    // A checkpoint moved aside is complete, but one a crash interrupted while deleting it is not: every file must be there.
    private static int? CompleteCheckpointStep(string dir)
    {
        bool weights = File.Exists(Path.Combine(dir, CheckpointReader.SingleFileName)) || File.Exists(Path.Combine(dir, CheckpointReader.IndexFileName));
        string state = Path.Combine(dir, StateFile);
        if (!weights || !File.Exists(Path.Combine(dir, VwLmmConfig.FileName)) || !File.Exists(Path.Combine(dir, OptimizerFile)) || !File.Exists(state))
            return null;
        try
        {
            return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(state), JsonOptions)?.GlobalStep;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Restores trainer state and AdamW moments from a checkpoint directory whose weights are already loaded.</summary>
    public void Resume(string checkpointDir)
    {
        string statePath = Path.Combine(checkpointDir, StateFile);
        if (!File.Exists(statePath)) throw new FileNotFoundException($"{statePath}: no trainer state to resume from", statePath);
        var (state, difference) = ReadState(statePath, _config);
        if (state.Seed != _config.Seed)
            throw new InvalidDataException($"{statePath}: checkpoint was trained with seed {state.Seed}, this run's seed is {_config.Seed}");
        if (difference is not null)
            throw new InvalidDataException($"{statePath}: {difference}: a resumed run repeats the stages it has begun (add a stage to train further)");
        if (state.Stage > _config.Stages.Count)
            throw new InvalidDataException($"{statePath}: stage {state.Stage} is beyond the config's {_config.Stages.Count} stages");
        if (state.Branch != 0 && (state.Stage >= _config.Stages.Count || state.Branch >= _config.Stages[state.Stage].Branches))
            throw new InvalidDataException($"{statePath}: branch {state.Branch} is beyond the stage's branches");
        if (state.Stage < _config.Stages.Count && state.StageStep > _config.Stages[state.Stage].Steps)
            throw new InvalidDataException($"{statePath}: stage_step {state.StageStep} is past stage {state.Stage}'s {_config.Stages[state.Stage].Steps} steps");
        if (state.AdamStep != state.StageStep)
            throw new InvalidDataException($"{statePath}: adam_step {state.AdamStep} differs from stage_step {state.StageStep} (a stage's optimiser steps once per stage step)");
        _state = state;
        if (Finished) return;
        var stage = _config.Stages[_state.Stage];
        _model.Parameters.SetTrainable(stage.Trainable);
        using var reader = CheckpointReader.Open(Path.Combine(checkpointDir, OptimizerFile));
        // Every tensor is checked, read or not: a file other than the one saved would not repeat the run.
        CheckpointValidator.Validate(reader, SavedOptimizerTensors(stage), allowUnusedOption: null,
            context: $"resuming stage '{stage.Name}' at step {_state.StageStep}{(_state.Branch > 0 ? $" of branch {_state.Branch}" : "")}");
        _adam?.Dispose();
        _adam = NewOptimizer(stage);
        void Restore(string name, Tensor into)
        {
            var host = new float[into.Numel];
            reader.ReadFloat(name, host);
            _model.Backend.Upload<float>(into, host);
        }
        // At a stage's first step the saved moments are the previous stage's (a finished run resumed with a stage
        // added): the new stage's optimiser starts from zero, as it does in a run that never stopped.
        if (_state.StageStep > 0)
            foreach (var p in _model.Parameters.All.Where(p => p.Trainable))
            {
                var (m, v) = p.Moments();
                Restore(p.Name + ".exp_avg", m);
                Restore(p.Name + ".exp_avg_sq", v);
            }
        _average?.Dispose();
        _average = null;
        if (stage.EmaDecay > 0 && _state.StageStep > 0)
        {
            _average = NewAverage(stage);
            for (int i = 0; i < _average.Parameters.Count; i++)
                Restore(_average.Parameters[i].Name + AverageSuffix, _average.Average(i));
        }
        _branches?.Dispose();
        _branches = null;
        // Past the first branch's fork the fork and the finished branches' sum are saved; at the fork, the first branch
        // takes it again from the weights it resumes with.
        if (stage.Branches > 1 && (_state.Branch > 0 || _state.StageStep > stage.BranchFrom))
        {
            _branches = NewBranches(stage);
            foreach (var (name, value) in _branches.Saved(_state.Branch))
                Restore(name, value);
        }
    }

    /// <summary>
    /// What <see cref="SaveCheckpoint"/> writes to optimizer.safetensors in the state being resumed (stage's groups
    /// trainable), by name and shape: a tensor a checkpoint of this state may or may not hold is optional.
    /// </summary>
    private List<ExpectedTensor> SavedOptimizerTensors(StageConfig stage)
    {
        var trainable = _model.Parameters.All.Where(p => p.Trainable).ToList();
        var expected = new List<ExpectedTensor>();
        void Add(IEnumerable<Parameter> ps, IEnumerable<string> suffixes, bool required) =>
            expected.AddRange(ps.SelectMany(p => suffixes.Select(s => new ExpectedTensor(p.Name + s, p.Shape, required))));
        bool begun = _state.StageStep > 0;
        // Mid-stage the moments are exactly the trainable parameters'. At a stage's first step they are this stage's
        // zeros (saved as it began) or the last stage's (a finished run; other groups), and go unread.
        Add(begun ? trainable : _model.Parameters.All, [".exp_avg", ".exp_avg_sq"], begun);
        // The average is made as the stage begins, so a save before its first step may hold it too.
        if (stage.EmaDecay > 0) Add(trainable, [AverageSuffix], begun);
        // The fork is taken as the step at branch_from begins: a save before that step runs may hold it or not.
        if (stage.Branches > 1 && (_state.Branch > 0 || _state.StageStep >= stage.BranchFrom))
            Add(trainable, StageBranches.SavedSuffixes(stage.EmaDecay > 0, _state.Branch), _state.Branch > 0 || _state.StageStep > stage.BranchFrom);
        return expected;
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    public void Dispose()
    {
        _adam?.Dispose();
        _average?.Dispose();
        _branches?.Dispose();
        _arena.Dispose();
    }
}
