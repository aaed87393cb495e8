using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using NUnit.Framework;
using VwLmm.Cli;
using VwLmm.Data;
using VwLmm.Model;
using static VwLmm.Tests.Cli.CliRunner;

namespace VwLmm.Tests.Cli;

/// <summary>
/// Seeded mutations of the files the verbs read, each run through the CLI in process: a model folder's config.json and
/// safetensors header, tokenizer.model, PNG and JPEG images, .npy pixels, and a train config with the model config.json
/// it trains from. Whatever a mutation does, the verb succeeds or exits 1 or 2 with one line that names the cause, never
/// a stack trace or a bare runtime exception ("… (NullReferenceException)", which is how one that no check caught
/// reaches the user). The draws come from fixed seeds, so a failure repeats.
/// </summary>
public class MalformedInputFuzzTests
{
    private static readonly Regex BareException = new(@"\(\w*Exception\)$", RegexOptions.Compiled);

    private string _dir = "";
    private RandomShapesGridModel _model = null!;
    private string[] _forward = [];
    private string _pixels = "";

    [OneTimeSetUp]
    public void Create()
    {
        _dir = TempDir();
        _model = RandomShapesGridModel.Save(Path.Combine(_dir, "model"));
        int s = _model.Config.Vision.ImageSize;
        _pixels = Path.Combine(_dir, "pixels.npy");
        Npy.Write<float>(_pixels, new float[3 * s * s], [3, s, s]);
        string ids = Path.Combine(_dir, "ids.json");
        File.WriteAllText(ids, "[1, -200, 5, 6, 7]");
        _forward = ["forward", "--model", _model.Dir, "--pixels", _pixels, "--ids", ids, "--dump", Path.Combine(_dir, "dump"), "--threads", "1"];
    }

    [Test]
    public void ModelConfigJson()
    {
        string file = Path.Combine(_model.Dir, VwLmmConfig.FileName);
        AssertEveryRunEndsCleanly(file, JsonMutations(File.ReadAllText(file), new Random(1), share: 1), _forward);
    }

    [Test]
    public void SafetensorsHeader()
    {
        string file = Path.Combine(_model.Dir, "model.safetensors");
        byte[] b = File.ReadAllBytes(file);
        long n = BitConverter.ToInt64(b, 0);
        var body = b[(int)(8 + n)..];
        var reheadered = JsonMutations(Encoding.UTF8.GetString(b, 8, (int)n), new Random(2), share: 0.15)
            .Select(m => (m.What, (byte[])[.. BitConverter.GetBytes((long)m.Bytes.Length), .. m.Bytes, .. body]));
        AssertEveryRunEndsCleanly(file, ByteMutations(b, new Random(3), 250, (int)(8 + n)).Concat(reheadered), _forward);
    }

    [Test]
    public void TokenizerModel()
    {
        string file = Path.Combine(_model.Dir, "tokenizer.model");
        AssertEveryRunEndsCleanly(file, ByteMutations(File.ReadAllBytes(file), new Random(4), 200), ["tokenize", "--tokenizer", file, "a red circle ."]);
    }

    [Test]
    public void Images()
    {
        var random = new Random(5);
        foreach (string source in Directory.GetFiles(Path.Combine(Fixtures, "images", "src")).Order())
        {
            string file = Path.Combine(_dir, "image" + Path.GetExtension(source));
            File.Copy(source, file, overwrite: true);
            AssertEveryRunEndsCleanly(file, ByteMutations(File.ReadAllBytes(file), random, 25),
                                      ["preprocess", "--image", file, "--size", "24", "--out", Path.Combine(_dir, "x.npy")]);
        }
    }

    [Test]
    public void NpyPixels()
    {
        // Mutations past the 128-byte header only change pixel values.
        AssertEveryRunEndsCleanly(_pixels, ByteMutations(File.ReadAllBytes(_pixels), new Random(6), 120, region: 128), _forward);
    }

    [Test]
    public void TrainConfigAndTheModelConfigItTrainsFrom()
    {
        string dir = TinyTrainFolder("train");
        string modelConfig = Path.Combine(dir, VwLmmConfig.FileName);
        File.WriteAllText(modelConfig, (VwLmmConfig.Presets.Tiny with { Llm = VwLmmConfig.Presets.Tiny.Llm with { VocabSize = 500 } }).ToJson());
        string config = Path.Combine(dir, "train.json");
        File.WriteAllText(config, """
            {"model": {"config": "config.json"}, "tokenizer": "x.model", "datasets": {"d": {"json": "d.json", "template": "shapes_chat"}}, "seed": 1,
             "stages": [{"name": "s", "data": "d", "trainable": ["projector", "llm", "vm_head"], "steps": 1, "lr": 0.01, "batch_size": 2}]}
            """);
        string output = Path.Combine(dir, "out");
        string[] train = ["train", "--config", config, "--out", output, "--quiet", "--threads", "1"];
        void Fresh()
        {
            if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
        }
        AssertEveryRunEndsCleanly(config, JsonMutations(File.ReadAllText(config), new Random(7), share: 0.3), train, Fresh);
        AssertEveryRunEndsCleanly(modelConfig, JsonMutations(File.ReadAllText(modelConfig), new Random(8), share: 0.3), train, Fresh);
    }

    [Test]
    public void TrainerStateOfACheckpointToResume()
    {
        // A finished run of two stages, the second with a moving average and branches: a mutated state resumes it from
        // any stage, step or branch, into every restore path.
        string dir = TinyTrainFolder("resume");
        string config = Path.Combine(dir, "train.json");
        File.WriteAllText(config, """
            {"model": {"preset": "tiny"}, "tokenizer": "x.model", "datasets": {"d": {"json": "d.json", "template": "shapes_chat"}}, "seed": 1,
             "stages": [{"name": "s", "data": "d", "trainable": ["projector", "llm", "vm_head"], "steps": 2, "lr": 0.01, "batch_size": 2},
                        {"name": "t", "data": "d", "trainable": ["projector", "llm"], "steps": 4, "lr": 0.01, "batch_size": 2, "ema_decay": 0.5, "branches": 2, "branch_from": 2}]}
            """);
        string finished = Path.Combine(dir, "finished"), output = Path.Combine(dir, "out");
        Assert.That(Program.Run(["train", "--config", config, "--out", finished, "--quiet", "--threads", "1"], new StringWriter(), new StringWriter()), Is.Zero);
        string state = Path.Combine(output, "checkpoint", "trainer_state.json");
        void Fresh()
        {
            if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
            foreach (string f in Directory.GetFiles(finished, "*", SearchOption.AllDirectories))
            {
                string to = Path.Combine(output, Path.GetRelativePath(finished, f));
                Directory.CreateDirectory(Path.GetDirectoryName(to)!);
                File.Copy(f, to);
            }
        }
        string[] resume = ["train", "--config", config, "--out", output, "--resume", "--quiet", "--threads", "1"];
        Fresh();
        AssertEveryRunEndsCleanly(state, JsonMutations(File.ReadAllText(state), new Random(9), share: 0.4), resume, Fresh);
        // Two keys at once, which the sweep does not draw: a step past the stage's end.
        Fresh();
        var past = JsonNode.Parse(File.ReadAllText(state))!;
        past["stage"] = 1;
        past["stage_step"] = 5;
        File.WriteAllText(state, past.ToJsonString());
        var stderr = new StringWriter();
        Assert.That(Program.Run(resume, new StringWriter(), stderr), Is.EqualTo(1));
        Assert.That(stderr.ToString().Trim(), Is.EqualTo($"vwlmm train: {state}: stage_step 5 is past stage 1's 4 steps"));
    }

    /// <summary>A folder with a two-example LLaVA dataset d.json (one with an image) and the fixture tokenizer x.model.</summary>
    private string TinyTrainFolder(string name)
    {
        string dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(Fixtures, "images", "src", "grey_64x64.png"), Path.Combine(dir, "grey.png"), overwrite: true);
        File.Copy(Path.Combine(Fixtures, "tokenizer", "llama_like.model"), Path.Combine(dir, "x.model"), overwrite: true);
        File.WriteAllText(Path.Combine(dir, "d.json"), """
            [{"id": "a", "image": "grey.png", "conversations": [{"from": "human", "value": "<image>\nwhat colour ?"}, {"from": "gpt", "value": "a grey one"}]},
             {"id": "c", "conversations": [{"from": "human", "value": "say hello"}, {"from": "gpt", "value": "hello there"}]}]
            """);
        return dir;
    }

    /// <summary>Runs <paramref name="args"/> with <paramref name="file"/> replaced by each mutation in turn (then restored)
    /// and fails listing every run that did not end cleanly.</summary>
    private static void AssertEveryRunEndsCleanly(string file, IEnumerable<(string What, byte[] Bytes)> mutations, string[] args, Action? before = null)
    {
        byte[] original = File.ReadAllBytes(file);
        var failures = new List<string>();
        int runs = 0;
        // The verbs' notes ("wrote …", "note: …") go to the console, not to the error writer: kept out of the test log.
        var console = Console.Error;
        Console.SetError(TextWriter.Null);
        try
        {
            foreach (var (what, bytes) in mutations)
            {
                before?.Invoke();
                File.WriteAllBytes(file, bytes);
                var stderr = new StringWriter();
                int exit = Program.Run(args, new StringWriter(), stderr);
                runs++;
                var lines = stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
                if (exit is not (0 or 1 or 2) || exit != 0 && (lines.Length != 1 || BareException.IsMatch(lines[0])))
                    failures.Add($"{Path.GetFileName(file)} {what}: exit {exit}, {stderr.ToString().Trim()}");
            }
        }
        finally
        {
            Console.SetError(console);
            File.WriteAllBytes(file, original);
        }
        TestContext.Out.WriteLine($"{Path.GetFileName(file)}: {runs} mutations");
        Assert.That(runs, Is.GreaterThan(20));
        Assert.That(failures, Is.Empty);
    }

    /// <summary>Cuts at fixed points, then <paramref name="count"/> draws of one to four bytes in the first
    /// <paramref name="region"/> bytes each flipped in one bit, replaced, or set to 0 or 0xFF.</summary>
    private static IEnumerable<(string What, byte[] Bytes)> ByteMutations(byte[] b, Random random, int count, int region = int.MaxValue)
    {
        foreach (int cut in new[] { 0, 1, 4, 7, 8, 9, 16, 32, b.Length / 4, b.Length / 2, b.Length - 1 }.Where(c => c < b.Length).Distinct())
            yield return ($"cut at {cut}", b[..cut]);
        for (int i = 0; i < count; i++)
        {
            var m = (byte[])b.Clone();
            var at = new List<int>();
            for (int k = random.Next(4); k >= 0; k--)
            {
                int j = random.Next(Math.Min(region, b.Length));
                at.Add(j);
                m[j] = random.Next(3) switch { 0 => (byte)(m[j] ^ 1 << random.Next(8)), 1 => (byte)random.Next(256), _ => random.Next(2) == 0 ? (byte)0 : (byte)0xFF };
            }
            yield return ($"bytes at {string.Join(",", at)}", m);
        }
    }

    /// <summary>
    /// A <paramref name="share"/> of these, drawn: each key and array element in turn given each of a set of values that
    /// are out of range, of the wrong kind or extreme, or removed; then the text cut at twenty points.
    /// </summary>
    private static IEnumerable<(string What, byte[] Bytes)> JsonMutations(string json, Random random, double share)
    {
        JsonNode?[] values = [-1, 0, 1, 2.5, 1e12, int.MaxValue, int.MinValue, 1e308, "x", true, null, new JsonArray(), new JsonObject()];
        int places = Places(JsonNode.Parse(json)!).Count;
        for (int p = 0; p < places; p++)
            for (int v = 0; v <= values.Length; v++)
            {
                if (random.NextDouble() >= share) continue;
                var root = JsonNode.Parse(json)!;
                var (parent, key) = Places(root)[p];
                string what;
                if (v == values.Length)
                {
                    if (parent is not JsonObject o) continue;
                    o.Remove((string)key);
                    what = $"'{key}' removed";
                }
                else
                {
                    if (parent is JsonObject o) o[(string)key] = values[v]?.DeepClone();
                    else ((JsonArray)parent)[(int)key] = values[v]?.DeepClone();
                    what = $"'{key}' = {values[v]?.ToJsonString() ?? "null"}";
                }
                yield return (what, Encoding.UTF8.GetBytes(root.ToJsonString()));
            }
        for (int cut = 0; cut < json.Length; cut += Math.Max(1, json.Length / 20))
            yield return ($"text cut at {cut}", Encoding.UTF8.GetBytes(json[..cut]));
    }

    /// <summary>Every (container, key or index) of the tree, depth first.</summary>
    private static List<(JsonNode Parent, object Key)> Places(JsonNode root)
    {
        var places = new List<(JsonNode, object)>();
        void Walk(JsonNode node)
        {
            if (node is JsonObject o)
                foreach (var (k, v) in o.ToList())
                {
                    places.Add((o, k));
                    if (v is not null) Walk(v);
                }
            else if (node is JsonArray a)
                for (int i = 0; i < a.Count; i++)
                {
                    places.Add((a, i));
                    if (a[i] is not null) Walk(a[i]!);
                }
        }
        Walk(root);
        return places;
    }
}
