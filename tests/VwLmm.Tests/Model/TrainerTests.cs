using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using VwLmm.Model.Training;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Model;

/// <summary>Staged training: losses fall, and a run resumed from a checkpoint repeats the uninterrupted run bit for bit.</summary>
public class TrainerTests : CpuFixture
{
    private static TrainConfig Recipe(double emaDecay = 0, double dropout = 0, int branches = 1) => new()
    {
        Seed = 42,
        LogEvery = 1,
        MaxLength = 64,
        Stages =
        [
            new StageConfig { Name = "align", Data = "d", Trainable = [ParameterGroup.Projector, ParameterGroup.VmHead], Steps = 3, Lr = 1e-2, BatchSize = 4, EmaDecay = emaDecay, Dropout = dropout },
            new StageConfig { Name = "tune", Data = "d", Trainable = [ParameterGroup.Projector, ParameterGroup.Llm, ParameterGroup.VmHead], Steps = 4, Lr = 5e-3, BatchSize = 3, GradAccum = 2, EmaDecay = emaDecay, Dropout = dropout,
                              Branches = branches, BranchFrom = branches > 1 ? 2 : 0 },
        ],
    };

    /// <summary>Runs t to the end, or cancels it (saving a checkpoint when outDir is given) after stopAfter steps; the losses.</summary>
    internal static List<double> Run(Trainer t, string? outDir = null, int stopAfter = int.MaxValue)
    {
        var losses = new List<double>();
        using var cts = new CancellationTokenSource();
        t.OnStep = s =>
        {
            losses.Add(s.Loss);
            if (losses.Count == stopAfter) cts.Cancel();
        };
        t.Run(outDir, cts.Token);
        return losses;
    }

    /// <summary>With a moving average, the checkpoint (mid-way through the second stage) must carry it: the first stage's
    /// average becomes the second stage's start, and the second's becomes the final weights. With dropout, the resumed
    /// steps must draw the masks the uninterrupted ones drew.</summary>
    [TestCase(0.0, 0.0)]
    [TestCase(0.6, 0.0)]
    [TestCase(0.0, 0.3)]
    public void ResumeReproducesTheUninterruptedRunBitForBit(double emaDecay, double dropout) =>
        AssertResumeRepeatsTheRun(Recipe(emaDecay, dropout), steps: 7, stopAfter: 5);

    /// <summary>
    /// A stage with three branches (forking at its step 2 of 4: 4 + 2 + 2 steps) stopped as it begins (its zero moments
    /// and moving average saved, not read), at the fork, in the first branch past it, as the second branch starts (the
    /// fork and one finished branch in the checkpoint), and in the third: each resumed run ends with the uninterrupted
    /// run's losses and weights, bit for bit.
    /// </summary>
    [TestCase(3)]
    [TestCase(5)]
    [TestCase(6)]
    [TestCase(7)]
    [TestCase(10)]
    public void ResumeWithinABranchedStageReproducesTheUninterruptedRunBitForBit(int stopAfter) =>
        AssertResumeRepeatsTheRun(Recipe(emaDecay: 0.6, branches: 3), steps: 11, stopAfter);

    private void AssertResumeRepeatsTheRun(TrainConfig recipe, int steps, int stopAfter)
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        List<double> full;
        float[][] fullWeights;
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, recipe, _ => source, 64 << 20))
        {
            full = Run(t);
            fullWeights = [.. m.Parameters.All.Select(p => p.Value.ToArray())];
        }
        Assert.That(full, Has.Count.EqualTo(steps));

        string dir = Path.Combine(Path.GetTempPath(), "vwlmm-resume-" + Guid.NewGuid().ToString("N"));
        try
        {
            List<double> first, second;
            using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
            using (var t = new Trainer(m, recipe, _ => source, 64 << 20))
                first = Run(t, dir, stopAfter);
            Assert.That(first, Has.Count.EqualTo(stopAfter));
            string ckpt = Path.Combine(dir, Trainer.CheckpointDirName);
            using (var m = ModelCheckpoint.Load(Cpu, ckpt))
            using (var t = new Trainer(m, recipe, _ => source, 64 << 20))
            {
                t.Resume(ckpt);
                Assert.That(t.State.GlobalStep, Is.EqualTo(stopAfter));
                second = Run(t);
                foreach (var (p, i) in m.Parameters.All.Select((p, i) => (p, i)))
                    Assert.That(p.Value.ToArray(), Is.EqualTo(fullWeights[i]), $"{p.Name} after resume differs from the uninterrupted run");
            }
            Assert.That(first.Concat(second).ToList(), Is.EqualTo(full), "losses after resume differ from the uninterrupted run");
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Cancelled while a step reads its first micro-batch, the run stops before the step's next one instead of
    /// accumulating the rest, and saves the last whole step: resumed, it ends with the uninterrupted run's losses.
    /// </summary>
    [Test]
    public void CancellingBetweenMicroBatchesSavesTheLastWholeStep()
    {
        var cfg = TinyWorld.Config();
        var recipe = new TrainConfig
        {
            Seed = 42,
            MaxLength = 64,
            Stages = [new StageConfig { Name = "tune", Data = "d", Trainable = [ParameterGroup.Projector, ParameterGroup.Llm], Steps = 3, Lr = 5e-3, BatchSize = 2, GradAccum = 4 }],
        };
        var source = new TinyWorld.Source(cfg, 23);
        List<double> full;
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, recipe, _ => source, 64 << 20))
            full = Run(t);

        string dir = TempDirectories.Create("vwlmm-cancel-");
        using var cts = new CancellationTokenSource();
        // The first step reads 4 micro-batches of 2; the signal comes with the second step's first example.
        var reads = new CancellingSource(source, cancelAt: 9, cts);
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, recipe, _ => reads, 64 << 20))
        {
            t.Run(dir, cts.Token);
            Assert.That(t.State.GlobalStep, Is.EqualTo(1));
            Assert.That(reads.Reads, Is.EqualTo(10), "the second step read its first micro-batch only");
        }
        string ckpt = Path.Combine(dir, Trainer.CheckpointDirName);
        using (var m = ModelCheckpoint.Load(Cpu, ckpt))
        using (var t = new Trainer(m, recipe, _ => source, 64 << 20))
        {
            t.Resume(ckpt);
            Assert.That(t.State.GlobalStep, Is.EqualTo(1));
            Assert.That(Run(t), Is.EqualTo(full.Skip(1)), "losses after resume differ from the uninterrupted run");
        }
    }

    /// <summary>A source that cancels <paramref name="cts"/> when it is read for the <paramref name="cancelAt"/>-th time.</summary>
    private sealed class CancellingSource(ITrainingSource inner, int cancelAt, CancellationTokenSource cts) : ITrainingSource
    {
        public int Reads { get; private set; }
        public int Count => inner.Count;

        public TrainingExample Get(int index)
        {
            if (++Reads == cancelAt) cts.Cancel();
            return inner.Get(index);
        }
    }

    /// <summary>
    /// Branches over data whose every example is the same draw the same batches, so each repeats the first branch's
    /// steps from the fork only if it starts from the fork's weights, moments, moving average and step: their losses
    /// repeat the first branch's, and the mean of two equal weights ((θ + θ)·½, exact) is the weights of the run without
    /// branches, bit for bit.
    /// </summary>
    [Test]
    public void BranchesOverOneRepeatedExampleRepeatTheFirstBranch()
    {
        var cfg = TinyWorld.Config();
        var one = new OneExample(new TinyWorld.Source(cfg, 23));
        (List<StepMetrics> steps, float[][] weights) Train(int branches)
        {
            using var m = TinyWorld.Model(Cpu, cfg, seed: 5);
            using var t = new Trainer(m, Recipe(emaDecay: 0.6, branches: branches), _ => one, 64 << 20);
            var steps = new List<StepMetrics>();
            t.OnStep = steps.Add;
            t.Run(null, CancellationToken.None);
            return (steps, [.. m.Parameters.All.Select(p => p.Value.ToArray())]);
        }
        var (plainSteps, plain) = Train(1);
        var (steps, branched) = Train(2);
        Assert.That(steps.Select(s => (s.Stage, s.Branch, s.StageStep)), Is.EqualTo(new[]
        {
            ("align", 0, 1), ("align", 0, 2), ("align", 0, 3),
            ("tune", 0, 1), ("tune", 0, 2), ("tune", 0, 3), ("tune", 0, 4), ("tune", 1, 3), ("tune", 1, 4),
        }));
        Assert.That(steps.Select(s => s.GlobalStep), Is.EqualTo(Enumerable.Range(1, 9)));
        Assert.That(steps.Select(s => s.TotalSteps).Distinct(), Is.EqualTo(new[] { 9 }));
        Assert.That(steps.Take(7).Select(s => s.Loss), Is.EqualTo(plainSteps.Select(s => s.Loss)));
        Assert.That(steps.Skip(7).Select(s => s.Loss), Is.EqualTo(plainSteps.Skip(5).Select(s => s.Loss)), "the second branch's losses");
        for (int i = 0; i < plain.Length; i++) Assert.That(branched[i], Is.EqualTo(plain[i]), $"parameter {i}");
    }

    /// <summary>
    /// Over varied data each branch takes its own examples past the fork and ends elsewhere; the stage ends with the
    /// mean of the three branches' final weights (a double reference over the weights recorded at each branch's last
    /// step), and the parameters the stage does not train are left alone.
    /// </summary>
    [Test]
    public void ABranchedStageEndsWithTheMeanOfItsBranches()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        var recipe = new TrainConfig
        {
            Seed = 4,
            MaxLength = 64,
            Stages = [new StageConfig { Name = "tune", Data = "d", Trainable = [ParameterGroup.Projector, ParameterGroup.Llm], Steps = 5, Lr = 1e-2, BatchSize = 3, Branches = 3, BranchFrom = 2 }],
        };
        using var m = TinyWorld.Model(Cpu, cfg, seed: 6);
        m.Parameters.SetTrainable(recipe.Stages[0].Trainable);
        var trained = m.Parameters.All.Where(p => p.Trainable).ToArray();
        var frozen = m.Parameters.All.Where(p => !p.Trainable).Select(p => (p, v: p.Value.ToArray())).ToArray();
        var ends = new List<float[][]>();
        using var t = new Trainer(m, recipe, _ => source, 64 << 20);
        t.OnStep = s =>
        {
            if (s.StageStep == s.StageSteps) ends.Add([.. trained.Select(p => p.Value.ToArray())]);
        };
        t.Run(null, CancellationToken.None);
        Assert.That(ends, Has.Count.EqualTo(3));
        for (int i = 0; i < trained.Length; i++)
        {
            Assert.That(ends[1][i], Is.Not.EqualTo(ends[0][i]), $"{trained[i].Name}: branches 0 and 1 end alike");
            Assert.That(ends[2][i], Is.Not.EqualTo(ends[1][i]), $"{trained[i].Name}: branches 1 and 2 end alike");
            var mean = Enumerable.Range(0, ends[0][i].Length).Select(j => ((double)ends[0][i][j] + ends[1][i][j] + ends[2][i][j]) / 3).ToArray();
            OpHarness.AssertClose($"{trained[i].Name}: the stage's final weights against the branches' mean", mean, trained[i].Value.ToArray(), 1e-6);
        }
        foreach (var (p, v) in frozen) Assert.That(p.Value.ToArray(), Is.EqualTo(v), $"{p.Name} is frozen and not averaged");
    }

    [TestCase("\"branches\":0", "'branches' must be ≥ 1")]
    [TestCase("\"batch_size\":0", "'batch_size' must be in [1, 65536], got 0")]
    [TestCase("\"batch_size\":1000000000", "'batch_size' must be in [1, 65536], got 1000000000")]
    [TestCase("\"grad_accum\":65537", "'grad_accum' must be in [1, 65536], got 65537")]
    [TestCase("\"branches\":2,\"branch_from\":4", "'branch_from' must be in [0, steps) (4 steps)")]
    [TestCase("\"branches\":2,\"branch_from\":-1", "'branch_from' must be in [0, steps) (4 steps)")]
    [TestCase("\"branch_from\":2", "'branch_from' needs 'branches' > 1")]
    [TestCase("\"twin_weight\":-0.1", "'twin_weight' must be ≥ 0")]
    [TestCase("\"twin_weight\":0.1", "'twin_weight' needs 'answer_prior' (its classes are the words whose logits twins compare)")]
    public void StageKeysOutOfRangeOrWithoutWhatTheyNeedAreErrors(string keys, string message)
    {
        var e = Assert.Throws<InvalidDataException>(() => TrainConfig.Parse(System.Text.Json.JsonDocument.Parse(
            $$"""{"stages":[{"name":"tune","data":"d","trainable":["llm"],"steps":4,"lr":0.1,{{keys}}}]}""").RootElement, "train.json"))!;
        Assert.That(e.Message, Is.EqualTo($"train.json: stages[0] ('tune'): {message}"));
    }

    /// <summary>A stage given in epochs learns its step count from its data: a fork at or past it is refused then.</summary>
    [Test]
    public void ABranchPointPastAStageGivenInEpochsIsAnError()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        var recipe = new TrainConfig
        {
            MaxLength = 64,
            Stages = [new StageConfig { Name = "tune", Data = "d", Trainable = [ParameterGroup.Llm], Steps = 0, Epochs = 1, Lr = 1e-2, BatchSize = 4, Branches = 2, BranchFrom = 6 }],
        };
        using var m = TinyWorld.Model(Cpu, cfg, seed: 6);
        var e = Assert.Throws<InvalidDataException>(() => new Trainer(m, recipe, _ => source, 64 << 20))!;
        Assert.That(e.Message, Is.EqualTo("train config: stages[0] ('tune'): 'branch_from' must be in [0, steps) (6 steps)"));
    }

    /// <summary>Every index the same example: a source whose data order cannot matter.</summary>
    private sealed class OneExample(ITrainingSource inner) : ITrainingSource
    {
        public int Count => inner.Count;
        public TrainingExample Get(int index) => inner.Get(0);
    }

    /// <summary>Dropout acts in training (every step's loss moves) and draws the same masks in two runs of one seed.</summary>
    [Test]
    public void DropoutChangesEveryStepAndRepeatsWithTheSeed()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        List<double> Losses(double dropout)
        {
            using var m = TinyWorld.Model(Cpu, cfg, seed: 5);
            using var t = new Trainer(m, Recipe(dropout: dropout), _ => source, 64 << 20);
            return Run(t);
        }
        var plain = Losses(0);
        var dropped = Losses(0.3);
        Assert.That(dropped, Is.EqualTo(Losses(0.3)));
        for (int i = 0; i < plain.Count; i++) Assert.That(dropped[i], Is.Not.EqualTo(plain[i]), $"step {i + 1}");
    }

    /// <summary>The stage keys that take a fraction in [0, 1): read from the config, and anything else an error naming
    /// the file and the key.</summary>
    [TestCase("ema_decay")]
    [TestCase("dropout")]
    public void FractionKeysAreReadAndValuesOutsideZeroToOneAreErrors(string key)
    {
        StageConfig Parse(string value) => TrainConfig.Parse(System.Text.Json.JsonDocument.Parse(
            $$"""{"stages":[{"data":"d","trainable":["llm"],"steps":1,"lr":0.1,"{{key}}":{{value}}}]}""").RootElement, "train.json").Stages[0];
        var stage = Parse("0.25");
        Assert.That(key == "dropout" ? stage.Dropout : stage.EmaDecay, Is.EqualTo(0.25));
        foreach (string bad in new[] { "1", "-0.5", "\"high\"" })
        {
            var e = Assert.Throws<InvalidDataException>(() => Parse(bad))!;
            Assert.That(e.Message, Does.Contain("train.json").And.Contain($"'{key}'"), bad);
        }
    }

    [Test]
    public void ResumingAStageWithEmaDecayFromACheckpointWithoutTheAverageIsAnError()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        string dir = Path.Combine(Path.GetTempPath(), "vwlmm-resume-" + Guid.NewGuid().ToString("N"));
        try
        {
            using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
            using (var t = new Trainer(m, Recipe(), _ => source, 64 << 20))
                Run(t, dir, stopAfter: 5);
            string ckpt = Path.Combine(dir, Trainer.CheckpointDirName);
            using var model = ModelCheckpoint.Load(Cpu, ckpt);
            using var trainer = new Trainer(model, Recipe(emaDecay: 0.6), _ => source, 64 << 20);
            var changed = Assert.Throws<InvalidDataException>(() => trainer.Resume(ckpt))!;
            Assert.That(changed.Message, Does.Contain("stage 0 ('align') ran with ema_decay 0, this config gives 0.6"));
            // A state file that does not record its stages (written before they were) reaches the optimiser file.
            string state = Path.Combine(ckpt, "trainer_state.json");
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(state))!.AsObject();
            json.Remove("stages");
            File.WriteAllText(state, json.ToJsonString());
            var e = Assert.Throws<InvalidDataException>(() => trainer.Resume(ckpt))!;
            Assert.That(e.Message, Does.Contain("optimizer.safetensors").And.Contain(".ema").And.Contain("'tune'"));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// An optimizer.safetensors damaged mid-stage (stage 'tune' at step 2, every trainable parameter's moments due) is
    /// refused in one line naming the file and the tensor: a moment of the wrong shape, one missing, an entry nobody
    /// expects, and one renamed (missing and unexpected at once). Unchecked, the run resumed with zero or misread moments.
    /// </summary>
    [TestCase("shape")]
    [TestCase("missing")]
    [TestCase("extra")]
    [TestCase("renamed")]
    public void ResumeRefusesADamagedOptimizerFile(string damage)
    {
        const string moment = HfNames.EmbedTokens + ".exp_avg", stranger = "zzz.exp_avg";
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        string dir = Path.Combine(Path.GetTempPath(), "vwlmm-resume-" + Guid.NewGuid().ToString("N"));
        try
        {
            using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
            using (var t = new Trainer(m, Recipe(), _ => source, 64 << 20))
                Run(t, dir, stopAfter: 5);
            string ckpt = Path.Combine(dir, Trainer.CheckpointDirName);
            string file = Path.Combine(ckpt, "optimizer.safetensors");
            var shape = new Shape(cfg.Llm.VocabSize, cfg.Llm.HiddenSize);
            var transposed = new Shape(cfg.Llm.HiddenSize, cfg.Llm.VocabSize);
            RewriteTensors(file, entries => damage switch
            {
                "shape" => entries.Select(e => e.Name == moment ? e with { Shape = transposed } : e),
                "missing" => entries.Where(e => e.Name != moment),
                "extra" => entries.Append(new SafetensorsEntry(stranger, shape, new float[shape.Numel])),
                "renamed" => entries.Select(e => e.Name == moment ? e with { Name = stranger } : e),
                _ => throw new ArgumentException(damage),
            });
            string problem = damage switch
            {
                "shape" => $"1 mismatched tensor (vs config.json): {moment} expected {shape} got {transposed}",
                "missing" => $"1 missing tensor: {moment}",
                "extra" => $"1 unexpected tensor: {stranger}",
                _ => $"1 missing tensor: {moment}; 1 unexpected tensor: {stranger}",
            };
            using var model = ModelCheckpoint.Load(Cpu, ckpt);
            using var trainer = new Trainer(model, Recipe(), _ => source, 64 << 20);
            var e = Assert.Throws<InvalidDataException>(() => trainer.Resume(ckpt))!;
            Assert.That(e.Message, Is.EqualTo($"{file}: resuming stage 'tune' at step 2: {problem}"));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>AdamW's bias correction reads the step count: trainer_state.json's adam_step must be the stage's step.</summary>
    [Test]
    public void ResumeRefusesAnAdamStepThatIsNotTheStageStep()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        string dir = Path.Combine(Path.GetTempPath(), "vwlmm-resume-" + Guid.NewGuid().ToString("N"));
        try
        {
            using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
            using (var t = new Trainer(m, Recipe(), _ => source, 64 << 20))
                Run(t, dir, stopAfter: 5);
            string ckpt = Path.Combine(dir, Trainer.CheckpointDirName);
            string state = Path.Combine(ckpt, "trainer_state.json");
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(state))!.AsObject();
            Assert.That(json["adam_step"]!.GetValue<int>(), Is.EqualTo(2));
            json["adam_step"] = 7;
            File.WriteAllText(state, json.ToJsonString());
            using var model = ModelCheckpoint.Load(Cpu, ckpt);
            using var trainer = new Trainer(model, Recipe(), _ => source, 64 << 20);
            var e = Assert.Throws<InvalidDataException>(() => trainer.Resume(ckpt))!;
            Assert.That(e.Message, Is.EqualTo($"{state}: adam_step 7 differs from stage_step 2 (a stage's optimiser steps once per stage step)"));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Rewrites a safetensors file with the project's writer, its tensors (F32) changed by <paramref name="change"/>.</summary>
    internal static void RewriteTensors(string file, Func<IEnumerable<SafetensorsEntry>, IEnumerable<SafetensorsEntry>> change)
    {
        List<SafetensorsEntry> entries;
        using (var reader = CheckpointReader.Open(file))
            entries = [.. reader.Names.Select(n => new SafetensorsEntry(n, reader.GetInfo(n).Shape, reader.ReadFloat(n)))];
        SafetensorsWriter.Write(file, [.. change(entries)]);
    }

    /// <summary>
    /// ema_decay: the weights a stage ends with are the moving average of the weights it started with and those after
    /// each step (a double reference over the recorded trajectory), not the last step's.
    /// </summary>
    [Test]
    public void MovingAverageBecomesTheWeightsWhenTheStageEnds()
    {
        const double decay = 0.7;
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        var recipe = new TrainConfig
        {
            Seed = 4,
            MaxLength = 64,
            Stages = [new StageConfig { Name = "tune", Data = "d", Trainable = [ParameterGroup.Projector, ParameterGroup.Llm], Steps = 5, Lr = 1e-2, BatchSize = 3, EmaDecay = decay }],
        };
        using var m = TinyWorld.Model(Cpu, cfg, seed: 6);
        m.Parameters.SetTrainable(recipe.Stages[0].Trainable);
        var trained = m.Parameters.All.Where(p => p.Trainable).ToArray();
        var frozen = m.Parameters.All.Where(p => !p.Trainable).Select(p => (p, v: p.Value.ToArray())).ToArray();
        double[][] reference = [.. trained.Select(p => p.Value.ToArray().Select(x => (double)x).ToArray())];
        float[][] last = [];
        using var t = new Trainer(m, recipe, _ => source, 64 << 20);
        t.OnStep = _ =>
        {
            last = [.. trained.Select(p => p.Value.ToArray())];
            for (int i = 0; i < trained.Length; i++)
                for (int j = 0; j < last[i].Length; j++) reference[i][j] = decay * reference[i][j] + (1 - decay) * last[i][j];
        };
        t.Run(null, CancellationToken.None);
        for (int i = 0; i < trained.Length; i++)
        {
            var final = trained[i].Value.ToArray();
            OpHarness.AssertClose($"{trained[i].Name}: the stage's final weights against the average", reference[i], final, 1e-12);
            Assert.That(final, Is.Not.EqualTo(last[i]), $"{trained[i].Name}: the final weights are the average, not the last step's");
        }
        foreach (var (p, v) in frozen) Assert.That(p.Value.ToArray(), Is.EqualTo(v), $"{p.Name} is frozen and not averaged");
    }

    [Test]
    public void InitVmHeadCopiesTheTrainedEmbeddingWhenItsStageStarts()
    {
        var cfg = TinyWorld.Config() with { VmHeadInit = VmHeadInit.EmbedTokens };
        var source = new TinyWorld.Source(cfg, 23);
        var recipe = new TrainConfig
        {
            Seed = 3,
            MaxLength = 64,
            Stages =
            [
                new StageConfig { Name = "lm", Data = "d", Trainable = [ParameterGroup.Llm], Steps = 2, Lr = 1e-2, BatchSize = 2 },
                new StageConfig { Name = "align", Data = "d", Trainable = [ParameterGroup.Projector], Steps = 1, Lr = 1e-2, BatchSize = 2, InitVmHead = true },
            ],
        };
        using var m = TinyWorld.Model(Cpu, cfg, seed: 5);
        float[] initial = m.VmHead.Value.ToArray();
        float[]? embedAtAlign = null;
        using var t = new Trainer(m, recipe, _ => source, 64 << 20);
        t.OnStep = s =>
        {
            if (s.Stage == "lm" && s.StageStep == 2) embedAtAlign = m.Decoder.EmbedTokens.Value.ToArray();
        };
        t.Run(null, CancellationToken.None);
        float[] atAlign = m.VmHead.Value.ToArray();
        Assert.That(embedAtAlign, Is.Not.EqualTo(initial), "the LM stage moved embed_tokens");
        Assert.That(atAlign, Is.EqualTo(embedAtAlign), "the VM head starts align as a copy of the trained embed_tokens (and align does not train it)");

        var doc = System.Text.Json.JsonDocument.Parse("""{"stages":[{"data":"d","trainable":["vm_head"],"steps":1,"lr":0.1,"init_vm_head":true}]}""");
        Assert.That(TrainConfig.Parse(doc.RootElement, "train.json").Stages[0].InitVmHead, Is.True);
    }

    /// <summary>Weight decay, the clip norm and λ are read as given, and a negative or non-finite value is an error
    /// naming the file and the key (AdamW would otherwise grow the weights, or the clip silently switch off).</summary>
    [TestCase("weight_decay")]
    [TestCase("grad_clip")]
    [TestCase("vm_loss_weight")]
    public void NonNegativeStageKeysRejectNegativeValues(string key)
    {
        StageConfig Parse(string value) => TrainConfig.Parse(System.Text.Json.JsonDocument.Parse(
            $$"""{"stages":[{"data":"d","trainable":["llm"],"steps":1,"lr":0.1,"{{key}}":{{value}}}]}""").RootElement, "train.json").Stages[0];
        double? Value(string value)
        {
            var stage = Parse(value);
            return key switch { "weight_decay" => stage.WeightDecay, "grad_clip" => stage.GradClip, _ => stage.VmLossWeight };
        }
        Assert.That(Value("0"), Is.EqualTo(0));
        Assert.That(Value("2.5"), Is.EqualTo(2.5));
        foreach (string bad in new[] { "-1", "-1e-9", "1e400" })
        {
            var e = Assert.Throws<InvalidDataException>(() => Parse(bad))!;
            Assert.That(e.Message, Does.Contain("train.json").And.Contain($"'{key}'"), bad);
        }
    }

    [TestCase("""{"seed":1,"seed":2,"stages":[{"data":"d","trainable":["llm"],"steps":1,"lr":0.1}]}""", "'seed' is given twice")]
    [TestCase("""{"stages":[{"data":"d","trainable":["llm"],"steps":1,"lr":0.1,"lr":0.2}]}""", "'lr' is given twice")]
    [TestCase("""{"log_every":0,"stages":[{"data":"d","trainable":["llm"],"steps":1,"lr":0.1}]}""", "'log_every' must be ≥ 1")]
    public void RepeatedKeysAndAZeroLogIntervalAreErrors(string json, string message)
    {
        var e = Assert.Throws<InvalidDataException>(() => TrainConfig.Parse(System.Text.Json.JsonDocument.Parse(json).RootElement, "train.json"))!;
        Assert.That(e.Message, Does.StartWith("train.json").And.Contain(message));
    }

    [Test]
    public void UnknownConfigKeyIsAnError()
    {
        var doc = System.Text.Json.JsonDocument.Parse("""{"stages":[{"data":"d","trainable":["llm"],"steps":1,"lr":0.1,"batchsize":2}]}""");
        var e = Assert.Throws<InvalidDataException>(() => TrainConfig.Parse(doc.RootElement, "train.json"))!;
        Assert.That(e.Message, Does.Contain("train.json").And.Contain("batchsize"));
    }

    [Test]
    public void ScheduleWarmsUpThenDecays()
    {
        var s = new StageConfig { Name = "s", Data = "d", Trainable = [ParameterGroup.Llm], Steps = 100, Lr = 1.0, WarmupRatio = 0.1 };
        Assert.That(s.LearningRate(0), Is.EqualTo(0.1).Within(1e-12));
        Assert.That(s.LearningRate(9), Is.EqualTo(1.0).Within(1e-12));
        Assert.That(s.LearningRate(10), Is.EqualTo(1.0).Within(1e-12));
        Assert.That(s.LearningRate(55), Is.EqualTo(0.5).Within(1e-12));
        Assert.That(s.LearningRate(99), Is.LessThan(0.001));
    }
}
