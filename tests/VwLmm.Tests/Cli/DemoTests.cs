using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using NUnit.Framework;
using VwLmm.Cpu;
using VwLmm.Data.ShapesGrid;
using VwLmm.Model;
using VwLmm.Model.Recipes;
using static VwLmm.Tests.Cli.CliRunner;

namespace VwLmm.Tests.Cli;

/// <summary>
/// `vwlmm demo --quick` end to end on the real binary: it trains, evaluates and writes a report with visual-word maps,
/// the trained model answers held-out questions better than the same model untrained, and the model it publishes is
/// one chat loads.
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
        // The pair counts, recomputed from the question texts, the reference answers and the held-out pairs the demo
        // printed: "what colour is the SHAPE ?" asks about (answer, SHAPE), "what shape is the COLOUR object ?" about
        // (COLOUR, answer).
        var heldOutPairs = Regex.Match(r.Stdout, "held-out combos: (.*)$", RegexOptions.Multiline).Groups[1].Value.Split(", ").ToHashSet();
        Assert.That(heldOutPairs, Has.Count.EqualTo(new ShapesGridOptions().HeldOutCombos), r.Stdout);
        var asked = new Dictionary<string, (int Right, int Asked)>();
        foreach (var line in File.ReadLines(Path.Combine(dir, "out", "predictions.jsonl")))
        {
            var p = JsonDocument.Parse(line).RootElement;
            string text = p.GetProperty("Question").GetString()!, expected = p.GetProperty("Expected").GetString()!;
            var colourQ = Regex.Match(text, @"^what colour is the (\w+) \?$");
            var shapeQ = Regex.Match(text, @"^what shape is the (\w+) object \?$");
            if (!colourQ.Success && !shapeQ.Success) continue;
            string pair = colourQ.Success ? $"{expected} {colourQ.Groups[1].Value}" : $"{shapeQ.Groups[1].Value} {expected}";
            string key = (colourQ.Success ? "colour " : "shape ") + (heldOutPairs.Contains(pair) ? "held_out" : "training");
            var (right, n) = asked.GetValueOrDefault(key);
            asked[key] = (right + (p.GetProperty("Correct").GetBoolean() ? 1 : 0), n + 1);
        }
        var byPair = results.RootElement.GetProperty("colour_shape_questions_by_pair");
        foreach (string name in new[] { "colour", "shape" })
            foreach (string split in new[] { "held_out", "training" })
            {
                var counts = byPair.GetProperty(name).GetProperty(split);
                var (right, n) = asked.GetValueOrDefault($"{name} {split}");
                Assert.That((counts.GetProperty("right").GetInt32(), counts.GetProperty("asked").GetInt32()), Is.EqualTo((right, n)), $"{name} {split}");
            }
        Assert.That(asked["colour held_out"].Asked + asked["shape held_out"].Asked, Is.GreaterThan(0), "the test split asks about held-out pairs");
        Assert.That(r.Stdout, Does.Contain("colour / shape questions about held-out pairs "));
        Assert.That(report, Does.Contain("colour / shape questions about held-out pairs"));
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
        Assert.That(results.RootElement.GetProperty("vision_steps").GetInt32(), Is.EqualTo(ShapesGridBudget.Quick.VisionSteps));
        Assert.That(results.RootElement.GetProperty("steps").GetInt32(), Is.GreaterThan(0));

        // The training log sits beside results.json, the same as the cached run's.
        string runDir = Path.Combine(ShapesGridRecipe.CacheDir(Path.Combine(dir, "cache"), 1), "quick-vwlmm");
        string metrics = Path.Combine(runDir, "metrics.jsonl");
        Assert.That(File.ReadAllText(Path.Combine(dir, "out", "metrics.jsonl")), Is.Not.Empty.And.EqualTo(File.ReadAllText(metrics)));

        // The published model holds what chat needs and no optimizer state, and the chat line the demo prints gives
        // the answer the demo printed for that question.
        string model = Path.Combine(dir, "out", "model");
        Assert.That(Directory.GetFiles(model).Select(Path.GetFileName),
                    Does.Contain("config.json").And.Contain("tokenizer.model").And.Some.EndsWith(".safetensors")
                        .And.None.Contains("optimizer").And.None.Contains("trainer_state"));
        var chatLine = Regex.Match(r.Stdout, @"^\s*\./vwlmm chat --model (\S+) --image (\S+) '([^']+)'$", RegexOptions.Multiline);
        Assert.That(chatLine.Success, r.Stdout);
        Assert.That(chatLine.Groups[1].Value, Is.EqualTo(model));
        string question = chatLine.Groups[3].Value;
        var demoAnswer = Regex.Match(r.Stdout, $@"Q \(test-\d+\): {Regex.Escape(question)}  →  (.*?)   \(truth");
        Assert.That(demoAnswer.Success, r.Stdout);
        var chat = Run("chat", "--model", model, "--image", chatLine.Groups[2].Value, question, "--threads", "2");
        Assert.That(chat.ExitCode, Is.Zero, chat.Stderr);
        Assert.That(chat.Stdout.Trim(), Is.EqualTo(demoAnswer.Groups[1].Value));

        // The same recipe, seed and evaluation with the untrained model.
        var recipe = new ShapesGridRecipe(1);
        var tok = recipe.LoadOrTrainTokenizer(ShapesGridRecipe.CacheDir(Path.Combine(dir, "cache"), 1));
        using var cpu = new CpuBackend(2);
        using var untrained = new VwLmmModel(cpu, recipe.ModelConfig(tok));
        untrained.InitializeRandom(1, ShapesGridRecipe.Init(ShapesGridStages.Lookup));
        double baseline = new ShapesGridEvaluator(untrained, tok, recipe).Evaluate(ShapesGridBudget.Quick.EvalImages).QaAccuracy;
        Assert.That(trained, Is.GreaterThan(baseline + 0.15), $"trained {trained:P1} vs untrained {baseline:P1}");

        // A demo that SIGTERM stops mid-training says how to continue; running it again resumes from its checkpoint and
        // ends with the bits of the run above. (A signal that lands too late for a checkpoint is tried again.)
        string cache2 = Path.Combine(dir, "cache2"), out2 = Path.Combine(dir, "out2");
        string run2 = Path.Combine(ShapesGridRecipe.CacheDir(cache2, 1), "quick-vwlmm");
        string[] demo2 = ["demo", "--quick", "--out", out2, "--cache", cache2, "--threads", "2"];
        var (exit, output) = (0, "");
        for (int attempt = 0; attempt < 3 && exit != 143; attempt++)
        {
            if (Directory.Exists(cache2)) Directory.Delete(cache2, recursive: true);
            (exit, output) = RunUntilInterrupted(demo2, Path.Combine(run2, "metrics.jsonl"), SigTerm, afterLines: 3);
        }
        Assert.That(exit, Is.EqualTo(143), output);
        Assert.That(output, Does.Contain("(the same vwlmm demo command continues from there)"));
        var resumed = Run(demo2);
        Assert.That(resumed.ExitCode, Is.Zero, resumed.Stderr);
        Assert.That(resumed.Stdout, Does.Contain("resuming the interrupted training at step").And.Not.Contain("vision pretraining steps"));
        Assert.That(File.ReadAllBytes(Path.Combine(out2, "model", "model.safetensors")), Is.EqualTo(File.ReadAllBytes(Path.Combine(model, "model.safetensors"))));
        // An unfinished checkpoint that cannot be loaded (here: cut short) is said, and the demo trains again.
        string checkpoint2 = Path.Combine(run2, "checkpoint");
        File.WriteAllText(Path.Combine(checkpoint2, "trainer_state.json"), """{"stage": 0, "stage_step": 100, "global_step": 100, "adam_step": 100, "seed": 1}""");
        var weights2 = Path.Combine(checkpoint2, "model.safetensors");
        File.WriteAllBytes(weights2, File.ReadAllBytes(weights2)[..1000]);
        var again2 = Run(demo2);
        Assert.That(again2.ExitCode, Is.Zero, again2.Stderr);
        Assert.That(again2.Stdout, Does.Contain($"not resuming {checkpoint2}: ").And.Contain("; training again").And.Contain("vision pretraining steps"));
        Assert.That(File.ReadAllBytes(Path.Combine(out2, "model", "model.safetensors")), Is.EqualTo(File.ReadAllBytes(Path.Combine(model, "model.safetensors"))));

        // A second run into the same folder reuses the cached model instead of training again, replaces the published
        // model whole, and with --ablations adds the ablation table to the report.
        string stale = Path.Combine(model, "stale.txt");
        File.WriteAllText(stale, "from an older run");
        string ablations = Path.Combine(dir, "ablations.json");
        File.WriteAllText(ablations, DemoOutputTests.SmallAblations);
        var again = Run("demo", "--quick", "--out", Path.Combine(dir, "out"), "--cache", Path.Combine(dir, "cache"), "--threads", "2", "--ablations", ablations);
        Assert.That(again.ExitCode, Is.Zero, again.Stderr);
        Assert.That(again.Stdout, Does.Contain("reusing the trained model"));
        Assert.That(File.Exists(stale), Is.False, "the older model was replaced");
        Assert.That(File.Exists(Path.Combine(model, "config.json")));
        Assert.That(Directory.GetFileSystemEntries(Path.Combine(dir, "out"), "model*").Select(Path.GetFileName), Is.EqualTo(new[] { "model" }), "no temporary folders left");
        Assert.That(WebUtility.HtmlDecode(File.ReadAllText(Path.Combine(dir, "out", "report.html"))), Does.Contain("Ablations: mean ± std over seeds").And.Contain("81.2 ± 2.5"));

        // Another run holding the cache folder: a second demo there stops with one line instead of interleaving with it.
        using (new FileStream(Path.Combine(runDir, ".vwlmm.lock"), FileMode.Open, FileAccess.ReadWrite, FileShare.None))
            AssertOneLineError(Run("demo", "--quick", "--out", Path.Combine(dir, "out3"), "--cache", Path.Combine(dir, "cache")), 1, runDir, "in use");

        // A damaged metrics file in the cache is named with its line, not reported as a bare JSON error.
        var lines = File.ReadAllLines(metrics);
        lines[1] = lines[1][..^1] + lines[2];
        File.WriteAllLines(metrics, lines);
        AssertOneLineError(Run("demo", "--quick", "--out", Path.Combine(dir, "out4"), "--cache", Path.Combine(dir, "cache")), 1, metrics, "line 2");

        // A cached model whose recorded stages differ from the recipe's (a recipe changed without a new version) is
        // said and trained again, not reused.
        string state = Path.Combine(runDir, "checkpoint", "trainer_state.json");
        File.WriteAllText(state, Regex.Replace(File.ReadAllText(state), "\"batch_size\":\\d+", "\"batch_size\":5"));
        var stale2 = Run("demo", "--quick", "--out", Path.Combine(dir, "out5"), "--cache", Path.Combine(dir, "cache"), "--threads", "2");
        Assert.That(stale2.ExitCode, Is.Zero, stale2.Stderr);
        Assert.That(stale2.Stdout, Does.Contain("not reusing ").And.Contain($"('instruct') ran with batch_size 5, this config gives {ShapesGridBudget.Quick.BatchSize}").And.Contain("training again"));
        Assert.That(File.ReadAllBytes(Path.Combine(dir, "out5", "model", "model.safetensors")), Is.EqualTo(File.ReadAllBytes(Path.Combine(model, "model.safetensors"))));
        Directory.Delete(dir, recursive: true);
    }
}
