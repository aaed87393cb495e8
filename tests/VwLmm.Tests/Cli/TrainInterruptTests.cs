using System.Text.Json;
using NUnit.Framework;
using static VwLmm.Tests.Cli.CliRunner;

namespace VwLmm.Tests.Cli;

/// <summary>
/// Ctrl-C and SIGTERM through the real binary: `vwlmm train` saves a resumable checkpoint and exits 130 or 143, and `--resume` then
/// finishes the run with every step's losses equal to those of the same run left alone. And a usage error writes nothing.
/// </summary>
public class TrainInterruptTests
{
    private const int Steps = 150;

    [TestCase(SigInt, 130, "Ctrl-C")]
    [TestCase(SigTerm, 143, "SIGTERM")]
    public void ASignalSavesACheckpointThatResumesToTheUninterruptedRun(int signal, int expectedExit, string named)
    {
        // A shell without job control starts background commands with SIGINT ignored, and children inherit that: the
        // child then starts through coreutils' env --default-signal (8.31 and later), which restores it.
        if (signal == SigInt && IgnoredHere(SigInt) && !CanRestoreSigInt())
            Assert.Ignore("this test process ignores SIGINT (started in the background by a shell), and env cannot restore it for the child");
        string dir = TempDir();
        try
        {
            string config = Path.Combine(dir, "run.json");
            File.WriteAllText(config, $$"""
                {"model": {"preset": "shapesgrid", "init_scheme": "torch"}, "shapesgrid": {"seed": 1}, "seed": 3, "max_length": 64, "log_every": 1,
                 "stages": [{"name": "instruct", "data": "qa:colour,shape", "trainable": ["projector", "llm", "vm_head"], "steps": {{Steps}}, "lr": 1e-3, "batch_size": 2}]}
                """);
            string whole = Path.Combine(dir, "whole"), cut = Path.Combine(dir, "cut");
            Assert.That(Run("train", "--config", config, "--out", whole, "--threads", "1", "--quiet").ExitCode, Is.Zero);

            // On a loaded machine this thread may not get to send the signal before the short run is over (it then
            // exits 0); the interrupt must land mid-run, so such an attempt is repeated in a fresh folder.
            int exit = 0;
            string stdout = "";
            for (int attempt = 0; attempt < 5 && exit == 0; attempt++)
            {
                if (Directory.Exists(cut)) Directory.Delete(cut, recursive: true);
                (exit, stdout) = RunUntilInterrupted(["train", "--config", config, "--out", cut, "--threads", "1", "--quiet"], Path.Combine(cut, "metrics.jsonl"), signal, afterLines: 3);
            }
            Assert.That(exit, Is.EqualTo(expectedExit), stdout);
            Assert.That(stdout, Does.Contain("interrupted at step").And.Contain($"({named})").And.Contain("--resume"));
            int savedAt = JsonDocument.Parse(File.ReadAllText(Path.Combine(cut, "checkpoint", "trainer_state.json"))).RootElement.GetProperty("global_step").GetInt32();
            Assert.That(savedAt, Is.InRange(3, Steps - 1), "the interrupt landed mid-run");

            var resumed = Run("train", "--config", config, "--out", cut, "--resume", "--threads", "1", "--quiet");
            Assert.That(resumed.ExitCode, Is.Zero, resumed.Stderr);
            var expected = Losses(whole);
            var got = Losses(cut);
            Assert.That(got.Select(l => l.Step), Is.EqualTo(Enumerable.Range(1, Steps)), "every step logged once");
            Assert.That(got, Is.EqualTo(expected), "losses of the interrupted and resumed run against the uninterrupted one");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void AUsageErrorLeavesNoRunFolder()
    {
        string dir = TempDir();
        try
        {
            string config = Path.Combine(dir, "run.json"), outDir = Path.Combine(dir, "out");
            File.WriteAllText(config, """{"model": {"preset": "tiny"}, "stages": [{"name": "s", "data": "x", "trainable": ["llm"], "steps": 1, "lr": 1e-3}]}""");
            AssertOneLineError(Run("train", "--config", config, "--out", outDir, "--device", "tpu"), 2, "--device");
            Assert.That(Directory.Exists(outDir), Is.False);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>--resume is checked before anything is made: the run folder, its lock, the ShapesGrid tokenizer.</summary>
    [Test]
    public void AResumeWithNothingToResumeLeavesNoRunFolder()
    {
        string dir = TempDir();
        string config = Path.Combine(dir, "run.json"), outDir = Path.Combine(dir, "out");
        File.WriteAllText(config, """{"model": {"preset": "tiny"}, "shapesgrid": {"seed": 1}, "stages": [{"name": "s", "data": "qa", "trainable": ["llm"], "steps": 1, "lr": 1e-3, "batch_size": 2}]}""");
        AssertOneLineError(Run("train", "--config", config, "--out", outDir, "--resume"), 1, $"--resume: no checkpoint at {Path.Combine(outDir, "checkpoint")}");
        Assert.That(Directory.Exists(outDir), Is.False);
    }

    private static List<(int Step, double Text, double Vm)> Losses(string outDir) =>
        File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl"))
            .Select(l => JsonDocument.Parse(l).RootElement)
            .Select(e => (e.GetProperty("global_step").GetInt32(), e.GetProperty("loss_text").GetDouble(), e.GetProperty("loss_vm").GetDouble()))
            .ToList();
}
