using System.Text.Json;
using NUnit.Framework;
using VwLmm.Cli;
using static VwLmm.Tests.Cli.CliRunner;

namespace VwLmm.Tests.Cli;

/// <summary>The vwlmm binary: exit codes 0/1/2, one-line errors naming the file or option, and the data verbs end to end.</summary>
public class CliTests
{
    [Test]
    public void HelpAndVersion()
    {
        var r = Run("--help");
        Assert.That(r.ExitCode, Is.Zero);
        foreach (var c in Program.Commands) Assert.That(r.Stdout, Does.Contain(c.Name));
        Assert.That(Run("--version").Stdout, Does.StartWith("vwlmm "));
        foreach (var c in Program.Commands)
        {
            var h = new StringWriter();
            Assert.That(Program.Run([.. c.Name.Split(' '), "--help"], h, new StringWriter()), Is.Zero, c.Name);
            Assert.That(h.ToString(), Does.Contain("usage: vwlmm " + c.Name).And.Contain("example:"), c.Name);
        }
    }

    [Test]
    public void ArgumentErrorsLeaveOutTheParameterName()
    {
        Assert.That(Program.OneLine(new ArgumentException("unknown conversation template 'x'", "name")), Is.EqualTo("unknown conversation template 'x'"));
        var outOfRange = new ArgumentOutOfRangeException("rows", 9, "kv cache: sample 0 holds 4 rows");
        Assert.That(Program.OneLine(outOfRange), Is.EqualTo("kv cache: sample 0 holds 4 rows"));
    }

    [Test]
    public void UsageErrorsExitTwo()
    {
        AssertOneLineError(Run("frobnicate"), 2, "unknown command 'frobnicate'");
        AssertOneLineError(Run("tokenize", "--tokenizer"), 2, "--tokenizer needs a value");
        AssertOneLineError(Run("tokenize", "--bogus", "x"), 2, "unknown option --bogus");
        AssertOneLineError(Run("preprocess", "--image", "a.png", "--size", "abc", "--out", "x.npy"), 2, "--size", "abc");
        AssertOneLineError(Run("demo", "--device", "tpu"), 2, "--device", "tpu");
        AssertOneLineError(Run("demo", "--stages", "all"), 2, "--stages", "all");
        AssertOneLineError(Run("demo", "--variant", "ema"), 2, "--variant", "ema", "pif-frozen or twins");
        AssertOneLineError(Run("demo", "--answer-prior", "yes"), 2, "--answer-prior", "yes");
        AssertOneLineError(Run("demo", "--variant", "twins", "--answer-prior", "off"), 2, "--variant twins needs --answer-prior on");
        AssertOneLineError(Run("preprocess", "--size", "32", "--out", "x.npy"), 2, "missing required option --image");
        AssertOneLineError(Run("preprocess", "--image", "a.png", "--out="), 2, "option --out needs a value, not an empty one");
        AssertOneLineError(Run("preprocess", "--image", "a.png", "--out", "x.npy", "--out", "y.npy"), 2, "option --out is given twice");
        AssertOneLineError(Run("data", "--help"), 2, "'data' needs a second word: data shapesgrid");
        string model = Path.Combine(Fixtures, "tokenizer", "llama_like.model");
        AssertOneLineError(Run("tokenize", "--tokenizer", model, "--decode"), 2, "give the IDS to decode");
        AssertOneLineError(Run("tokenize", "--tokenizer", model, "--decode", "--no-bos", "1 2"), 2, "--no-bos");
    }

    [Test]
    public void GlobalOptionsMayComeBeforeTheVerb()
    {
        var r = Run("--quiet", "tokenize", "--tokenizer", Path.Combine(Fixtures, "tokenizer", "llama_like.model"), "a red circle");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.StartWith("[1,"));
        var h = Run("inspect", "-h");
        Assert.That((h.ExitCode, h.Stdout), Is.EqualTo((0, Run("inspect", "--help").Stdout)));
    }

    [Test]
    public void TokenizeRoundTripsThroughTheBinary()
    {
        string model = Path.Combine(Fixtures, "tokenizer", "llama_like.model");
        var enc = Run("tokenize", "--tokenizer", model, "a red circle");
        Assert.That(enc.ExitCode, Is.Zero, enc.Stderr);
        var ids = JsonSerializer.Deserialize<int[]>(enc.Stdout)!;
        Assert.That(ids[0], Is.EqualTo(1), "BOS first");
        Assert.That(JsonSerializer.Deserialize<int[]>(Run("tokenize", "--tokenizer", model, "--no-bos", "a red circle").Stdout), Is.EqualTo(ids[1..]));
        var dec = Run("tokenize", "--tokenizer", model, "--decode", enc.Stdout.Trim());
        Assert.That(dec.Stdout.Trim(), Is.EqualTo("a red circle"));
        string lines = string.Join("\n", ids);
        Assert.That(Run("tokenize", "--tokenizer", model, "--decode", lines).Stdout.Trim(), Is.EqualTo("a red circle"), "ids a line each");
    }

    [Test]
    public void BadTokenizerFileIsOneLineNamingIt()
    {
        string dir = TempDir();
        string bad = Path.Combine(dir, "tokenizer.model");
        var bytes = File.ReadAllBytes(Path.Combine(Fixtures, "tokenizer", "llama_like.model"));
        File.WriteAllBytes(bad, bytes[..(bytes.Length / 3)]);
        AssertOneLineError(Run("tokenize", "--tokenizer", bad, "hello"), 1, bad);
        AssertOneLineError(Run("tokenize", "--tokenizer", Path.Combine(dir, "missing.model"), "hello"), 1, "missing.model");
        string empty = Path.Combine(dir, "empty.model");
        File.WriteAllBytes(empty, []);
        AssertOneLineError(Run("tokenize", "--tokenizer", empty, "hello"), 1, $"{empty}: empty file, not a sentencepiece model");
    }

    [Test]
    public void PreprocessWritesNpyAndRejectsBadImages()
    {
        string dir = TempDir();
        string npy = Path.Combine(dir, "x.npy");
        var ok = Run("preprocess", "--image", Path.Combine(Fixtures, "images", "src", "grey_64x64.png"), "--size", "24", "--pad", "--out", npy);
        Assert.That(ok.ExitCode, Is.Zero, ok.Stderr);
        var (data, shape) = VwLmm.Data.Npy.Read<float>(npy);
        Assert.That(shape, Is.EqualTo(new[] { 3, 24, 24 }));
        Assert.That(data.All(float.IsFinite), Is.True);
        // To /dev/stdout, the .npy alone goes down the pipe (the note that it was written goes to stderr), and the link
        // survives: a rename over it would have replaced it with a file.
        var piped = Run("preprocess", "--image", Path.Combine(Fixtures, "images", "src", "grey_64x64.png"), "--size", "24", "--out", "/dev/stdout");
        Assert.That(piped.ExitCode, Is.Zero, piped.Stderr);
        Assert.That(piped.Stdout, Does.Contain("NUMPY").And.Not.Contain("wrote"));
        Assert.That(piped.Stderr, Does.Contain("wrote /dev/stdout [3,24,24]"));
        Assert.That(new FileInfo("/dev/stdout").LinkTarget, Is.Not.Null);

        string truncated = Path.Combine(dir, "cut.png");
        var png = File.ReadAllBytes(Path.Combine(Fixtures, "images", "src", "grey_64x64.png"));
        File.WriteAllBytes(truncated, png[..(png.Length / 2)]);
        AssertOneLineError(Run("preprocess", "--image", truncated, "--size", "24", "--out", npy), 1, truncated);
        string text = Path.Combine(dir, "notes.png");
        File.WriteAllText(text, "not an image at all");
        AssertOneLineError(Run("preprocess", "--image", text, "--size", "24", "--out", npy), 1, text);
        AssertOneLineError(Run("preprocess", "--image", Path.Combine(dir, "nope.jpg"), "--size", "24", "--out", npy), 1, "nope.jpg");
    }

    /// <summary>An option with a default is shown in brackets with its default, and the verb runs without it.</summary>
    [Test]
    public void OptionsWithDefaultsAreShownAsOptional()
    {
        Assert.That(Run("preprocess", "--help").Stdout, Does.Contain("usage: vwlmm preprocess --image X [--size S] [--pad] --out X.npy").And.Contain("(default 336"));
        Assert.That(Run("data", "shapesgrid", "--help").Stdout, Does.Contain("usage: vwlmm data shapesgrid --out DIR [--n N] [--seed S]").And.Contain("(default 100)"));
        string dir = TempDir(), npy = Path.Combine(dir, "x.npy");
        var r = Run("preprocess", "--image", Path.Combine(Fixtures, "images", "src", "grey_64x64.png"), "--out", npy);
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(VwLmm.Data.Npy.Read<float>(npy).Shape, Is.EqualTo(new[] { 3, 336, 336 }));
        r = Run("data", "shapesgrid", "--out", dir, "--quiet");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(VwLmm.Data.Conversations.LlavaDataset.Load(Path.Combine(dir, "data.json"), dir).Samples, Has.Count.EqualTo(100));
    }

    [Test]
    public void DataShapesGridWritesADatasetTheReaderAccepts()
    {
        string dir = TempDir();
        var r = Run("data", "shapesgrid", "--out", dir, "--n", "6", "--seed", "3", "--split", "test");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        var ds = VwLmm.Data.Conversations.LlavaDataset.Load(Path.Combine(dir, "data.json"), dir);
        Assert.That(ds.Samples, Has.Count.EqualTo(6));
        Assert.That(ds.Samples.Where(s => s.HasImage).All(s => File.Exists(ds.ImagePath(s))), Is.True);
        // The world a demo of the same seed is trained and evaluated in: its images, pixel for pixel, and its questions.
        var world = new VwLmm.Model.Recipes.ShapesGridRecipe(3).World;
        var first = ds.Samples.First(s => s.HasImage);
        int index = int.Parse(first.Id["test-".Length..], System.Globalization.CultureInfo.InvariantCulture);
        var expected = world.Sample(VwLmm.Data.ShapesGrid.Split.Test, index);
        var image = VwLmm.Data.Images.ImageCodec.Decode(ds.ImagePath(first));
        Assert.That((image.Width, image.Height), Is.EqualTo((expected.Image.Width, expected.Image.Height)));
        Assert.That(image.Pixels, Is.EqualTo(expected.Image.Pixels));
        Assert.That(first.Turns[0].Value, Does.EndWith(expected.Questions[0].Question));
        AssertOneLineError(Run("data", "shapesgrid", "--out", dir, "--n", "2", "--split", "dev"), 2, "--split");
        // Fewer samples over more: the images folder holds the new set only.
        Assert.That(Run("data", "shapesgrid", "--out", dir, "--n", "2", "--seed", "3", "--split", "test").ExitCode, Is.Zero);
        Assert.That(Directory.GetFiles(Path.Combine(dir, "images")).Select(Path.GetFileName).Order(), Is.EqualTo(new[] { "0000.png", "0001.png" }));
    }

    [Test]
    public void MalformedCheckpointsAreOneLineErrors()
    {
        string dir = TempDir();
        File.WriteAllText(Path.Combine(dir, "config.json"), VwLmm.Model.VwLmmConfig.Presets.Tiny.ToJson());
        foreach (string name in (string[])["header_past_eof", "bad_json", "offsets_out_of_range", "overlapping", "unknown_dtype"])
        {
            File.Copy(Path.Combine(Fixtures, "checkpoints", "malformed", name + ".safetensors"), Path.Combine(dir, "model.safetensors"), overwrite: true);
            AssertOneLineError(Run("inspect", dir), 1, "model.safetensors");
        }
    }

    [Test]
    public void MissingTensorsAreListed()
    {
        string dir = TempDir();
        var config = VwLmm.Model.VwLmmConfig.Presets.Tiny;
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJson());
        VwLmm.Model.Checkpoints.SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"),
            [new("model.norm.weight", new VwLmm.Core.Shape(config.Llm.HiddenSize), new float[config.Llm.HiddenSize])]);
        AssertOneLineError(Run("inspect", dir), 1, "missing tensor", "lm_head.weight", "model.embed_tokens.weight");
    }

    [Test]
    public void AFileWhereADirectoryGoesIsNamedBeforeAnythingRuns()
    {
        string dir = TempDir(), file = Path.Combine(dir, "taken");
        File.WriteAllText(file, "keep me");
        AssertOneLineError(Run("data", "shapesgrid", "--out", file, "--n", "1"), 1, "--out", file, "is a file, not a directory");
        AssertOneLineError(Run("forward", "--model", dir, "--image", "a.png", "--prompt", "hi", "--dump", file), 1, "--dump", file);
        AssertOneLineError(Run("demo", "--quick", "--out", file, "--cache", dir), 1, "--out", file);
        AssertOneLineError(Run("demo", "--quick", "--out", dir, "--cache", file), 1, "--cache", file);
        AssertOneLineError(Run("ptx", "--out", file), 1, "--out", file);
        AssertOneLineError(Run("preprocess", "--image", "a.png", "--out", dir), 1, "--out", dir, "is a directory, not a file");
        AssertOneLineError(Run("visualize", "--model", dir, "--image", "a.png", "--out", dir), 1, "--out", dir, "is a directory");
        string cfg = Path.Combine(dir, "train.json");
        File.WriteAllText(cfg, """{"model":{"preset":"tiny"},"shapesgrid":{"seed":1},"stages":[{"data":"qa","trainable":["llm"],"steps":1,"lr":0.01,"batch_size":2}]}""");
        AssertOneLineError(Run("train", "--config", cfg, "--out", file), 1, "--out", file);
        Assert.That(File.ReadAllText(file), Is.EqualTo("keep me"));
    }

    [Test]
    public void TrainConfigErrorsNameTheFileAndKey()
    {
        string dir = TempDir();
        string cfg = Path.Combine(dir, "train.json");
        File.WriteAllText(cfg, "{ \"stages\": [ { \"data\": \"qa\", ");
        AssertOneLineError(Run("train", "--config", cfg, "--out", dir), 1, cfg, "line");
        File.WriteAllText(cfg, """{"model":{"preset":"tiny"},"shapesgrid":{"seed":1},"stages":[{"data":"qa","trainable":["llm"],"steps":1,"lr":0.01,"batchsize":2}]}""");
        AssertOneLineError(Run("train", "--config", cfg, "--out", dir), 1, cfg, "batchsize");
        File.WriteAllText(cfg, """{"model":{"preset":"tiny"},"tokenizer":"x.model","datasets":{"d":{"json":"d.json","template":"alpaca"}},"stages":[{"data":"d","trainable":["llm"],"steps":1,"lr":0.01}]}""");
        File.Copy(Path.Combine(Fixtures, "tokenizer", "llama_like.model"), Path.Combine(dir, "x.model"));
        File.WriteAllText(Path.Combine(dir, "d.json"), "[]");
        string notMade = Path.Combine(dir, "not-made");
        AssertOneLineError(Run("train", "--config", cfg, "--out", notMade), 1, $"{cfg}: datasets.d: 'template': unknown conversation template 'alpaca'; valid: ");
        Assert.That(Directory.Exists(notMade), Is.False, "a bad dataset is found before the run folder is made");
        AssertOneLineError(Run("train", "--config", Path.Combine(dir, "absent.json")), 1, "absent.json");
        File.WriteAllText(cfg, """{"model":{"preset":"tiny","init_scheme":"xavier"},"shapesgrid":{"seed":1},"stages":[{"data":"qa","trainable":["llm"],"steps":1,"lr":0.01,"batch_size":2}]}""");
        AssertOneLineError(Run("train", "--config", cfg, "--out", dir), 1, cfg, "init_scheme", "xavier");
        File.WriteAllText(cfg, """{"model":{"preset":"tiny"},"shapesgrid":{"seed":1},"stages":[{"data":"qa:colour,size","trainable":["llm"],"steps":1,"lr":0.01,"batch_size":2}]}""");
        AssertOneLineError(Run("train", "--config", cfg, "--out", dir), 1, cfg, "'size'");
        File.WriteAllText(cfg, """{"model":{"preset":"tiny","config":"elsewhere.json"},"shapesgrid":{"seed":1},"stages":[{"data":"qa","trainable":["llm"],"steps":1,"lr":0.01,"batch_size":2}]}""");
        AssertOneLineError(Run("train", "--config", cfg, "--out", dir), 1, cfg, "'preset' and 'config' exclude each other");
        File.WriteAllText(cfg, """{"model":{"preset":"tiny"},"out":7,"shapesgrid":{"seed":1},"stages":[{"data":"qa","trainable":["llm"],"steps":1,"lr":0.01,"batch_size":2}]}""");
        AssertOneLineError(Run("train", "--config", cfg, "--out", dir), 1, cfg, "'out' must be a string");
        // Found before the first stage trains a step, so nothing is written.
        string late = Path.Combine(dir, "late");
        File.WriteAllText(cfg, """{"model":{"preset":"tiny"},"shapesgrid":{"seed":1},"stages":[{"data":"qa","trainable":["llm"],"steps":1,"lr":0.01,"batch_size":2},{"name":"later","data":"qa","trainable":["llm"],"steps":1,"lr":0.01,"batch_size":2,"answer_prior":[["red","zzzq"]]}]}""");
        AssertOneLineError(Run("train", "--config", cfg, "--out", late), 1, cfg, "stage 'later'", "'zzzq'", "must be one token");
        Assert.That(Directory.Exists(late) ? Directory.GetFileSystemEntries(late) : [], Has.None.Contains("checkpoint"));
    }

    [Test]
    public void TrainIntoAFolderAnotherRunHoldsStopsWithOneLine()
    {
        string dir = TempDir();
        string cfg = Path.Combine(dir, "train.json");
        File.WriteAllText(cfg, """{"model":{"preset":"tiny"},"shapesgrid":{"seed":1},"stages":[{"data":"qa","trainable":["llm"],"steps":1,"lr":0.01,"batch_size":2}]}""");
        string outDir = Path.Combine(dir, "run");
        Directory.CreateDirectory(outDir);
        using (new FileStream(Path.Combine(outDir, ".vwlmm.lock"), FileMode.Create, FileAccess.ReadWrite, FileShare.None))
            AssertOneLineError(Run("train", "--config", cfg, "--out", outDir), 1, outDir, "in use");
        Assert.That(Directory.GetFileSystemEntries(outDir), Has.Length.EqualTo(1), "nothing but the lock may be written while another run holds the folder");
        Directory.Delete(dir, recursive: true);
    }

    [Test]
    public void DatasetEntryWithMissingImageNamesFileAndEntry()
    {
        string dir = TempDir();
        File.WriteAllText(Path.Combine(dir, "d.json"),
            """[{"id":"a","image":"gone.png","conversations":[{"from":"human","value":"<image>\nhi"},{"from":"gpt","value":"yo"}]}]""");
        File.Copy(Path.Combine(Fixtures, "tokenizer", "llama_like.model"), Path.Combine(dir, "x.model"));
        string cfg = Path.Combine(dir, "train.json");
        File.WriteAllText(cfg, """{"model":{"preset":"tiny"},"tokenizer":"x.model","datasets":{"d":{"json":"d.json"}},"stages":[{"data":"d","trainable":["llm"],"steps":1,"lr":0.01,"batch_size":1}]}""");
        AssertOneLineError(Run("train", "--config", cfg, "--out", dir), 1, "d.json", "gone.png");
    }
}
