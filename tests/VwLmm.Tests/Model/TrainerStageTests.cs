using NUnit.Framework;
using VwLmm.Cpu;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using VwLmm.Model.Training;

namespace VwLmm.Tests.Model;

/// <summary>Stages that re-train a group, checkpoints a crash interrupted, and stage lengths given in epochs.</summary>
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

    private static List<double> Run(Trainer t, string? outDir = null, int stopAfter = int.MaxValue)
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

    private static string TempDir() => Directory.CreateTempSubdirectory("vwlmm-stages-").FullName;

    [Test]
    public void ResumeInAMiddleStageReproducesALaterStageThatRetrainsAGroup()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        List<double> full;
        using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
        using (var t = new Trainer(m, RetrainRecipe(), _ => source, 64 << 20))
            full = Run(t);
        Assert.That(full, Has.Count.EqualTo(9));

        string dir = TempDir();
        try
        {
            List<double> first, second;
            using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
            using (var t = new Trainer(m, RetrainRecipe(), _ => source, 64 << 20))
                first = Run(t, dir, stopAfter: 4);
            string ckpt = Path.Combine(dir, Trainer.CheckpointDirName);
            using (var m = ModelCheckpoint.Load(Cpu, ckpt))
            using (var t = new Trainer(m, RetrainRecipe(), _ => source, 64 << 20))
            {
                t.Resume(ckpt);
                Assert.That((t.State.Stage, t.State.StageStep), Is.EqualTo((1, 1)), "the checkpoint is in the middle stage");
                second = Run(t);
            }
            Assert.That(first.Concat(second).ToList(), Is.EqualTo(full), "losses after resume differ from the uninterrupted run");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void ResumeFallsBackToTheCheckpointASaveMovedAside()
    {
        var cfg = TinyWorld.Config();
        var source = new TinyWorld.Source(cfg, 23);
        string dir = TempDir();
        try
        {
            var log = new StringWriter();
            Assert.That(Trainer.ResumableCheckpoint(dir, log), Is.Null, "an empty folder has nothing to resume");
            List<double> first;
            using (var m = TinyWorld.Model(Cpu, cfg, seed: 5))
            using (var t = new Trainer(m, RetrainRecipe(), _ => source, 64 << 20))
                first = Run(t, dir, stopAfter: 4);
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
                Run(t, dir);
            }
            Assert.That(Directory.GetDirectories(dir).Select(Path.GetFileName), Is.EqualTo(new[] { Trainer.CheckpointDirName }),
                        "the next save supersedes what the crash left");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
