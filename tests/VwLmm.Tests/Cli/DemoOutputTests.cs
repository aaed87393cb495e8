using System.ComponentModel;
using System.Diagnostics;
using System.Net;
using NUnit.Framework;
using VwLmm.Cli.Reports;
using VwLmm.Data.ShapesGrid;
using static VwLmm.Tests.Cli.CliRunner;

namespace VwLmm.Tests.Cli;

/// <summary>
/// What `vwlmm demo` checks before it writes anything, and the ablation table its report gains from
/// scripts/ablations.py's summary — all without training (DemoTests runs the demo itself).
/// </summary>
public class DemoOutputTests
{
    /// <summary>Two variants over three seeds; one metric only one seed of vwlmm recorded, and none of baseline's.</summary>
    internal const string SmallAblations = """
        {
          "description": "quick budget, seeds 1,2,3",
          "metrics": [
            {"key": "qa_overall", "label": "QA overall"},
            {"key": "visual_word_accuracy", "label": "visual-word acc."},
            {"key": "wrong_answers_naming_another_object", "label": "wrong answers naming another object"}
          ],
          "variants": [
            {"name": "baseline", "seeds": [1, 2, 3], "values": {
              "qa_overall": {"mean": 0.5, "std": 0.1, "n": 3}, "visual_word_accuracy": {"mean": 0.2, "std": 0.05, "n": 3}}},
            {"name": "vwlmm", "seeds": [1, 2, 3], "values": {
              "qa_overall": {"mean": 0.8123, "std": 0.025, "n": 3}, "visual_word_accuracy": {"mean": 0.9, "std": 0, "n": 3},
              "wrong_answers_naming_another_object": {"mean": 0.3, "std": null, "n": 1}}}
          ]
        }
        """;

    [TestCase("--device", "tpu")]
    [TestCase("--threads", "0")]
    [TestCase("--seed", "-1")]
    [TestCase("--variant", "big")]
    [TestCase("--stages", "all")]
    [TestCase("--answer-prior", "maybe")]
    public void UsageErrorsWriteNothing(string option, string value)
    {
        string dir = TempDir();
        string outDir = Path.Combine(dir, "out"), cache = Path.Combine(dir, "cache");
        AssertOneLineError(Run("demo", "--quick", "--out", outDir, "--cache", cache, option, value), 2, option, value);
        Assert.That(Directory.GetFileSystemEntries(dir), Is.Empty, "neither OUT nor the cache was created");
        Directory.Delete(dir);
    }

    [Test]
    public void BadAblationsFileStopsBeforeAnythingIsWritten()
    {
        string dir = TempDir();
        string outDir = Path.Combine(dir, "out"), cache = Path.Combine(dir, "cache"), file = Path.Combine(dir, "ablations.json");
        File.WriteAllText(file, SmallAblations.Replace("0.8123", "81.23"));
        AssertOneLineError(Run("demo", "--quick", "--out", outDir, "--cache", cache, "--ablations", file), 1, file, "variants[1].values.qa_overall.mean");
        AssertOneLineError(Run("demo", "--quick", "--out", outDir, "--cache", cache, "--ablations", file + ".missing"), 1, "--ablations", file + ".missing");
        Assert.That(Directory.GetFileSystemEntries(dir), Is.EqualTo(new[] { file }));
        Directory.Delete(dir, recursive: true);
    }

    [Test]
    public void AblationsRenderAsAVariantByMetricTable()
    {
        string dir = TempDir();
        string file = Path.Combine(dir, "ablations.json");
        File.WriteAllText(file, SmallAblations);
        var table = AblationTable.Load(file);
        Assert.That(table.Rows(), Is.EqualTo(new[]
        {
            new[] { "variant (seeds)", "QA overall", "visual-word acc.", "wrong answers naming another object" },
            new[] { "baseline (1, 2, 3)", "50.0 ± 10.0", "20.0 ± 5.0", "–" },
            new[] { "vwlmm (1, 2, 3)", "81.2 ± 2.5", "90.0 ± 0.0", "30.0 (n = 1)" },
        }));
        Assert.That(table.Description, Is.EqualTo("quick budget, seeds 1,2,3"));

        string html = WebUtility.HtmlDecode(new HtmlReport("t").Heading("Ablations").Table(table.Rows(), wide: true).Render());
        Assert.That(html, Does.Contain("<table class=\"wide\">").And.Contain("<td>vwlmm (1, 2, 3)</td><td>81.2 ± 2.5</td>"));
        Directory.Delete(dir, recursive: true);
    }

    [TestCase("{\n  \"metrics\": [,", "not valid JSON at line 2")]
    [TestCase("[]", "the top level must be an object")]
    [TestCase("""{"variants": []}""", "metrics must be a non-empty array")]
    [TestCase("""{"metrics": [{"key": "a"}], "variants": []}""", "metrics[0].label must be a non-empty string")]
    [TestCase("""{"metrics": [{"key": "a", "label": "A"}, {"key": "a", "label": "B"}], "variants": []}""", "metrics[1].key 'a' appears twice")]
    [TestCase("""{"metrics": [{"key": "a", "label": "A"}], "variants": []}""", "variants must be a non-empty array")]
    [TestCase("""{"metrics": [{"key": "a", "label": "A"}], "variants": [{"name": "v", "seeds": ["1"], "values": {}}]}""", "variants[0].seeds[0] must be a non-negative integer")]
    [TestCase("""{"metrics": [{"key": "a", "label": "A"}], "variants": [{"name": "v", "seeds": [1]}]}""", "variants[0].values must be an object")]
    [TestCase("""{"metrics": [{"key": "a", "label": "A"}], "variants": [{"name": "v", "seeds": [1], "values": {"b": {"mean": 0.5, "n": 1}}}]}""", "variants[0].values.b is not one of the metrics")]
    [TestCase("""{"metrics": [{"key": "a", "label": "A"}], "variants": [{"name": "v", "seeds": [1], "values": {"a": {"mean": 50, "n": 1}}}]}""", "variants[0].values.a.mean must be a number in [0, 1]")]
    [TestCase("""{"metrics": [{"key": "a", "label": "A"}], "variants": [{"name": "v", "seeds": [1], "values": {"a": {"mean": 0.5, "n": 2}}}]}""", "variants[0].values.a.n must be an integer from 1 to the variant's 1 seeds")]
    [TestCase("""{"metrics": [{"key": "a", "label": "A"}], "variants": [{"name": "v", "seeds": [1], "values": {"a": {"mean": 0.5, "std": -1, "n": 1}}}]}""", "variants[0].values.a.std must be a non-negative number or null")]
    public void InvalidAblationsAreNamedByFileAndField(string json, string message)
    {
        string dir = TempDir();
        string file = Path.Combine(dir, "ablations.json");
        File.WriteAllText(file, json);
        var e = Assert.Throws<InvalidDataException>(() => AblationTable.Load(file))!;
        Assert.That(e.Message, Does.StartWith(file + ": ").And.Contain(message));
        Assert.That(e.Message, Does.Not.Contain('\n'));
        Directory.Delete(dir, recursive: true);
    }

    /// <summary>scripts/ablations.py's summary of two fake runs is a file the report reads, and its Markdown table and
    /// the report's show the same cells.</summary>
    [Test]
    public void AblationsScriptSummaryIsWhatTheReportReads()
    {
        string dir = TempDir();
        string Results(string overall, string wrong, string pairs)
        {
            string path = Path.Combine(dir, $"results-{overall}.json");
            File.WriteAllText(path, $$"""
                {"qa_accuracy": {"overall": {{overall}}, "colour": 0.9}, "qa_accuracy_held_out_combos": 0.4,
                 "qa_accuracy_train_distribution": {"overall": 0.6, "colour": 0.8}, "visual_word_accuracy": 0.7,
                 "background_word_accuracy": 1.0, "wrong_answers_naming_another_object": {{wrong}}{{pairs}}}
                """);
            return path;
        }
        // The first run predates the pair counts; the second asked no shape question about a training pair.
        const string pairs = """
            , "colour_shape_questions_by_pair": {"colour": {"held_out": {"right": 3, "asked": 4}, "training": {"right": 1, "asked": 1}},
                                                 "shape": {"held_out": {"right": 0, "asked": 2}, "training": {"right": 0, "asked": 0}}}
            """;
        string first = Results("0.5", "null", ""), second = Results("0.7", "0.25", pairs), summary = Path.Combine(dir, "ablations.json");
        const string script = """
            import json, sys
            sys.path.insert(0, sys.argv[1])
            import ablations
            runs = {"vwlmm": [(1, json.load(open(sys.argv[2]))), (2, json.load(open(sys.argv[3])))]}
            s = ablations.summarise(runs, "quick budget, seeds 1,2")
            ablations.write_json(sys.argv[4], s)
            print(ablations.markdown(s))
            """;
        var (exitCode, markdown, errors) = Python("-c", script, Path.Combine(RepositoryRoot(), "scripts"), first, second, summary);
        Assert.That(exitCode, Is.Zero, errors);

        var rows = AblationTable.Load(summary).Rows();
        Assert.That(rows, Has.Count.EqualTo(2));
        var cells = rows[0].Zip(rows[1]).ToDictionary(c => c.First, c => c.Second);
        Assert.That(cells["variant (seeds)"], Is.EqualTo("vwlmm (1, 2)"));
        Assert.That(cells["QA overall"], Is.EqualTo("60.0 ± 14.1"));
        Assert.That(cells["wrong answers naming another object"], Is.EqualTo("25.0 (n = 1)"));
        Assert.That(cells["unseen training images: colour"], Is.EqualTo("80.0 ± 0.0"));
        Assert.That(cells["logit lens E·x"], Is.EqualTo("–"), "absent from both runs");
        Assert.That(cells["colour, held-out pairs"], Is.EqualTo("75.0 (n = 1)"));
        Assert.That(cells["shape, held-out pairs"], Is.EqualTo("0.0 (n = 1)"));
        Assert.That(cells["shape, training pairs"], Is.EqualTo("–"), "none asked");
        var markdownRow = markdown.Split('\n').Single(l => l.StartsWith("| vwlmm |", StringComparison.Ordinal));
        Assert.That(markdownRow, Is.EqualTo("| " + string.Join(" | ", ["vwlmm", .. rows[1].Skip(1)]) + " |"), "the same cells as the report's");
        Directory.Delete(dir, recursive: true);
    }

    /// <summary>
    /// scripts/held_out_pairs.py on two hand-made runs: held-out questions grouped by how many training partners the
    /// named attribute keeps, and wrong answers that are such a partner against the count chance gives.
    /// </summary>
    [Test]
    public void HeldOutPairsScriptGroupsQuestionsByTheNamedAttributesTrainingPartners()
    {
        string dir = TempDir();
        string Run(string name, params string[] lines)
        {
            string run = Directory.CreateDirectory(Path.Combine(dir, name)).FullName;
            File.WriteAllLines(Path.Combine(run, "predictions.jsonl"), lines);
            return run;
        }
        static string Q(int kind, string question, string expected, string predicted, bool heldOut) =>
            $$"""{"Id":"t","Kind":{{kind}},"Question":"{{question}}","Expected":"{{expected}}","Predicted":"{{predicted}}","Correct":{{(expected == predicted ? "true" : "false")}},"InvolvesHeldOut":{{(heldOut ? "true" : "false")}},"NamesAnotherObject":false}""";
        // Run a holds out (blue, cross) and (blue, triangle): blue keeps circle and square, cross and triangle keep five colours.
        string a = Run("a",
            Q(1, "what shape is the blue object ?", "cross", "circle", true),
            Q(1, "what shape is the blue object ?", "triangle", "triangle", true),
            Q(0, "what colour is the cross ?", "blue", "red", true),
            Q(1, "what shape is the red object ?", "cross", "square", false),
            Q(2, "how many circles ?", "1", "1", false));
        // Run b holds out (red, square) only, asked once in each kind: red keeps three shapes, square five colours.
        string b = Run("b",
            Q(1, "what shape is the red object ?", "square", "triangle", true),
            Q(0, "what colour is the square ?", "red", "red", true));

        var (exitCode, output, errors) = Python(Path.Combine(RepositoryRoot(), "scripts", "held_out_pairs.py"), a, b);
        Assert.That(exitCode, Is.Zero, errors);
        var lines = output.Split('\n');
        Assert.That(lines, Does.Contain($"{a}: held-out pairs blue cross, blue triangle"));
        Assert.That(lines, Does.Contain($"{b}: held-out pairs red square"));
        // Blue's wrong "circle" is one of its two partners; a wrong answer drawn from the three other shapes would be one
        // two times in three.
        Assert.That(lines, Does.Contain("| shape, held-out pair | 2 shapes per colour | 1/2 (50%) | 1/1 | 0.7 |"));
        Assert.That(lines, Does.Contain("| shape, held-out pair | 3 shapes per colour | 0/1 (0%) | 1/1 | 1.0 |"));
        // Both colour questions name a shape with five training colours; red is one of cross's.
        Assert.That(lines, Does.Contain("| colour, held-out pair | 5 colours per shape | 1/2 (50%) | 1/1 | 1.0 |"));

        // The script's attribute lists are the world's, in the words questions use.
        var (listsExit, lists, listsErrors) = Python("-c", "import sys; sys.path.insert(0, sys.argv[1]); import held_out_pairs as h; print(' '.join(h.COLOURS)); print(' '.join(h.SHAPES))",
                                                     Path.Combine(RepositoryRoot(), "scripts"));
        Assert.That(listsExit, Is.Zero, listsErrors);
        Assert.That(lists.Split('\n', StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(new[]
        {
            string.Join(' ', Enum.GetValues<ObjectColour>().Select(Words.Of)),
            string.Join(' ', Enum.GetValues<ObjectShape>().Select(Words.Of)),
        }));

        var (missingExit, _, missingErrors) = Python(Path.Combine(RepositoryRoot(), "scripts", "held_out_pairs.py"), Path.Combine(dir, "none"));
        Assert.That(missingExit, Is.Not.Zero);
        Assert.That(missingErrors.Trim(), Is.EqualTo(Path.Combine(dir, "none", "predictions.jsonl") + ": no such file or directory"));
        Directory.Delete(dir, recursive: true);
    }

    /// <summary>Runs python3 with these arguments: exit code, standard output and error; the test is ignored where python3 is missing.</summary>
    private static (int ExitCode, string Output, string Errors) Python(params string[] args)
    {
        var psi = new ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (Win32Exception)
        {
            Assert.Ignore("python3 is not installed");
            throw;
        }
        using (p)
        {
            var errors = p.StandardError.ReadToEndAsync();
            string output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, output, errors.Result);
        }
    }

    private static string RepositoryRoot()
    {
        for (var d = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "scripts", "ablations.py"))) return d.FullName;
        throw new FileNotFoundException("scripts/ablations.py not found above the test directory");
    }
}
