using NUnit.Framework;
using VwLmm.Cpu;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using VwLmm.Model.Training;

namespace VwLmm.Tests.Model;

/// <summary>Staged training: losses fall, and a run resumed from a checkpoint repeats the uninterrupted run bit for bit.</summary>
public class TrainerTests : CpuFixture
{
    private static TrainConfig Recipe() => new()
    {
        Seed = 42,
        LogEvery = 1,
        MaxLength = 64,
        Stages =
        [
            new StageConfig { Name = "align", Data = "d", Trainable = [ParameterGroup.Projector, ParameterGroup.VmHead], Steps = 3, Lr = 1e-2, BatchSize = 4 },
            new StageConfig { Name = "tune", Data = "d", Trainable = [ParameterGroup.Projector, ParameterGroup.Llm, ParameterGroup.VmHead], Steps = 4, Lr = 5e-3, BatchSize = 3, GradAccum = 2 },
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

    [Test]
    public void ResumeReproducesTheUninterruptedRunBitForBit()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        List<double> full;
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, Recipe(), _ => source, 64 << 20))
            full = Run(t);
        Assert.That(full, Has.Count.EqualTo(7));

        string dir = Path.Combine(Path.GetTempPath(), "vwlmm-resume-" + Guid.NewGuid().ToString("N"));
        try
        {
            List<double> first, second;
            using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
            using (var t = new Trainer(m, Recipe(), _ => source, 64 << 20))
                first = Run(t, dir, stopAfter: 5);
            Assert.That(first, Has.Count.EqualTo(5));
            string ckpt = Path.Combine(dir, Trainer.CheckpointDirName);
            using (var m = ModelCheckpoint.Load(Cpu, ckpt))
            using (var t = new Trainer(m, Recipe(), _ => source, 64 << 20))
            {
                t.Resume(ckpt);
                Assert.That(t.State.GlobalStep, Is.EqualTo(5));
                second = Run(t);
            }
            Assert.That(first.Concat(second).ToList(), Is.EqualTo(full), "losses after resume differ from the uninterrupted run");
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
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
