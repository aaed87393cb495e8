using System.Text.Json;
using System.Text.Json.Nodes;
using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Data.Conversations;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using VwLmm.Model.Training;
using static VwLmm.Tests.Cli.CliRunner;

namespace VwLmm.Tests.Model;

/// <summary>
/// Stages that re-train a group, checkpoints a crash interrupted, stage lengths in epochs, accumulation, clipping, the
/// metrics log, and `vwlmm train`'s seed, ablation switches and config errors through the real binary.
/// </summary>
public class TrainerStageTests : CpuFixture
{
    // The LLM is trained, frozen, then trained again: the third stage's optimiser must not inherit the first's moments.
    private static TrainConfig RetrainRecipe() => new()
    {
        Seed = 11,
        LogEvery = 1,
        MaxLength = 64,
        Stages =
        [
            new StageConfig { Name = "lm", Data = "d", Trainable = [ParameterGroup.Llm], Steps = 3, Lr = 1e-2, BatchSize = 3 },
            new StageConfig { Name = "align", Data = "d", Trainable = [ParameterGroup.Projector], Steps = 3, Lr = 1e-2, BatchSize = 3 },
            new StageConfig { Name = "again", Data = "d", Trainable = [ParameterGroup.Llm], Steps = 3, Lr = 1e-2, BatchSize = 3 },
        ],
    };

    [Test]
    public void ResumeInAMiddleStageReproducesALaterStageThatRetrainsAGroup()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        List<double> full;
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, RetrainRecipe(), _ => source, 64 << 20))
            full = TrainerTests.Run(t);
        Assert.That(full, Has.Count.EqualTo(9));

        string dir = TempDir();
        List<double> first, second;
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, RetrainRecipe(), _ => source, 64 << 20))
            first = TrainerTests.Run(t, dir, stopAfter: 4);
        string ckpt = Path.Combine(dir, Trainer.CheckpointDirName);
        second = ResumeAndRun(ckpt, RetrainRecipe(), source, t => Assert.That((t.State.Stage, t.State.StageStep), Is.EqualTo((1, 1)), "the checkpoint is in the middle stage"));
        Assert.That(first.Concat(second).ToList(), Is.EqualTo(full), "losses after resume differ from the uninterrupted run");
    }

    [Test]
    public void AFinishedRunResumedWithAStageAddedReproducesTheRunThatHadItFromTheStart()
    {
        // The added stage trains what the last finished one trained, whose moments the final checkpoint holds.
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        var run = RetrainRecipe();
        var longer = run with { Stages = [.. run.Stages.Take(2), run.Stages[1] with { Name = "more" }] };
        List<double> full;
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, longer, _ => source, 64 << 20))
            full = TrainerTests.Run(t);
        string dir = TempDir();
        List<double> first;
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, run with { Stages = [.. run.Stages.Take(2)] }, _ => source, 64 << 20))
            first = TrainerTests.Run(t, dir);
        var added = ResumeAndRun(Path.Combine(dir, Trainer.CheckpointDirName), longer, source);
        Assert.That(first.Concat(added).ToList(), Is.EqualTo(full), "the added stage starts from zero moments, as in the longer run");
    }

    [Test]
    public void MaxLengthDefaultsToTheModelsContextWhichItMayNotExceed()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        using var m = TinyWorld.Model(Cpu, cfg, seed: 5);
        var run = RetrainRecipe() with { Stages = [RetrainRecipe().Stages[0] with { Steps = 1 }] };
        Assert.That(Assert.Throws<InvalidDataException>(() => new Trainer(m, run with { MaxLength = 65 }, _ => source, 64 << 20))!.Message,
                    Is.EqualTo("max_length 65 exceeds the model's context of 64 positions (max_position_embeddings)"));
        string dir = TempDir();
        using (var t = new Trainer(m, run with { MaxLength = null }, _ => source, 64 << 20))
            t.Run(dir, CancellationToken.None);
        using var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, Trainer.CheckpointDirName, "trainer_state.json")));
        Assert.That(state.RootElement.GetProperty("max_length").GetInt32(), Is.EqualTo(cfg.Llm.MaxPositionEmbeddings));
    }

    [Test]
    public void ResumeRefusesAConfigThatChangesABegunStageAndTakesNewOnes()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        string dir = TempDir();
        var run = RetrainRecipe();
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, run, _ => source, 64 << 20))
            TrainerTests.Run(t, dir, stopAfter: 4); // in the middle of stage 1 ('align')
        string ckpt = Path.Combine(dir, Trainer.CheckpointDirName);
        int Resume(TrainConfig config) => ResumeAndRun(ckpt, config, source).Count;
        string Refused(TrainConfig config) => Assert.Throws<InvalidDataException>(() => Resume(config))!.Message;
        Assert.That(Refused(run with { Stages = [run.Stages[0], run.Stages[1] with { Lr = 2e-2 }, run.Stages[2]] }),
                    Does.Contain("stage 1 ('align') ran with lr 0.01, this config gives 0.02"));
        Assert.That(Refused(run with { Stages = [run.Stages[0] with { Trainable = [ParameterGroup.Llm, ParameterGroup.VmHead] }, .. run.Stages.Skip(1)] }),
                    Does.Contain("stage 0 ('lm') ran with trainable [\"llm\"], this config gives [\"llm\",\"vm_head\"]"));
        Assert.That(Refused(run with { Stages = [run.Stages[0]] }), Does.Contain("began stage 1 ('align'), this config has 1 stages"));
        Assert.That(Refused(run with { MaxLength = 32 }), Does.Contain("max_length 64, this config 32"));
        // The same comparison, for callers that reuse a finished checkpoint (the demo's cache) rather than resume it.
        Assert.That(Trainer.DifferenceFrom(ckpt, run), Is.Null);
        Assert.That(Trainer.DifferenceFrom(ckpt, run with { MaxLength = 32 }), Is.EqualTo("the checkpoint's run had max_length 64, this config 32"));
        Assert.That(Resume(run with { Stages = [.. run.Stages.Take(2), run.Stages[2] with { Lr = 5e-3 }] }), Is.EqualTo(5),
                    "a stage not yet begun may change: the rest of 'align' and all of the third");
    }

    [Test]
    public void ABadExampleSavesTheLastStepsStateAndTheFixedRunResumesToTheUninterruptedOne()
    {
        var cfg = TinyWorld.Config();
        var good = new TinyWorld.Source(cfg, 23);
        var bad = new BrokenSource(good, brokenIndex: 13);
        List<double> full;
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, RetrainRecipe(), _ => good, 64 << 20))
            full = TrainerTests.Run(t);
        string dir = TempDir();
        List<double> first = [];
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, RetrainRecipe(), _ => bad, 64 << 20))
        {
            t.OnStep = s => first.Add(s.Loss);
            var e = Assert.Throws<InvalidDataException>(() => t.Run(dir, CancellationToken.None))!;
            Assert.That(first, Has.Count.InRange(1, 8), "some step of the run reads example 13");
            Assert.That(e.Message, Does.StartWith("example 13 is damaged (saved ").And.EndWith($"at step {first.Count}: fix the data, then --resume)"));
        }
        string ckpt = Path.Combine(dir, Trainer.CheckpointDirName);
        Assert.That(first.Concat(ResumeAndRun(ckpt, RetrainRecipe(), good)).ToList(), Is.EqualTo(full), "the failed step leaves no trace in the saved state");
    }

    /// <summary>Loads the checkpoint, resumes <paramref name="run"/> from it (then shows the trainer to
    /// <paramref name="resumed"/>) and runs it to the end → the losses of the steps it took.</summary>
    private List<double> ResumeAndRun(string ckpt, TrainConfig run, ITrainingSource source, Action<Trainer>? resumed = null)
    {
        using var m = ModelCheckpoint.Load(Cpu, ckpt);
        using var t = new Trainer(m, run, _ => source, 64 << 20);
        t.Resume(ckpt);
        resumed?.Invoke(t);
        return TrainerTests.Run(t);
    }

    [Test]
    public void ANonFiniteLossStopsTheRunWithoutSavingOverTheLastCheckpoint()
    {
        var cfg = TinyWorld.Config();
        var good = new TinyWorld.Source(cfg, 23);
        string dir = TempDir();
        using var m = TinyWorld.Model(Cpu, cfg, seed: 5);
        var source = new NanPixelsSource(good, fromStep: 4, batch: 3);
        using var t = new Trainer(m, RetrainRecipe() with { CheckpointEvery = 2 }, _ => source, 64 << 20);
        var steps = new List<StepMetrics>();
        t.OnStep = steps.Add;
        var e = Assert.Throws<InvalidDataException>(() => t.Run(dir, CancellationToken.None))!;
        Assert.That(e.Message, Does.StartWith("stage 'align', step 2: the loss is NaN").And.Contain("diverged"));
        Assert.That(steps, Has.Count.EqualTo(4), "the step with the NaN loss is not reported as done");
        using var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, Trainer.CheckpointDirName, "trainer_state.json")));
        Assert.That(state.RootElement.GetProperty("global_step").GetInt32(), Is.EqualTo(4), "the last good checkpoint stays");
    }

    /// <summary>Every image NaN from the examples of step <paramref name="fromStep"/> + 1 on (batches of <paramref name="batch"/>).</summary>
    private sealed class NanPixelsSource(ITrainingSource inner, int fromStep, int batch) : ITrainingSource
    {
        private int _reads;
        public int Count => inner.Count;
        public TrainingExample Get(int index)
        {
            var e = inner.Get(index);
            return _reads++ < fromStep * batch || e.Pixels is null ? e : e with { Pixels = [.. e.Pixels.Select(_ => float.NaN)] };
        }
    }

    /// <summary>An image that does not decode, as a source reports it: the example at brokenIndex throws.</summary>
    private sealed class BrokenSource(ITrainingSource inner, int brokenIndex) : ITrainingSource
    {
        public int Count => inner.Count;
        public TrainingExample Get(int index) =>
            index == brokenIndex ? throw new InvalidDataException($"example {index} is damaged") : inner.Get(index);
    }

    [Test]
    public void ResumeFallsBackToTheCheckpointASaveMovedAside()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        string dir = TempDir();
        var log = new StringWriter();
        Assert.That(Trainer.ResumableCheckpoint(dir, log), Is.Null, "an empty folder has nothing to resume");
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, RetrainRecipe(), _ => source, 64 << 20))
            TrainerTests.Run(t, dir, stopAfter: 4);
        // What a crash between the save's two moves leaves: the previous checkpoint under its aside name, and an
        // older aside checkpoint half deleted.
        string aside = Path.Combine(dir, Trainer.CheckpointDirName + ".old-4242");
        Directory.Move(Path.Combine(dir, Trainer.CheckpointDirName), aside);
        string partial = Path.Combine(dir, Trainer.CheckpointDirName + ".old-99999");
        Directory.CreateDirectory(partial);
        File.Copy(Path.Combine(aside, "trainer_state.json"), Path.Combine(partial, "trainer_state.json"));

        string? found = Trainer.ResumableCheckpoint(dir, log);
        Assert.That(found, Is.EqualTo(aside));
        var lines = log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1));
        Assert.That(lines[0], Does.Contain(aside));

        using (var m = ModelCheckpoint.Load(Cpu, found!))
        using (var t = new Trainer(m, RetrainRecipe(), _ => source, 64 << 20))
        {
            t.Resume(found!);
            Assert.That(t.State.GlobalStep, Is.EqualTo(4));
            TrainerTests.Run(t, dir);
        }
        Assert.That(Directory.GetDirectories(dir).Select(Path.GetFileName), Is.EqualTo(new[] { Trainer.CheckpointDirName }),
                    "the next save supersedes what the crash left");
    }

    private static JsonElement Json(string text) => JsonDocument.Parse(text).RootElement;

    [Test]
    public void StepsAndEpochsExcludeEachOtherAndOneIsRequired()
    {
        var both = Assert.Throws<InvalidDataException>(() => TrainConfig.Parse(Json("""{"stages":[{"data":"d","trainable":["llm"],"steps":3,"epochs":1,"lr":0.1}]}"""), "train.json"))!;
        Assert.That(both.Message, Does.Contain("train.json: stages[0]").And.Contain("'steps'").And.Contain("'epochs'"));
        var neither = Assert.Throws<InvalidDataException>(() => TrainConfig.Parse(Json("""{"stages":[{"data":"d","trainable":["llm"],"lr":0.1}]}"""), "train.json"))!;
        Assert.That(neither.Message, Does.Contain("train.json: stages[0]").And.Contain("'steps'").And.Contain("'epochs'"));
        var zero = Assert.Throws<InvalidDataException>(() => TrainConfig.Parse(Json("""{"stages":[{"data":"d","trainable":["llm"],"epochs":0,"lr":0.1}]}"""), "train.json"))!;
        Assert.That(zero.Message, Does.Contain("train.json: stages[0]").And.Contain("'epochs'"));
        var huge = Assert.Throws<InvalidDataException>(() => TrainConfig.Parse(Json("""{"stages":[{"data":"d","trainable":["llm"],"steps":1e12,"lr":0.1}]}"""), "train.json"))!;
        Assert.That(huge.Message, Does.Contain("train.json: stages[0]: 'steps' must be an integer that fits 32 bits, got 1e12"));
    }

    [Test]
    public void EpochsBecomeStepsOnceTheSourceSizeIsKnown()
    {
        var run = TrainConfig.Parse(Json("""
            {"seed": 2, "max_length": 64, "stages": [
              {"name": "a", "data": "d", "trainable": ["llm"], "epochs": 2.5, "lr": 0.01, "batch_size": 4, "grad_accum": 2},
              {"name": "b", "data": "d", "trainable": ["projector"], "steps": 2, "lr": 0.01, "batch_size": 2},
              {"name": "c", "data": "e", "trainable": ["projector"], "epochs": 0.1, "lr": 0.01, "batch_size": 1}]}
            """), "train.json");
        // ⌈2.5 × 23 / (4 × 2)⌉ = ⌈7.1875⌉ = 8; ⌈0.1 × 30 / 1⌉ = 3 (not 4: 0.1 × 30 is 3.0000000000000004 in binary).
        var resolved = run.WithEpochsResolved(name => name == "d" ? 23 : 30);
        Assert.That(resolved.Stages.Select(s => s.Steps), Is.EqualTo(new[] { 8, 2, 3 }));

        var cfg = TinyWorld.Config();
        var d = new TinyWorld.Source(cfg, 23);
        var e = new TinyWorld.Source(cfg, 30);
        using var m = TinyWorld.Model(Cpu, cfg, seed: 5);
        using var t = new Trainer(m, run, name => name == "d" ? d : e, 64 << 20);
        var steps = new List<StepMetrics>();
        t.OnStep = steps.Add;
        t.Run(null, CancellationToken.None);
        Assert.That(steps.Select(s => s.Stage), Is.EqualTo(Enumerable.Repeat("a", 8).Concat(["b", "b", "c", "c", "c"])));
        Assert.That(steps.Select(s => s.TotalSteps).Distinct(), Is.EqualTo(new[] { 13 }));
    }

    [Test]
    public void CheckpointsAreWrittenEveryNGlobalStepsAndAtTheEnd()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        string dir = TempDir();
        var saved = new List<int>();
        using var m = TinyWorld.Model(Cpu, cfg, seed: 5);
        using var t = new Trainer(m, RetrainRecipe() with { CheckpointEvery = 4 }, _ => source, 64 << 20);
        t.OnCheckpoint = temp => saved.Add(JsonDocument.Parse(File.ReadAllText(Path.Combine(temp, "trainer_state.json"))).RootElement.GetProperty("global_step").GetInt32());
        t.Run(dir, CancellationToken.None);
        Assert.That(saved, Is.EqualTo(new[] { 4, 8, 9 }), "every 4 of the 9 global steps, across stage boundaries, and the final state");
        var negative = Assert.Throws<InvalidDataException>(() => TrainConfig.Parse(Json("""{"checkpoint_every": -1, "stages":[{"data":"d","trainable":["llm"],"steps":1,"lr":0.1}]}"""), "train.json"))!;
        Assert.That(negative.Message, Does.Contain("train.json").And.Contain("'checkpoint_every'"));
    }

    [Test]
    public void CheckpointsRecordTheTemplateOfTheLastStageWithConversations()
    {
        var cfg = TinyWorld.Config();
        var text = new TinyWorld.Source(cfg, 6);
        var chat = new TemplatedSource(text, ConversationTemplate.Mistral);
        var plain = new TemplatedSource(text, ConversationTemplate.Plain);
        string dir = TempDir();
        var run = RetrainRecipe() with
        {
            Stages = [.. RetrainRecipe().Stages.Select((s, i) => s with { Data = new[] { "plain", "chat", "text" }[i], Steps = 1 })],
        };
        using var m = TinyWorld.Model(Cpu, cfg, seed: 5);
        Assert.That(m.Config.ConversationTemplate, Is.Null);
        using var t = new Trainer(m, run, name => name switch { "plain" => plain, "chat" => chat, _ => text }, 64 << 20);
        t.Run(dir, CancellationToken.None);
        Assert.That(m.Config.ConversationTemplate, Is.EqualTo("mistral"), "the text stage after it has no template");
        Assert.That(VwLmmConfig.Load(Path.Combine(dir, Trainer.CheckpointDirName)).ConversationTemplate, Is.EqualTo("mistral"));
    }

    [Test]
    public void StepsCountTheExamplesMaxLengthCuts()
    {
        // TinyWorld's examples are 2 + 16 image rows + 3–5 answer tokens + EOS = 22–24 positions (text-only ones 6–8).
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 10);
        int Cut(int maxLength)
        {
            using var m = TinyWorld.Model(Cpu, cfg, seed: 5);
            var run = RetrainRecipe() with { MaxLength = maxLength, Stages = [RetrainRecipe().Stages[0] with { Steps = 1, BatchSize = 10 }] };
            using var t = new Trainer(m, run, _ => source, 64 << 20);
            int cut = -1;
            t.OnStep = s => cut = s.TruncatedExamples;
            t.Run(null, CancellationToken.None);
            return cut;
        }
        int Longer(int maxLength) => Enumerable.Range(0, 10).Count(i => i % 5 != 4 && 2 + 16 + 3 + i % 3 + 1 > maxLength);
        Assert.That(Cut(64), Is.Zero);
        Assert.That(Cut(23), Is.EqualTo(Longer(23)).And.GreaterThan(0));
        Assert.That(Cut(12), Is.EqualTo(8), "every example with an image");
    }

    private sealed class TemplatedSource(ITrainingSource inner, ConversationTemplate template) : ITrainingSource
    {
        public int Count => inner.Count;
        public TrainingExample Get(int index) => inner.Get(index);
        public ConversationTemplate Template => template;
    }

    /// <summary>Every example: BOS, one word, the image, a three-word answer, EOS — so that any split of a batch into
    /// micro-batches gives each the same number of text targets and image tokens.</summary>
    private sealed class UniformSource(VwLmmConfig c, int count) : ITrainingSource
    {
        public int Count => count;

        public TrainingExample Get(int index)
        {
            var r = new Random(500 + index);
            int v = c.Llm.VocabSize;
            int[] ids = [1, 3 + r.Next(v - 3), Llava.ImageTokenIndex, 3 + r.Next(v - 3), 3 + r.Next(v - 3), 3 + r.Next(v - 3), 2];
            return new TrainingExample(TinyWorld.Sample(ids, 3), TinyWorld.Pixels(1, c, index));
        }
    }

    [Test]
    public void AccumulatingKMicroBatchesOfBMatchesOneBatchOfKB()
    {
        // Each micro-batch's loss is a mean over its own targets and the step scales the summed gradients by 1/k, so the
        // step follows the mean of the k micro-batch means. With equally many targets in every micro-batch that is the
        // mean over the whole k·b batch, the same function of the same examples: the two runs differ only in the order
        // F32 sums are taken in.
        var cfg = TinyWorld.Config();
        var source = new UniformSource(cfg, 24);
        StageConfig Stage(int batch, int accum) =>
            new() { Name = "s", Data = "d", Trainable = [ParameterGroup.Projector, ParameterGroup.Llm, ParameterGroup.VmHead], Steps = 3, Lr = 1e-2, BatchSize = batch, GradAccum = accum, GradClip = 0 };
        List<StepMetrics> Train(StageConfig stage)
        {
            using var m = TinyWorld.Model(Cpu, cfg, seed: 5);
            using var t = new Trainer(m, new TrainConfig { Seed = 4, MaxLength = 64, Stages = [stage] }, _ => source, 64 << 20);
            var steps = new List<StepMetrics>();
            t.OnStep = steps.Add;
            t.Run(null, CancellationToken.None);
            return steps;
        }
        var accumulated = Train(Stage(2, 3));
        var whole = Train(Stage(6, 1));
        for (int i = 0; i < 3; i++)
        {
            // Only the F32 summation order differs: L_text and the norm agree to ~1e-8, L_vm (a KL of ~0.01, a small
            // difference of larger terms) to ~1e-6 here. A relative 1e-5 leaves room for that and still fails a wrong
            // normalisation, which is off by a factor (a missing 1/k triples the grad norm).
            Assert.That(accumulated[i].LossText, Is.EqualTo(whole[i].LossText).Within(1e-5 * Math.Abs(whole[i].LossText)), $"L_text, step {i + 1}");
            Assert.That(accumulated[i].LossVm, Is.EqualTo(whole[i].LossVm).Within(1e-5 * Math.Abs(whole[i].LossVm)), $"L_vm, step {i + 1}");
            Assert.That(accumulated[i].GradNorm, Is.EqualTo(whole[i].GradNorm).Within(1e-5 * whole[i].GradNorm), $"grad norm, step {i + 1}");
        }
    }

    [Test]
    public void ClippingScalesTheGradientAdamWSeesToMaxNorm()
    {
        // After one step from zero moments, m = (1 − β₁)·g′ and v = (1 − β₂)·g′², where g′ is the gradient AdamW used:
        // g itself without clipping, g·max_norm/‖g‖ when ‖g‖ > max_norm.
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        (Dictionary<string, (float[] m, float[] v)> moments, double norm) Step(double clip)
        {
            using var model = TinyWorld.Model(Cpu, cfg, seed: 5);
            var stage = new StageConfig { Name = "s", Data = "d", Trainable = [ParameterGroup.Projector, ParameterGroup.Llm], Steps = 1, Lr = 1e-2, BatchSize = 4, GradClip = clip };
            using var t = new Trainer(model, new TrainConfig { Seed = 4, MaxLength = 64, Stages = [stage] }, _ => source, 64 << 20);
            double norm = 0;
            t.OnStep = s => norm = s.GradNorm;
            t.Run(null, CancellationToken.None);
            return (model.Parameters.All.Where(p => p.Trainable).ToDictionary(p => p.Name, p => (p.ExpAvg!.ToArray(), p.ExpAvgSq!.ToArray())), norm);
        }
        var (free, norm) = Step(0);
        const double maxNorm = 1e-3;
        var (clipped, clippedNorm) = Step(maxNorm);
        Assert.That(clippedNorm, Is.EqualTo(norm), "the reported norm is the pre-clip norm");
        Assert.That(norm, Is.GreaterThan(100 * maxNorm), "the clip is active");
        double scale = maxNorm / norm, sumSq = 0;
        foreach (var (name, (m, v)) in clipped)
        {
            var (m0, v0) = free[name];
            for (int i = 0; i < m.Length; i++)
            {
                // F32 rounding of the fused update (a few ulps) bounds the relative difference; the absolute floor covers
                // entries whose unclipped value is itself a rounding residue.
                Assert.That(m[i], Is.EqualTo(m0[i] * scale).Within(1e-5 * Math.Abs(m0[i] * scale) + 1e-12), $"{name}.exp_avg[{i}]");
                Assert.That(v[i], Is.EqualTo(v0[i] * scale * scale).Within(1e-5 * Math.Abs(v0[i] * scale * scale) + 1e-18), $"{name}.exp_avg_sq[{i}]");
                double g = m[i] / (1 - 0.9);
                sumSq += g * g;
            }
        }
        Assert.That(Math.Sqrt(sumSq), Is.EqualTo(maxNorm).Within(1e-5 * maxNorm), "the gradient AdamW used has norm max_norm");
    }

    [Test]
    public void TheScheduleWarmsUpThenDecaysToTheMinimumRatioAsItsKeysSay()
    {
        var stage = TrainConfig.Parse(Json("""{"stages":[{"data":"d","trainable":["llm"],"steps":7,"lr":0.02,"warmup_ratio":0.3,"min_lr_ratio":0.1}]}"""), "t.json").Stages[0];
        // Warmup over ⌈0.3 · 7⌉ = 3 steps, then 0.1 + 0.9 · ½(1 + cos(π · k / 4)) of lr over the other 4.
        double[] expected = [0.02 / 3, 0.02 * 2 / 3, 0.02, .. Enumerable.Range(0, 4).Select(k => 0.02 * (0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * k / 4))))];
        Assert.That(Enumerable.Range(0, 7).Select(stage.LearningRate), Is.EqualTo(expected).Within(1e-15));
        Assert.That(stage.LearningRate(6), Is.GreaterThan(0.02 * 0.1), "the floor is reached after the last step");
        foreach (var (key, bad) in new[] { ("warmup_ratio", "1.5"), ("min_lr_ratio", "-0.1") })
            Assert.That(Assert.Throws<InvalidDataException>(() => TrainConfig.Parse(Json($$"""{"stages":[{"data":"d","trainable":["llm"],"steps":7,"lr":0.02,"{{key}}":{{bad}}}]}"""), "t.json"))!.Message,
                        Does.Contain($"'{key}' must be in [0,1]"));
    }

    /// <summary>A VM head of zeros labels every patch with the uniform distribution: entropy ln V, and one argmax
    /// word (id 0, greedy's tie rule) in the whole batch.</summary>
    [Test]
    public void AUniformVisualWordHasEntropyLnVAndOneDistinctWord()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        using var m = TinyWorld.Model(Cpu, cfg, seed: 5);
        Cpu.Upload<float>(m.VmHead.Value, new float[m.VmHead.Numel]);
        var stage = new StageConfig { Name = "s", Data = "d", Trainable = [ParameterGroup.Projector], Steps = 2, Lr = 1e-2, BatchSize = 3 };
        using var t = new Trainer(m, new TrainConfig { Seed = 4, LogEvery = 1, Stages = [stage] }, _ => source, 64 << 20);
        var steps = new List<StepMetrics>();
        t.OnStep = steps.Add;
        t.Run(null, CancellationToken.None);
        int vocab = cfg.Llm.VocabSize;
        Assert.That(steps.Select(s => s.VisualWordEntropy!.Value), Is.All.EqualTo(Math.Log(vocab)).Within(1e-9 * Math.Log(vocab)));
        Assert.That(steps.Select(s => s.DistinctVisualWords), Is.All.EqualTo(1));
    }

    [Test]
    public void MetricsLinesCarryEveryFieldWithinItsRange()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        var stage = new StageConfig { Name = "tune", Data = "d", Trainable = [ParameterGroup.Projector, ParameterGroup.Llm, ParameterGroup.VmHead], Steps = 5, Lr = 1e-2, WarmupRatio = 0.4, BatchSize = 4 };
        using var m = TinyWorld.Model(Cpu, cfg, seed: 5);
        using var t = new Trainer(m, new TrainConfig { Seed = 4, MaxLength = 64, LogEvery = 1, Stages = [stage] }, _ => source, 64 << 20);
        var log = new StringWriter();
        t.Run(null, CancellationToken.None, log);
        var lines = log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.That(lines, Has.Count.EqualTo(5));
        int vocab = m.VmHead.Shape[0];
        for (int i = 0; i < lines.Count; i++)
        {
            var l = lines[i];
            double Num(string key) => l.GetProperty(key).GetDouble();
            Assert.That(l.GetProperty("stage").GetString(), Is.EqualTo("tune"));
            Assert.That(l.GetProperty("stage_step").GetInt32(), Is.EqualTo(i + 1));
            Assert.That(l.GetProperty("global_step").GetInt32(), Is.EqualTo(i + 1));
            Assert.That(l.GetProperty("branch").GetInt32(), Is.Zero, "a stage without branches");
            Assert.That(Num("loss_text"), Is.GreaterThan(0));
            Assert.That(Num("loss_vm"), Is.GreaterThan(0));
            Assert.That(Num("loss"), Is.EqualTo(Num("loss_text") + Num("loss_vm")).Within(1e-9), "λ = 1");
            Assert.That(Num("visual_word_entropy"), Is.InRange(0, Math.Log(vocab)));
            Assert.That(l.GetProperty("distinct_visual_words").GetInt32(), Is.InRange(1, vocab));
            Assert.That(Num("grad_norm"), Is.GreaterThan(0));
            Assert.That(Num("tokens_per_second"), Is.GreaterThan(0));
            // Warmup over ⌈0.4 · 5⌉ = 2 steps (lr·1/2, lr·2/2), then cosine from lr to 0 over the other 3.
            double expected = i < 2 ? 1e-2 * (i + 1) / 2 : 1e-2 * 0.5 * (1 + Math.Cos(Math.PI * (i - 2) / 3));
            Assert.That(Num("lr"), Is.EqualTo(expected).Within(1e-15), $"lr at step {i + 1}");
        }
    }

    /// <summary>
    /// `vwlmm train` runs a stage with branches from its config: the first branch's three steps, then the second's two
    /// past the fork, logged with their branch and counted in the global step, the last one's at the run's total.
    /// </summary>
    [Test]
    public void TrainRunsAndLogsABranchedStage()
    {
        string cfg = TinyTrainConfig("""{"preset": "tiny"}""",
            """[{"name": "tune", "data": "d", "trainable": ["projector", "llm", "vm_head"], "steps": 3, "lr": 0.01, "batch_size": 2, "branches": 2, "branch_from": 1}]""");
        string outDir = Path.Combine(Path.GetDirectoryName(cfg)!, "out");
        Train(cfg, outDir);
        var lines = File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.That(lines.Select(l => (l.GetProperty("branch").GetInt32(), l.GetProperty("stage_step").GetInt32(), l.GetProperty("global_step").GetInt32())),
                    Is.EqualTo(new[] { (0, 1, 1), (0, 2, 2), (0, 3, 3), (1, 2, 4), (1, 3, 5) }));
        Assert.That(lines.Select(l => l.GetProperty("total_steps").GetInt32()), Is.All.EqualTo(5));
    }

    /// <summary>A folder with a tiny LLaVA dataset (four examples, three with an image), the fixture tokenizer and
    /// train.json with the given model block and stage list; returns train.json's path.</summary>
    private static string TinyTrainConfig(string model, string stages = """[{"data": "d", "trainable": ["projector", "llm", "vm_head"], "steps": 3, "lr": 0.01, "batch_size": 2}]""")
    {
        string dir = TempDir();
        File.Copy(Path.Combine(Fixtures, "images", "src", "grey_64x64.png"), Path.Combine(dir, "grey.png"));
        File.Copy(Path.Combine(Fixtures, "tokenizer", "llama_like.model"), Path.Combine(dir, "x.model"));
        File.WriteAllText(Path.Combine(dir, "d.json"), """
            [{"id": "a", "image": "grey.png", "conversations": [{"from": "human", "value": "<image>\nwhat colour ?"}, {"from": "gpt", "value": "a grey one"}]},
             {"id": "b", "image": "grey.png", "conversations": [{"from": "human", "value": "<image>\nis it red ?"}, {"from": "gpt", "value": "no"}]},
             {"id": "c", "conversations": [{"from": "human", "value": "say hello"}, {"from": "gpt", "value": "hello there"}]},
             {"id": "e", "image": "grey.png", "conversations": [{"from": "human", "value": "<image>\ndescribe"}, {"from": "gpt", "value": "a grey square"}]}]
            """);
        string cfg = Path.Combine(dir, "train.json");
        File.WriteAllText(cfg, """{"model": """ + model + """, "tokenizer": "x.model", "datasets": {"d": {"json": "d.json", "template": "shapes_chat"}}, "seed": 1, "log_every": 1, "stages": """ + stages + "}");
        return cfg;
    }

    private static double[] Losses(string outDir) =>
        [.. File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble())];

    private static void Train(string cfg, string outDir, params string[] more)
    {
        var r = Run(["train", "--config", cfg, "--out", outDir, "--quiet", .. more]);
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
    }

    [Test]
    public void SeedOptionOverridesTheConfigsSeed()
    {
        string cfg = TinyTrainConfig("""{"preset": "tiny"}""");
        string dir = Path.GetDirectoryName(cfg)!;
        Train(cfg, Path.Combine(dir, "one"));
        Train(cfg, Path.Combine(dir, "two"), "--seed", "2");
        Train(cfg, Path.Combine(dir, "two-again"), "--seed", "2");
        Train(cfg, Path.Combine(dir, "one-again"), "--seed", "1");
        Assert.That(Losses(Path.Combine(dir, "two")), Has.Length.EqualTo(3).And.All.GreaterThan(0));
        Assert.That(Losses(Path.Combine(dir, "two")), Is.Not.EqualTo(Losses(Path.Combine(dir, "one"))), "--seed 2 differs from the config's seed 1");
        Assert.That(Losses(Path.Combine(dir, "two-again")), Is.EqualTo(Losses(Path.Combine(dir, "two"))), "the same --seed repeats the run");
        Assert.That(Losses(Path.Combine(dir, "one-again")), Is.EqualTo(Losses(Path.Combine(dir, "one"))), "--seed equal to the config's changes nothing");
        AssertOneLineError(Run("train", "--config", cfg, "--out", Path.Combine(dir, "bad"), "--seed", "-3"), 2, "--seed");
        AssertOneLineError(Run("train", "--config", cfg, "--out", Path.Combine(dir, "two"), "--resume"), 1, "trainer_state.json", "seed 2", "seed is 1");
    }

    [Test]
    public void ASecondRunIntoAFolderWithACheckpointNeedsResumeOrOverwrite()
    {
        string cfg = TinyTrainConfig("""{"preset": "tiny"}""");
        string dir = Path.GetDirectoryName(cfg)!, outDir = Path.Combine(dir, "run");
        Train(cfg, outDir);
        string state = Path.Combine(outDir, Trainer.CheckpointDirName, "trainer_state.json");
        string saved = File.ReadAllText(state);
        AssertOneLineError(Run("train", "--config", cfg, "--out", outDir, "--seed", "2"), 1, Path.Combine(outDir, Trainer.CheckpointDirName), "--resume", "--overwrite");
        Assert.That(File.ReadAllText(state), Is.EqualTo(saved), "the earlier run's checkpoint is untouched");
        AssertOneLineError(Run("train", "--config", cfg, "--out", Path.Combine(dir, "new"), "--resume", "--overwrite"), 2, "exclude each other");
        Assert.That(Directory.Exists(Path.Combine(dir, "new")), Is.False);
        Train(cfg, outDir, "--seed", "2", "--overwrite");
        Assert.That(File.ReadAllText(state), Does.Contain("\"seed\":2"), "--overwrite replaced it");
    }

    [Test]
    public void ResumeRefusesAModelBlockThatDescribesAnotherModel()
    {
        string cfg = TinyTrainConfig("""{"preset": "tiny"}""");
        string dir = Path.GetDirectoryName(cfg)!, outDir = Path.Combine(dir, "run");
        Train(cfg, outDir);
        Train(cfg, outDir, "--resume");
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("""{"preset": "tiny"}""", """{"preset": "tiny", "vm_loss_weight": 0.5}"""));
        AssertOneLineError(Run("train", "--config", cfg, "--out", outDir, "--resume"), 1, "--resume", "model has vm_loss_weight 1", "gives 0.5");
    }

    [Test]
    public void ResumeRefusesAnOptimizerFileWithAMomentOfTheWrongShape()
    {
        string cfg = TinyTrainConfig("""{"preset": "tiny"}""");
        string dir = Path.GetDirectoryName(cfg)!, outDir = Path.Combine(dir, "run");
        Train(cfg, outDir);
        string file = Path.Combine(outDir, Trainer.CheckpointDirName, "optimizer.safetensors");
        const string moment = HfNames.EmbedTokens + ".exp_avg";
        Shape? saved = null;
        TrainerTests.RewriteTensors(file, entries => entries.Select(e =>
        {
            if (e.Name != moment) return e;
            saved = e.Shape;
            return e with { Shape = new Shape(e.Shape[1], e.Shape[0]) };
        }).ToList());
        // A stage added to the finished run: its first step reads no moment, and the file is checked all the same.
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"batch_size\": 2}]", "\"batch_size\": 2}, {\"data\": \"d\", \"trainable\": [\"llm\"], \"steps\": 1, \"lr\": 0.01, \"batch_size\": 2}]"));
        AssertOneLineError(Run("train", "--config", cfg, "--out", outDir, "--resume"), 1,
                           $"{file}: resuming stage 'stage2' at step 0: 1 mismatched tensor (vs config.json): {moment} expected {saved} got [{saved!.Value[1]},{saved.Value[0]}]");
    }

    [Test]
    public void ASampleTheTemplateCannotEncodeStopsTrainBeforeItStarts()
    {
        // plain takes one round with an image; entry 2 ('c') has none.
        string cfg = TinyTrainConfig("""{"preset": "tiny"}""");
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"template\": \"shapes_chat\"", "\"template\": \"plain\""));
        string outDir = Path.Combine(Path.GetDirectoryName(cfg)!, "out");
        AssertOneLineError(Run("train", "--config", cfg, "--out", outDir, "--quiet"), 1, "d.json: entry 2 (id c): template plain needs an image");
        Assert.That(File.Exists(Path.Combine(outDir, "metrics.jsonl")), Is.False, "no step ran");
    }

    [Test]
    public void TrainWarnsOnceAStageWhenMaxLengthCutsExamples()
    {
        string cfg = TinyTrainConfig("""{"preset": "tiny"}""");
        string dir = Path.GetDirectoryName(cfg)!;
        var r = Run("train", "--config", cfg, "--out", Path.Combine(dir, "whole"), "--quiet");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stderr, Is.Empty, "the model's context, the default max_length, cuts nothing");
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"seed\": 1,", "\"seed\": 1, \"max_length\": 20,"));
        string outDir = Path.Combine(dir, "cut");
        r = Run("train", "--config", cfg, "--out", outDir, "--quiet");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        var warnings = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(warnings, Has.Length.EqualTo(1), "once for the stage's three steps");
        Assert.That(warnings[0], Does.StartWith("warning: stage 'stage1', step 1: 2 examples are longer than max_length"));
        var cut = File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("truncated_examples").GetInt32());
        Assert.That(cut, Has.All.GreaterThan(0));
    }

    [Test]
    public void ModelBlockSetsTheVwLmmSwitches()
    {
        string cfg = TinyTrainConfig("""{"preset": "tiny", "vm_loss_weight": 0, "vm_detach_target": true, "vm_kl_direction": "reverse", "vm_head_init": "lm_head", "use_pif": true}""");
        string dir = Path.GetDirectoryName(cfg)!;
        string outDir = Path.Combine(dir, "run");
        Train(cfg, outDir);
        var written = VwLmmConfig.Load(Path.Combine(outDir, Trainer.CheckpointDirName, VwLmmConfig.FileName));
        var tiny = VwLmmConfig.Presets.Tiny;
        var expected = tiny with
        {
            Llm = tiny.Llm with { VocabSize = written.Llm.VocabSize },
            VmLossWeight = 0, VmDetachTarget = true, VmKlDirection = KlDirection.Reverse, VmHeadInit = VmHeadInit.LmHead, UsePif = true,
            ConversationTemplate = "shapes_chat", // the dataset's
        };
        Assert.That(written, Is.EqualTo(expected), "the switches and the data's template, and nothing else, differ from the preset");
        foreach (var line in File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement))
        {
            Assert.That(line.GetProperty("loss_text").GetDouble(), Is.GreaterThan(0));
            Assert.That(line.GetProperty("loss").GetDouble(), Is.EqualTo(line.GetProperty("loss_text").GetDouble()), "λ = 0: the VM loss does not count");
        }

        foreach (var (block, fragments) in new (string, string[])[]
        {
            ("""{"preset": "tiny", "vm_kl": "reverse"}""", ["model", "'vm_kl'"]),
            ("""{"preset": "tiny", "vm_detach_target": 1}""", ["model", "vm_detach_target", "true or false"]),
            ("""{"preset": "tiny", "vm_kl_direction": "sideways"}""", ["model", "vm_kl_direction", "sideways"]),
            ("""{"preset": "tiny", "vm_loss_weight": "high"}""", ["model", "vm_loss_weight"]),
            ("""{"init": "somewhere", "use_pif": true}""", ["model", "use_pif"]),
        })
        {
            string bad = TinyTrainConfig(block);
            AssertOneLineError(Run("train", "--config", bad, "--out", Path.Combine(Path.GetDirectoryName(bad)!, "run")), 1, [bad, .. fragments]);
            Directory.Delete(Path.GetDirectoryName(bad)!, recursive: true);
        }
    }

    [Test]
    public void WronglyTypedConfigValuesAreOneLineNamingFileAndKey()
    {
        foreach (var (model, stages, fragments) in new (string, string?, string[])[]
        {
            ("""{"init": 5}""", null, ["model", "'init'"]),
            ("""{"preset": ["tiny"]}""", null, ["model", "'preset'"]),
            ("""{"config": true}""", null, ["model", "'config'"]),
            ("""{"preset": "huge"}""", null, ["model", "'preset'", "huge"]),
            ("""{"preset": "tiny"}""", """[{"data": "d", "trainable": [1], "steps": 1, "lr": 0.01}]""", ["stages[0]", "trainable", "1"]),
            ("""{"preset": "tiny"}""", """[{"data": "d", "trainable": ["llm"], "steps": "ten", "lr": 0.01}]""", ["stages[0]", "'steps'"]),
            ("""{"preset": "tiny"}""", """[{"data": "d", "trainable": ["llm"], "steps": 1, "epochs": 1, "lr": 0.01}]""", ["stages[0]", "'steps'", "'epochs'"]),
        })
        {
            string cfg = stages is null ? TinyTrainConfig(model) : TinyTrainConfig(model, stages);
            AssertOneLineError(Run("train", "--config", cfg, "--out", Path.Combine(Path.GetDirectoryName(cfg)!, "run")), 1, [cfg, .. fragments]);
            }
    }

    [Test]
    public void ResumeAfterACrashMidSwapContinuesFromTheCheckpointMovedAside()
    {
        string cfg = TinyTrainConfig("""{"preset": "tiny"}""", """[{"data": "d", "trainable": ["projector", "llm", "vm_head"], "steps": 2, "lr": 0.01, "batch_size": 2}]""");
        string dir = Path.GetDirectoryName(cfg)!;
        string outDir = Path.Combine(dir, "run");
        Train(cfg, outDir);
        Directory.Move(Path.Combine(outDir, Trainer.CheckpointDirName), Path.Combine(outDir, Trainer.CheckpointDirName + ".old-777"));
        var r = Run("train", "--config", cfg, "--out", outDir, "--resume", "--quiet");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stderr, Does.Contain(Trainer.CheckpointDirName + ".old-777"), "says which checkpoint it resumed from");
        Assert.That(Directory.Exists(Path.Combine(outDir, Trainer.CheckpointDirName)), Is.True);
    }

    private static string RepoFile(string relative)
    {
        for (var d = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, relative))) return Path.Combine(d.FullName, relative);
        throw new FileNotFoundException($"{relative} not found above {TestContext.CurrentContext.TestDirectory}");
    }

    [Test]
    public void ShippedShapesGridRecipeParsesAndTrains()
    {
        var help = new StringWriter();
        Assert.That(VwLmm.Cli.Program.Run(["train", "--help"], help, new StringWriter()), Is.Zero);
        Assert.That(help.ToString(), Does.Contain("recipes/shapesgrid.json"), "the help's example is the shipped recipe");
        string recipe = RepoFile(Path.Combine("recipes", "shapesgrid.json"));
        var run = TrainConfig.Parse(JsonDocument.Parse(File.ReadAllText(recipe)).RootElement, recipe);
        Assert.That(run.Stages.Where(s => !VwLmm.Model.Recipes.ShapesGridRecipe.IsSourceName(s.Data)), Is.Empty, "every stage reads the built-in world");

        // The recipe itself, one step per stage: model block, world, tokenizer, answer prior and every stage through the binary.
        var json = JsonNode.Parse(File.ReadAllText(recipe))!.AsObject();
        foreach (var stage in json["stages"]!.AsArray()) stage!["steps"] = 1;
        string dir = TempDir();
        string cfg = Path.Combine(dir, "shapesgrid.json");
        File.WriteAllText(cfg, json.ToJsonString());
        string outDir = Path.Combine(dir, "run");
        Train(cfg, outDir);
        var lines = File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.That(lines.Select(l => l.GetProperty("stage").GetString()), Is.EqualTo(run.Stages.Select(s => s.Name)));
        Assert.That(lines.Select(l => l.GetProperty("loss").GetDouble()), Has.All.GreaterThan(0).And.All.Matches<double>(double.IsFinite));
    }

    [Test]
    public void InitFromACheckpointTakesTheTokenizerBesideItsWeights()
    {
        string cfg = TinyTrainConfig("""{"preset": "tiny"}""");
        string dir = Path.GetDirectoryName(cfg)!;
        Train(cfg, Path.Combine(dir, "first"));
        // No "tokenizer" key: the one the first run saved beside its weights is used, and saved again.
        string second = Path.Combine(dir, "second.json");
        File.WriteAllText(second, """
            {"model": {"init": "first/checkpoint"}, "datasets": {"d": {"json": "d.json"}},
             "stages": [{"data": "d", "trainable": ["llm"], "steps": 1, "lr": 0.01, "batch_size": 2}]}
            """);
        Train(second, Path.Combine(dir, "second"));
        Assert.That(File.ReadAllBytes(Path.Combine(dir, "second", Trainer.CheckpointDirName, "tokenizer.model")),
                    Is.EqualTo(File.ReadAllBytes(Path.Combine(dir, "x.model"))));
    }
}
