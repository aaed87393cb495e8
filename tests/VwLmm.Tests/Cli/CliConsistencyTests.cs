using System.Text.Json;
using NUnit.Framework;
using VwLmm.Cli;
using VwLmm.Cuda;
using static VwLmm.Tests.Cli.CliRunner;

namespace VwLmm.Tests.Cli;

/// <summary>
/// What every verb of the binary does alike: --verbose shows the stack but keeps exit 1, a stray positional is a usage
/// error, the model folder is --model DIR, input files are checked before a model loads, usage text of a usage error
/// goes to stderr. The verbs that need a model share one randomly initialised ShapesGrid-sized model.
/// </summary>
public class CliConsistencyTests
{
    private string _dir = "", _model = "", _image = "";

    [OneTimeSetUp]
    public void SaveModel()
    {
        _dir = TempDir();
        _model = RandomShapesGridModel.Save(Path.Combine(_dir, "model")).Dir;
        _image = RandomShapesGridModel.SaveScene(_dir);
    }

    [OneTimeTearDown]
    public void Remove() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void VerboseRuntimeErrorPrintsTheStackAndExitsOne()
    {
        string absent = Path.Combine(_dir, "absent");
        var r = Run("inspect", absent, "--verbose");
        Assert.That(r.ExitCode, Is.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr, Does.Contain(nameof(CliException)).And.Contain(absent).And.Contain("   at "));
        AssertOneLineError(Run("inspect", absent), 1, absent);
    }

    [Test]
    public void StrayPositionalIsAUsageErrorForEveryVerb()
    {
        // Parsed, not run: a verb that ignored the positional would otherwise run in full here (demo trains for minutes).
        foreach (var c in Program.Commands.Where(c => c.MaxPositionals == 0))
            Assert.That(() => CliArgs.Parse(["extra-positional"], c.Flags, c.Valued, c.MaxPositionals),
                        Throws.TypeOf<UsageException>().With.Message.Contains("unexpected argument 'extra-positional'"), c.Name);
        // Through the binary, the positional is reported before anything else: a bad --device too keeps a demo that
        // ignored it from training.
        AssertOneLineError(Run("demo", "extra-positional", "--device", "tpu"), 2, "vwlmm demo: unexpected argument 'extra-positional'");
        AssertOneLineError(Run("train", "--config", "absent.json", "extra-positional"), 2, "vwlmm train: unexpected argument 'extra-positional'");
        AssertOneLineError(Run("forward", "extra-positional"), 2, "vwlmm forward: unexpected argument 'extra-positional'");
        AssertOneLineError(Run("inspect", _model, "second"), 2, "unexpected argument 'second'");
        AssertOneLineError(Run("tokenize", "--tokenizer", "absent.model", "a", "red", "circle"), 1, "absent.model");
    }

    [Test]
    public void InspectTakesTheModelFolderAsOptionOrPositional()
    {
        var positional = Run("inspect", _model);
        Assert.That(positional.ExitCode, Is.Zero, positional.Stderr);
        Assert.That(Run("inspect", "--model", _model).Stdout, Is.EqualTo(positional.Stdout));
        AssertOneLineError(Run("inspect", "--model", _model, _model), 2, "not both");
        AssertOneLineError(Run("inspect"), 2, "--model DIR");
    }

    [Test]
    public void BenchAcceptsDeviceAutoAndNamesItsModelBenchmarkSwitchApart()
    {
        var probe = CudaDevice.Probe();
        // BenchCommandTests' decode length and repeats: fewer let the decode time vanish in the prefill's noise under load.
        var r = Run("bench", "--device", "auto", "--repeats", "3", "--warmup", "0", "--batch", "1", "--image-tokens", "4",
                    "--text-tokens", "4", "--decode-tokens", "192", "--json");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        var root = JsonDocument.Parse(r.Stdout).RootElement;
        if (probe.Available) Assert.That(root.GetProperty("mode").GetString(), Is.EqualTo("kernel_lab"));
        else
        {
            Assert.That(root.GetProperty("device").GetString(), Is.EqualTo("cpu"));
            Assert.That(r.Stderr, Does.Contain("no usable GPU"));
        }
        AssertOneLineError(Run("bench", "--device", "emu", "--model"), 2, "unknown option --model");
        AssertOneLineError(Run("bench", "--device", "tpu"), 2, "--device", "auto");
    }

    [Test]
    public void ChatSamplingFollowsSeed()
    {
        string[] Chat(string seed) =>
            ["chat", "--model", _model, "--image", _image, "what colour is the circle ?", "--template", "shapes_chat", "--temperature", "2",
             "--max-new-tokens", "4", "--threads", "1", "--seed", seed];
        var one = Run(Chat("1"));
        Assert.That(one.ExitCode, Is.Zero, one.Stderr);
        Assert.That(Run(Chat("1")).Stdout, Is.EqualTo(one.Stdout), "same seed, same sample");
        Assert.That(Run(Chat("2")).Stdout, Is.Not.EqualTo(one.Stdout), "another seed, another sample");
    }

    /// <summary>A model folder with no tokenizer or weights fails on load, so an error about the input instead proves the
    /// input was checked before the model was loaded.</summary>
    [Test]
    public void InputsAreCheckedBeforeTheModelLoads()
    {
        string broken = Path.Combine(_dir, "broken-model");
        Directory.CreateDirectory(broken);
        string absentImage = Path.Combine(_dir, "absent.png");
        AssertOneLineError(Run("chat", "--model", broken, "--image", absentImage, "hi"), 1, absentImage);
        AssertOneLineError(Run("visualize", "--model", broken, "--image", absentImage), 1, absentImage);
        AssertOneLineError(Run("eval", "--model", broken, "--data", Path.Combine(_dir, "absent.json")), 1, "absent.json");
        string dump = Path.Combine(_dir, "dump");
        AssertOneLineError(Run("forward", "--model", broken, "--image", absentImage, "--prompt", "hi", "--dump", dump), 1, absentImage);
        AssertOneLineError(Run("forward", "--model", broken, "--pixels", Path.Combine(_dir, "absent.npy"), "--prompt", "hi", "--dump", dump), 1, "absent.npy");
        AssertOneLineError(Run("forward", "--model", broken, "--pixels", Path.Combine(_dir, "absent.npy"), "--ids", Path.Combine(_dir, "absent-ids.json"),
                               "--dump", dump), 1, "absent");
        AssertOneLineError(Run("eval", "--data", Path.Combine(_dir, "absent.json")), 2, "--model");
        AssertOneLineError(Run("chat", "--image", absentImage, "hi"), 2, "--model");
        // The two mix-ups of a file for a folder: one of the model's own files given as the model, a folder as the image.
        string config = Path.Combine(_model, "config.json");
        AssertOneLineError(Run("inspect", config), 1, $"--model: '{config}' is a file; a model is the folder it lies in");
        AssertOneLineError(Run("chat", "--model", config, "--image", _image, "hi"), 1, $"--model: '{config}' is a file; a model is the folder it lies in");
        AssertOneLineError(Run("chat", "--model", _model, "--image", _dir, "hi"), 1, $"{_dir}: is a directory, not a file");
    }

    /// <summary>A folder given where a file is read is said to be one, not reported missing.</summary>
    [Test]
    public void ADirectoryWhereAFileGoesIsSaidToBeOne()
    {
        string folder = Path.Combine(_dir, "a-folder");
        Directory.CreateDirectory(folder);
        string said = $"{folder}: is a directory, not a file";
        AssertOneLineError(Run("tokenize", "--tokenizer", folder, "hi"), 1, said);
        AssertOneLineError(Run("train", "--config", folder), 1, said);
        AssertOneLineError(Run("eval", "--model", _model, "--data", folder), 1, said);
        AssertOneLineError(Run("forward", "--model", _model, "--image", _image, "--ids", folder, "--dump", Path.Combine(_dir, "no-dump")), 1, said);
        AssertOneLineError(Run("forward", "--model", _model, "--pixels", folder, "--prompt", "hi", "--dump", Path.Combine(_dir, "no-dump")), 1, said);
    }

    /// <summary>A folder under a file cannot be made: every verb that writes one says so naming its option and the file.</summary>
    [Test]
    public void AnOutputFolderThatCannotBeMadeIsNamedByItsOption()
    {
        string file = Path.Combine(_dir, "a-file");
        File.WriteAllText(file, "");
        string under = Path.Combine(file, "out"), why = $"cannot create the folder {under}: {file} is a file, not a folder";
        AssertOneLineError(Run("data", "shapesgrid", "--out", under, "--n", "1"), 1, "--out: " + why);
        var ptx = Run("ptx", "--arch", "sm_90", "--out", under);
        AssertOneLineError(ptx, 1, "--out: " + why);
        Assert.That(ptx.Stdout, Is.Empty, "no resource table before the error");
        AssertOneLineError(Run("forward", "--model", _model, "--image", _image, "--prompt", "hi", "--template", "plain", "--threads", "1",
                               "--dump", under), 1, "--dump: " + why);
        string config = Path.Combine(_dir, "train-under-a-file.json");
        File.WriteAllText(config, """{"model": {"preset": "tiny"}, "shapesgrid": {"seed": 1}, "stages": [{"name": "s", "data": "text", "trainable": ["llm"], "steps": 1, "lr": 0.001}]}""");
        AssertOneLineError(Run("train", "--config", config, "--out", under), 1, "--out: " + why);
        AssertOneLineError(Run("demo", "--quick", "--out", under), 1, "--out: " + why);
        AssertOneLineError(Run("demo", "--quick", "--out", Path.Combine(_dir, "demo-beside"), "--cache", under), 1,
                           $"--cache: cannot create the folder {under}{Path.DirectorySeparatorChar}", $": {file} is a file, not a folder");
        string npy = Path.Combine(under, "x.npy");
        AssertOneLineError(Run("preprocess", "--image", _image, "--size", "8", "--out", npy), 1, $"cannot write {npy}: {file} is a file, not a folder");
        Assert.That(File.ReadAllText(file), Is.Empty, "the file in the way is left as it was");
    }

    [Test]
    public void EvalWritesPredictionsToRunsEvalByDefault()
    {
        Assert.That(Run("eval", "--help").Stdout, Does.Contain("default runs/eval/predictions.jsonl"));
        string data = Path.Combine(_dir, "world");
        Assert.That(Run("data", "shapesgrid", "--out", data, "--n", "1", "--split", "test").ExitCode, Is.Zero);
        // CliRunner runs the binary in the test folder, so the relative default lands there.
        string runsEval = Path.Combine(TestContext.CurrentContext.TestDirectory, "runs", "eval");
        if (Directory.Exists(runsEval)) Directory.Delete(runsEval, recursive: true);
        var r = Run("eval", "--model", _model, "--data", Path.Combine(data, "data.json"), "--template", "shapes_chat",
                    "--max-new-tokens", "2", "--threads", "1");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stderr, Does.Contain("runs/eval/predictions.jsonl"));
        int questions = JsonDocument.Parse(r.Stdout).RootElement.GetProperty("questions").GetInt32();
        Assert.That(File.ReadAllLines(Path.Combine(runsEval, "predictions.jsonl")), Has.Length.EqualTo(questions));
        Directory.Delete(runsEval, recursive: true);
    }

    [Test]
    public void BareCommandPrintsUsageOnStderr()
    {
        var r = Run();
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stdout, Is.Empty);
        Assert.That(r.Stderr, Does.Contain("usage: vwlmm <command>"));
        Assert.That(Run("--help").Stdout, Does.Contain("usage: vwlmm <command>"));
    }
}
