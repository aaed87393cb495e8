using System.Text.Json;
using NUnit.Framework;
using VwLmm.Cpu;
using VwLmm.Model;
using VwLmm.Model.Recipes;
using static VwLmm.Tests.Cli.CliRunner;

namespace VwLmm.Tests.Cli;

/// <summary>
/// `vwlmm demo --quick` end to end on the real binary: it trains, evaluates and writes a report with visual-word maps,
/// and the trained model answers held-out questions better than the same model untrained.
/// </summary>
public class DemoTests
{
    [Test]
    public void QuickDemoLearnsAndWritesAReport()
    {
        string dir = TempDir();
        var r = Run("demo", "--quick", "--out", Path.Combine(dir, "out"), "--cache", Path.Combine(dir, "cache"), "--threads", "2");
        Assert.That(r.ExitCode, Is.Zero, r.Stdout + r.Stderr);
        string report = File.ReadAllText(Path.Combine(dir, "out", "report.html"));
        Assert.That(report, Does.Contain("<svg").And.Contain("Visual words of held-out images").And.Contain("data:image/png;base64,"));
        Assert.That(report, Does.Contain("<polyline"), "loss curves");
        using var results = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "out", "results.json")));
        double trained = results.RootElement.GetProperty("qa_accuracy").GetProperty("overall").GetDouble();
        Assert.That(results.RootElement.GetProperty("visual_word_accuracy").GetDouble(), Is.InRange(0.0, 1.0));
        var fromOther = results.RootElement.GetProperty("wrong_answers_naming_another_object");
        Assert.That(fromOther.ValueKind == JsonValueKind.Null || fromOther.GetDouble() is >= 0 and <= 1, $"wrong answers naming another object: {fromOther}");
        Assert.That(File.ReadLines(Path.Combine(dir, "out", "predictions.jsonl")).First(), Does.Contain("\"NamesAnotherObject\":"));
        var trainDistribution = results.RootElement.GetProperty("qa_accuracy_train_distribution");
        Assert.That(trainDistribution.GetProperty("overall").GetDouble(), Is.InRange(0.0, 1.0));
        Assert.That(trainDistribution.EnumerateObject().Select(p => p.Name), Does.Contain("colour").And.Contain("shape"));
        Assert.That(report, Does.Contain("unseen images of the training distribution"));
        // The vision pretraining must teach the tower the patch colours (6 colours: chance 1/6) even at the quick budget.
        var probe = results.RootElement.GetProperty("vision_probe_accuracy");
        Assert.That(probe.GetProperty("colour").GetDouble(), Is.GreaterThan(0.8), "held-out colour probe");
        Assert.That(probe.GetProperty("background").GetDouble(), Is.GreaterThan(0.8), "held-out background probe");
        Assert.That(probe.GetProperty("held_out_combo_colour").GetDouble(), Is.GreaterThan(0.5), "colour probe on held-out combinations");
        Assert.That(probe.GetProperty("held_out_combo_shape").GetDouble(), Is.InRange(0.0, 1.0));
        Assert.That(report, Does.Contain("objects in held-out combinations"));

        // The same recipe, seed and evaluation with the untrained model.
        var recipe = new ShapesGridRecipe(1);
        var tok = recipe.LoadOrTrainTokenizer(ShapesGridRecipe.CacheDir(Path.Combine(dir, "cache"), 1));
        using var cpu = new CpuBackend(2);
        using var untrained = new VwLmmModel(cpu, recipe.ModelConfig(tok));
        untrained.InitializeRandom(1);
        double baseline = new ShapesGridEvaluator(untrained, tok, recipe).Evaluate(ShapesGridBudget.Quick.EvalImages).QaAccuracy;
        Assert.That(trained, Is.GreaterThan(baseline + 0.15), $"trained {trained:P1} vs untrained {baseline:P1}");

        // A second run reuses the cached model instead of training again.
        var again = Run("demo", "--quick", "--out", Path.Combine(dir, "out2"), "--cache", Path.Combine(dir, "cache"), "--threads", "2");
        Assert.That(again.ExitCode, Is.Zero, again.Stderr);
        Assert.That(again.Stdout, Does.Contain("reusing the trained model"));

        // Another run holding the cache folder: a second demo there stops with one line instead of interleaving with it.
        string runDir = Path.Combine(ShapesGridRecipe.CacheDir(Path.Combine(dir, "cache"), 1), "quick-vwlmm");
        using (new FileStream(Path.Combine(runDir, ".vwlmm.lock"), FileMode.Open, FileAccess.ReadWrite, FileShare.None))
            AssertOneLineError(Run("demo", "--quick", "--out", Path.Combine(dir, "out3"), "--cache", Path.Combine(dir, "cache")), 1, runDir, "in use");

        // A damaged metrics file in the cache is named with its line, not reported as a bare JSON error.
        string metrics = Path.Combine(runDir, "metrics.jsonl");
        var lines = File.ReadAllLines(metrics);
        lines[1] = lines[1][..^1] + lines[2];
        File.WriteAllLines(metrics, lines);
        AssertOneLineError(Run("demo", "--quick", "--out", Path.Combine(dir, "out4"), "--cache", Path.Combine(dir, "cache")), 1, metrics, "line 2");
        Directory.Delete(dir, recursive: true);
    }
}
