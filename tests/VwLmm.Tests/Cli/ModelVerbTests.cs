using System.Text.Json;
using System.Text.RegularExpressions;
using NUnit.Framework;
using VwLmm.Data;
using VwLmm.Data.Conversations;
using VwLmm.Data.Text;
using VwLmm.Model;
using static VwLmm.Tests.Cli.CliRunner;

namespace VwLmm.Tests.Cli;

/// <summary>
/// The verbs that read a model folder — forward, visualize, chat, eval — end to end on the real binary, against a
/// randomly initialised ShapesGrid-sized model saved once for the class. What the dumps must satisfy is recomputed here
/// in double from the dumped tensors themselves (the HF shift of the text loss, the visual-word KL's shift and direction).
/// </summary>
public class ModelVerbTests
{
    private string _dir = "", _model = "", _image = "";
    private int _vocab, _patches;
    private SentencePieceTokenizer _tok = null!;

    [OneTimeSetUp]
    public void SaveModel()
    {
        _dir = TempDir();
        var saved = RandomShapesGridModel.Save(Path.Combine(_dir, "model"));
        (_model, _tok, _vocab, _patches) = (saved.Dir, saved.Tokenizer, saved.Config.Llm.VocabSize, saved.Config.ImageTokens);
        _image = RandomShapesGridModel.SaveScene(_dir);
    }

    [OneTimeTearDown]
    public void Remove() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void ForwardWritesAttentionWeightsWhenAsked()
    {
        int[] ids = [_tok.BosId, Llava.ImageTokenIndex, .. _tok.Encode("what shape is the red object ?", addBos: false)];
        string idsPath = Path.Combine(_dir, "attention-ids.json"), plain = Path.Combine(_dir, "no-attention"), dump = Path.Combine(_dir, "attention");
        File.WriteAllText(idsPath, JsonSerializer.Serialize(ids));
        Assert.That(Run("forward", "--model", _model, "--image", _image, "--ids", idsPath, "--dump", plain, "--threads", "1").ExitCode, Is.Zero);
        Assert.That(File.Exists(Path.Combine(plain, "attention.npy")), Is.False, "only with --attention");
        var r = Run("forward", "--model", _model, "--image", _image, "--ids", idsPath, "--dump", dump, "--attention", "--threads", "1");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        var config = VwLmmConfig.Load(Path.Combine(_model, "config.json"));
        var (a, shape) = Npy.Read<float>(Path.Combine(dump, "attention.npy"));
        int layers = config.Llm.NumHiddenLayers, h = config.Llm.NumAttentionHeads, L = ids.Length - 1 + _patches;
        Assert.That(shape, Is.EqualTo(new[] { layers, h, L, L }));
        for (int row = 0; row < layers * h * L; row++)
        {
            int t = row % L;
            var weights = a.AsSpan(row * L, L);
            Assert.That(weights[..(t + 1)].ToArray().Sum(v => (double)v), Is.EqualTo(1).Within(1e-5), $"row {row} sums to 1");
            Assert.That(weights[(t + 1)..].ToArray().All(v => v == 0), $"row {row}: no weight on later keys");
        }
        // The logits do not depend on whether the weights were asked for.
        Assert.That(Npy.Read<float>(Path.Combine(dump, "logits.npy")).Data, Is.EqualTo(Npy.Read<float>(Path.Combine(plain, "logits.npy")).Data));
    }

    [Test]
    public void ForwardDumpsLogitsVisualWordsAndLossesThatAgreeWithEachOther()
    {
        int bos = _tok.BosId;
        int[] text = _tok.Encode("what colour is the circle ?", addBos: false);
        int[] ids = [bos, Llava.ImageTokenIndex, .. text, _tok.EosId];
        string idsPath = Path.Combine(_dir, "ids.json");
        File.WriteAllText(idsPath, JsonSerializer.Serialize(ids));
        string dump = Path.Combine(_dir, "dump");
        var r = Run("forward", "--model", _model, "--image", _image, "--ids", idsPath, "--dump", dump, "--threads", "1");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stderr, Is.Empty, "a saved VW-LMM model loads without notes: its vm_head is used");
        var inspect = Run("inspect", _model);
        Assert.That(inspect.ExitCode, Is.Zero, inspect.Stderr);
        Assert.That(inspect.Stdout, Does.Contain("vm_head     present").And.Not.Contain("not used"));
        Assert.That(inspect.Stdout, Does.Contain("template    not recorded (chat, eval and forward default to vicuna_v1)"));

        var (logits, ls) = Npy.Read<float>(Path.Combine(dump, "logits.npy"));
        var (p, ps) = Npy.Read<float>(Path.Combine(dump, "visual_words.npy"));
        var (rowLoss, rs) = Npy.Read<float>(Path.Combine(dump, "text_loss.npy"));
        int L = ids.Length - 1 + _patches, V = _vocab;
        Assert.That(ls, Is.EqualTo(new[] { L, V }));
        Assert.That(ps, Is.EqualTo(new[] { _patches, V }));
        Assert.That(rs, Is.EqualTo(new[] { L }));

        // After expansion: BOS at 0, the image at 1..N, then the text. Labels are the ids with the image ignored, and
        // logits at t score label t + 1 (HF's shift).
        var labels = new List<int> { bos };
        labels.AddRange(Enumerable.Repeat(-100, _patches));
        labels.AddRange(ids[2..]);
        double LogSoftmax(int t, int v)
        {
            var row = logits.AsSpan(t * V, V);
            double max = double.NegativeInfinity, sum = 0;
            foreach (float x in row) max = Math.Max(max, x);
            foreach (float x in row) sum += Math.Exp(x - max);
            return row[v] - max - Math.Log(sum);
        }
        double textSum = 0;
        int counted = 0;
        for (int t = 0; t < L; t++)
        {
            int next = t + 1 < L ? labels[t + 1] : -100;
            double expected = next < 0 ? 0 : -LogSoftmax(t, next);
            Assert.That(rowLoss[t], Is.EqualTo(expected).Within(1e-4 * Math.Max(1, expected)), $"text loss at {t}");
            if (next >= 0) { textSum += expected; counted++; }
        }

        // Visual words: each row a distribution; L_vm = mean over image tokens j of KL(p_j ‖ q), q the logits at the
        // position before patch j (the BOS for the first patch).
        double vmSum = 0;
        for (int j = 0; j < _patches; j++)
        {
            var pj = p.AsSpan(j * V, V);
            double total = 0, kl = 0;
            for (int v = 0; v < V; v++)
            {
                total += pj[v];
                if (pj[v] > 0) kl += pj[v] * (Math.Log(pj[v]) - LogSoftmax(j, v));
            }
            Assert.That(total, Is.EqualTo(1).Within(1e-4), $"visual word {j} sums to 1");
            vmSum += kl;
        }
        using var losses = JsonDocument.Parse(File.ReadAllText(Path.Combine(dump, "losses.json")));
        double textLoss = losses.RootElement.GetProperty("text").GetDouble(), vm = losses.RootElement.GetProperty("vm").GetDouble();
        Assert.That(textLoss, Is.EqualTo(textSum / counted).Within(1e-4 * textLoss));
        Assert.That(vm, Is.EqualTo(vmSum / _patches).Within(1e-3 * vm + 1e-6));
        Assert.That(losses.RootElement.GetProperty("total").GetDouble(), Is.EqualTo(textLoss + vm).Within(1e-6 * (textLoss + vm)));

        // The same image as preprocessed pixels gives the same dump.
        string pixels = Path.Combine(_dir, "pixels.npy");
        Assert.That(Run("preprocess", "--image", _image, "--size", "32", "--out", pixels).ExitCode, Is.Zero);
        string dump2 = Path.Combine(_dir, "dump2");
        Assert.That(Run("forward", "--model", _model, "--pixels", pixels, "--ids", idsPath, "--dump", dump2, "--threads", "1").ExitCode, Is.Zero);
        Assert.That(Npy.Read<float>(Path.Combine(dump2, "logits.npy")).Data, Is.EqualTo(logits));

        // config.json's vm_kl_direction "reverse" turns the loss of the same rows into KL(q ‖ p), q the logits before each patch.
        string reverse = Path.Combine(_dir, "reverse");
        Directory.CreateDirectory(reverse);
        foreach (var file in Directory.GetFiles(_model)) File.Copy(file, Path.Combine(reverse, Path.GetFileName(file)));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(reverse, "config.json")))!.AsObject();
        config["vm_kl_direction"] = "reverse";
        File.WriteAllText(Path.Combine(reverse, "config.json"), config.ToJsonString());
        string dump3 = Path.Combine(_dir, "dump3");
        Assert.That(Run("forward", "--model", reverse, "--image", _image, "--ids", idsPath, "--dump", dump3, "--threads", "1").ExitCode, Is.Zero);
        double reverseSum = 0;
        for (int j = 0; j < _patches; j++)
            for (int v = 0; v < V; v++)
            {
                double logQ = LogSoftmax(j, v);
                reverseSum += Math.Exp(logQ) * (logQ - Math.Log(p[j * V + v]));
            }
        using var reversed = JsonDocument.Parse(File.ReadAllText(Path.Combine(dump3, "losses.json")));
        double vmReverse = reversed.RootElement.GetProperty("vm").GetDouble();
        Assert.That(vmReverse, Is.EqualTo(reverseSum / _patches).Within(1e-3 * vmReverse + 1e-6));
        Assert.That(vmReverse, Is.Not.EqualTo(vm).Within(1e-3 * vm), "a direction the loss did not change would pass the line above only by chance");
    }

    /// <summary>A checkpoint with a tensor the model does not use (another code base's head): refused by name, and
    /// with --allow-unused loaded to the very logits of the clean checkpoint.</summary>
    [Test]
    public void AllowUnusedSkipsATensorTheModelDoesNotUseAndChangesNothingElse()
    {
        string extra = Path.Combine(_dir, "extra");
        Directory.CreateDirectory(extra);
        foreach (var file in Directory.GetFiles(_model)) File.Copy(file, Path.Combine(extra, Path.GetFileName(file)));
        var entries = new List<VwLmm.Model.Checkpoints.SafetensorsEntry>();
        using (var st = VwLmm.Model.Checkpoints.SafetensorsFile.Open(Path.Combine(_model, "model.safetensors")))
            foreach (var t in st.Tensors)
            {
                var values = new float[t.Shape.Numel];
                st.ReadFloat(t.Name, values);
                entries.Add(new(t.Name, t.Shape, values));
            }
        entries.Add(new("model.other_head.weight", new VwLmm.Core.Shape(3, 2), new float[] { 1, 2, 3, 4, 5, 6 }));
        VwLmm.Model.Checkpoints.SafetensorsWriter.Write(Path.Combine(extra, "model.safetensors"), entries);

        string idsPath = Path.Combine(_dir, "allow-ids.json");
        File.WriteAllText(idsPath, JsonSerializer.Serialize<int[]>([_tok.BosId, Llava.ImageTokenIndex, .. _tok.Encode("what colour ?", addBos: false)]));
        (string Logits, string Stderr) Dump(string model, string name, params string[] more)
        {
            string dump = Path.Combine(_dir, name);
            var r = Run(["forward", "--model", model, "--image", _image, "--ids", idsPath, "--dump", dump, "--threads", "1", .. more]);
            Assert.That(r.ExitCode, Is.Zero, r.Stderr);
            return (Path.Combine(dump, "logits.npy"), r.Stderr);
        }
        AssertOneLineError(Run("forward", "--model", extra, "--image", _image, "--ids", idsPath, "--dump", Path.Combine(_dir, "refused"), "--threads", "1"),
                           1, "1 unexpected tensor (skipped when unused tensors are allowed, --allow-unused): model.other_head.weight");
        AssertOneLineError(Run("inspect", extra), 1, "model.other_head.weight");
        Assert.That(Run("inspect", extra, "--allow-unused").ExitCode, Is.Zero);
        var allowed = Dump(extra, "allowed", "--allow-unused");
        Assert.That(allowed.Stderr, Does.Contain("note: skipped 1 tensor the model does not use: model.other_head.weight"));
        Assert.That(File.ReadAllBytes(allowed.Logits), Is.EqualTo(File.ReadAllBytes(Dump(_model, "clean").Logits)));
    }

    [Test]
    public void ForwardBadInputsAreOneLineErrors()
    {
        string dump = Path.Combine(_dir, "bad-dump");
        string Ids(string name, string json)
        {
            string path = Path.Combine(_dir, name);
            File.WriteAllText(path, json);
            return path;
        }
        string ok = Ids("ok.json", $"[{_tok.BosId}, -200, 5]");
        AssertOneLineError(Run("forward", "--model", _model, "--image", _image, "--ids", Ids("big.json", $"[1, -200, {_vocab}]"), "--dump", dump), 1, $"{_vocab}");
        AssertOneLineError(Run("forward", "--model", _model, "--image", _image, "--ids", Ids("two.json", "[1, -200, 5, -200]"), "--dump", dump), 1, "−200");
        AssertOneLineError(Run("forward", "--model", _model, "--image", _image, "--ids", Ids("text.json", "[1, \"a\"]"), "--dump", dump), 1, "text.json");
        AssertOneLineError(Run("forward", "--model", _model, "--image", _image, "--ids", ok, "--labels", Ids("short.json", "[1]"), "--dump", dump), 1, "short.json");
        AssertOneLineError(Run("forward", "--model", _model, "--image", _image, "--ids", Path.Combine(_dir, "absent.json"), "--dump", dump), 1, "absent.json");
        AssertOneLineError(Run("forward", "--model", _model, "--image", Path.Combine(_dir, "absent.png"), "--ids", ok, "--dump", dump), 1, "absent.png");
        AssertOneLineError(Run("forward", "--model", Path.Combine(_dir, "nothing"), "--image", _image, "--ids", ok, "--dump", dump), 1, "nothing");
        string wrongShape = Path.Combine(_dir, "small.npy");
        Npy.Write<float>(wrongShape, new float[3 * 16 * 16], [3, 16, 16]);
        AssertOneLineError(Run("forward", "--model", _model, "--pixels", wrongShape, "--ids", ok, "--dump", dump), 1, "small.npy", "[3,16,16]");
        AssertOneLineError(Run("forward", "--model", _model, "--image", _image, "--ids", ok), 2, "--dump");
        AssertOneLineError(Run("forward", "--model", _model, "--image", _image, "--pixels", wrongShape, "--ids", ok, "--dump", dump), 2, "--image");
        Assert.That(Directory.Exists(dump), Is.False, "nothing is dumped for a failed call");
    }

    [Test]
    public void VisualizeLabelsEveryPatchWithItsTopWordsByProbability()
    {
        string ids = Path.Combine(_dir, "vis-ids.json");
        File.WriteAllText(ids, $"[{_tok.BosId}, -200]");
        string dump = Path.Combine(_dir, "vis-dump");
        Assert.That(Run("forward", "--model", _model, "--image", _image, "--ids", ids, "--dump", dump, "--threads", "1").ExitCode, Is.Zero);
        var (p, _) = Npy.Read<float>(Path.Combine(dump, "visual_words.npy"));

        string map = Path.Combine(_dir, "map.html");
        var r = Run("visualize", "--model", _model, "--image", _image, "--out", map, "--top-k", "3", "--threads", "1");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        string html = File.ReadAllText(map);
        var tips = Regex.Matches(html, "<g><title>(.*?)</title>", RegexOptions.Singleline).Select(m => m.Groups[1].Value.Split('\n')).ToList();
        Assert.That(tips, Has.Count.EqualTo(_patches));
        for (int j = 0; j < _patches; j++)
        {
            Assert.That(tips[j], Has.Length.EqualTo(3), $"patch {j}: top 3");
            var row = p.AsSpan(j * _vocab, _vocab).ToArray();
            int top = Enumerable.Range(0, _vocab).OrderByDescending(v => row[v]).ThenBy(v => v).First();
            var probs = tips[j].Select(line => double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            Assert.That(probs, Is.Ordered.Descending, $"patch {j}");
            Assert.That(probs[0], Is.EqualTo(row[top]).Within(6e-4), $"patch {j}: top probability");
        }
        AssertOneLineError(Run("visualize", "--model", _model, "--image", _image, "--top-k", "0"), 2, "--top-k");
        AssertOneLineError(Run("visualize", "--model", _model, "--image", Path.Combine(_dir, "absent.png"), "--out", map), 1, "absent.png");
    }

    /// <summary>
    /// --weights bf16 through the binary: forward's logits move by what rounding the weights to bf16 can move them
    /// (bounded here in double from the dumped f32 run), chat answers, and an unknown storage is a usage error.
    /// </summary>
    [Test]
    public void Bf16WeightsComputeWithinTheirRoundingOfTheF32Model()
    {
        string ids = Path.Combine(_dir, "bf16-ids.json");
        File.WriteAllText(ids, JsonSerializer.Serialize(new[] { _tok.BosId, Llava.ImageTokenIndex }.Concat(_tok.Encode("what colour is the circle ?", addBos: false))));
        string f32 = Path.Combine(_dir, "f32-dump"), bf16 = Path.Combine(_dir, "bf16-dump");
        foreach (var (dump, extra) in new[] { (f32, Array.Empty<string>()), (bf16, new[] { "--weights", "bf16" }) })
        {
            var r = Run(["forward", "--model", _model, "--image", _image, "--ids", ids, "--dump", dump, "--threads", "1", .. extra]);
            Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        }
        var (a, _) = Npy.Read<float>(Path.Combine(f32, "logits.npy"));
        var (b, _) = Npy.Read<float>(Path.Combine(bf16, "logits.npy"));
        double scale = a.Max(x => Math.Abs((double)x)), worst = a.Zip(b).Max(t => Math.Abs((double)t.First - t.Second));
        // bf16 keeps 8 significant bits (relative error ≤ 2⁻⁹ per weight); through a few layers the logits move by a
        // few times that, and not at all only if the path ignored the storage.
        Assert.That(worst, Is.GreaterThan(0).And.LessThan(0.05 * scale), $"largest change {worst} of largest logit {scale}");

        var chat = Run("chat", "--model", _model, "--image", _image, "what colour is the circle ?", "--template", "shapes_chat",
                       "--max-new-tokens", "3", "--threads", "1", "--weights", "bf16");
        Assert.That(chat.ExitCode, Is.Zero, chat.Stderr);
        Assert.That(chat.Stdout.Trim(), Is.Not.Empty);
        AssertOneLineError(Run("chat", "--model", _model, "--image", _image, "hi", "--weights", "f16"), 2, "--weights must be f32 or bf16");

        // inspect's memory line, from the headers alone, against what loading actually allocates either way.
        using var cpu = new VwLmm.Cpu.CpuBackend(1);
        double Mib(VwLmm.Core.DType w)
        {
            using var m = VwLmm.Model.Checkpoints.ModelCheckpoint.Load(cpu, _model, weights: w);
            return m.Parameters.All.Sum(p => p.Value.Bytes) / 1048576.0;
        }
        var inspect = Run("inspect", _model);
        Assert.That(inspect.ExitCode, Is.Zero, inspect.Stderr);
        string F(double mib) => mib.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(inspect.Stdout, Does.Contain($"weights {F(Mib(VwLmm.Core.DType.F32))} MiB as f32, {F(Mib(VwLmm.Core.DType.BF16))} MiB with --weights bf16"));
    }

    [Test]
    public void ChatAnswersTheSameWayTwiceAndEvalScoresItsOwnPredictions()
    {
        string[] chat = ["chat", "--model", _model, "--image", _image, "what colour is the circle ?", "--template", "shapes_chat", "--max-new-tokens", "3", "--threads", "1"];
        var first = Run(chat);
        Assert.That(first.ExitCode, Is.Zero, first.Stderr);
        Assert.That(first.Stdout.Trim(), Is.Not.Empty);
        Assert.That(Run(chat).Stdout, Is.EqualTo(first.Stdout), "greedy decoding is deterministic");
        foreach (string[] filter in new[] { new[] { "--top-k", "1" }, ["--top-p", "0.000001"] })
        {
            var sampled = Run([.. chat, "--temperature", "1", .. filter]);
            Assert.That((sampled.ExitCode, sampled.Stdout), Is.EqualTo((0, first.Stdout)), $"{filter[0]} keeping one token samples greedily");
        }
        AssertOneLineError(Run("chat", "--model", _model, "--image", _image, "hi", "--top-p", "1.5"), 2, "--top-p");
        // The model's context is 128 positions: chat answers in what the prompt leaves, whether the length is the
        // default of 128 new tokens or asked for, which alone would not fit.
        var untold = Run(chat[..^4].Append("--threads").Append("1").ToArray());
        Assert.That(untold.ExitCode, Is.Zero, untold.Stderr);
        var asked = Run([.. chat[..^3], "200", "--threads", "1"]);
        Assert.That(asked.ExitCode, Is.Zero, asked.Stderr);
        Assert.That(asked.Stdout, Is.EqualTo(untold.Stdout));
        var ignored = Run([.. chat, "--top-k", "5"]);
        Assert.That((ignored.ExitCode, ignored.Stdout), Is.EqualTo((0, first.Stdout)), "greedy all the same");
        Assert.That(ignored.Stderr, Does.Contain("warning: --top-k, --top-p and --seed shape sampling, which needs --temperature > 0"));

        // Without --template, chat takes the template config.json records: a copy of the model that records shapes_chat
        // answers as the original does when told; the original records none, so chat falls back to vicuna_v1, whose
        // system prompt alone leaves no room in 128 positions.
        string recorded = Path.Combine(_dir, "recorded");
        Directory.CreateDirectory(recorded);
        foreach (var file in Directory.GetFiles(_model)) File.Copy(file, Path.Combine(recorded, Path.GetFileName(file)));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(recorded, "config.json")))!.AsObject();
        Assert.That(config.ContainsKey("conversation_template"), Is.False);
        config["conversation_template"] = "shapes_chat";
        File.WriteAllText(Path.Combine(recorded, "config.json"), config.ToJsonString());
        string[] noTemplate = [.. chat[..6], .. chat[8..]];
        var told = Run([.. noTemplate[..2], recorded, .. noTemplate[3..]]);
        Assert.That(told.ExitCode, Is.Zero, told.Stderr);
        Assert.That(told.Stdout, Is.EqualTo(first.Stdout));
        AssertOneLineError(Run(noTemplate), 1, "template vicuna_v1 fills the model's context of 128 positions (");
        Assert.That(Run("inspect", recorded).Stdout, Does.Contain("template    shapes_chat\n"));

        // Without a question, chat reads one per line until end of file (blank lines skipped), keeping the conversation:
        // its first answer is the one-shot answer.
        var session = RunWithInput("what colour is the circle ?\n\nis there a red square ?\n", chat[..5].Concat(chat[6..]).ToArray());
        Assert.That(session.ExitCode, Is.Zero, session.Stderr);
        var answers = session.Stdout.Split('\n');
        Assert.That(answers, Has.Length.EqualTo(3), "two answers, one per line");
        Assert.That(answers[0] + "\n", Is.EqualTo(first.Stdout.ReplaceLineEndings("\n")));
        // A question too long for the context is said, skipped and left out of the conversation: the next one is
        // answered as if it had never been asked, and the exit code tells that one was not.
        string tooLong = string.Join(" ", Enumerable.Repeat("red", 200));
        var skipping = RunWithInput($"what colour is the circle ?\n{tooLong}\nis there a red square ?\n", chat[..5].Concat(chat[6..]).ToArray());
        Assert.That(skipping.ExitCode, Is.EqualTo(1));
        Assert.That(skipping.Stdout, Is.EqualTo(session.Stdout));
        Assert.That(skipping.Stderr.Trim(), Does.Match(@"^vwlmm chat: the conversation in template shapes_chat fills the model's context of 128 positions \(\d+ with this question\); not asked$"));

        string data = Path.Combine(_dir, "world");
        Assert.That(Run("data", "shapesgrid", "--out", data, "--n", "3", "--split", "test").ExitCode, Is.Zero);
        string predictions = Path.Combine(_dir, "predictions.jsonl");
        var r = Run("eval", "--model", _model, "--data", Path.Combine(data, "data.json"), "--template", "shapes_chat", "--out", predictions,
                    "--max-new-tokens", "3", "--threads", "1");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        AssertOneLineError(Run("eval", "--model", _model, "--data", Path.Combine(data, "data.json"), "--out", predictions, "--threads", "1"),
                           1, "data.json: sample test-0, question 1:", "in template vicuna_v1 + 32 new tokens exceed the model's context of 128");
        using var summary = JsonDocument.Parse(r.Stdout);
        int questions = summary.RootElement.GetProperty("questions").GetInt32();
        using var source = JsonDocument.Parse(File.ReadAllText(Path.Combine(data, "data.json")));
        int humanTurns = source.RootElement.EnumerateArray().Sum(s => s.GetProperty("conversations").EnumerateArray().Count(t => t.GetProperty("from").GetString() == "human"));
        Assert.That(questions, Is.EqualTo(humanTurns));
        var rows = File.ReadAllLines(predictions).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.That(rows, Has.Count.EqualTo(questions));
        Assert.That(summary.RootElement.GetProperty("overall").GetDouble(),
            Is.EqualTo(rows.Count(x => x.GetProperty("correct").GetBoolean()) / (double)questions).Within(1e-12));

        // Scoring, against the rule eval states (exact match after trimming and lower-casing; the type is the question's
        // first two words): one question per sample, so that no reference enters a prompt, then the same samples with
        // the model's own answers as references, upper-cased and padded, which must all count.
        string Single(string name, Func<string, string, string> reference)
        {
            var samples = new System.Text.Json.Nodes.JsonArray();
            foreach (var s in source.RootElement.EnumerateArray())
            {
                var turns = s.GetProperty("conversations").EnumerateArray().Take(2).ToArray();
                string id = s.GetProperty("id").GetString()!, question = turns[0].GetProperty("value").GetString()!;
                samples.Add(new System.Text.Json.Nodes.JsonObject
                {
                    ["id"] = id, ["image"] = s.GetProperty("image").GetString(),
                    ["conversations"] = new System.Text.Json.Nodes.JsonArray(
                        new System.Text.Json.Nodes.JsonObject { ["from"] = "human", ["value"] = question },
                        new System.Text.Json.Nodes.JsonObject { ["from"] = "gpt", ["value"] = reference(id, turns[1].GetProperty("value").GetString()!) }),
                });
            }
            string path = Path.Combine(data, name);
            File.WriteAllText(path, samples.ToJsonString());
            return path;
        }
        List<JsonElement> Eval(string json)
        {
            string outPath = json + ".jsonl";
            var run = Run("eval", "--model", _model, "--data", json, "--template", "shapes_chat", "--out", outPath, "--max-new-tokens", "3", "--threads", "1");
            Assert.That(run.ExitCode, Is.Zero, run.Stderr);
            return File.ReadAllLines(outPath).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        }
        var scored = Eval(Single("single.json", (_, truth) => truth));
        foreach (var row in scored)
        {
            string Text(string key) => row.GetProperty(key).GetString()!;
            Assert.That(row.GetProperty("correct").GetBoolean(), Is.EqualTo(Text("prediction").Trim().ToLowerInvariant() == Text("reference").Trim().ToLowerInvariant()));
            Assert.That(Text("type"), Is.EqualTo(string.Join(" ", Text("question").ToLowerInvariant().Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(2))));
        }
        var own = scored.ToDictionary(row => row.GetProperty("id").GetString()!, row => row.GetProperty("prediction").GetString()!);
        var mirrored = Eval(Single("mirrored.json", (id, _) => "  " + own[id].ToUpperInvariant() + " "));
        Assert.That(mirrored.Select(row => row.GetProperty("correct").GetBoolean()), Has.All.True, "its own answers, cased and padded otherwise");

        // One question at a time, a sample's later questions keep its earlier turns' cache rows: the same answers.
        string single = Path.Combine(_dir, "single.jsonl");
        var one = Run("eval", "--model", _model, "--data", Path.Combine(data, "data.json"), "--template", "shapes_chat", "--out", single,
                      "--max-new-tokens", "3", "--threads", "1", "--batch", "1");
        Assert.That(one.ExitCode, Is.Zero, one.Stderr);
        Assert.That(File.ReadAllLines(single), Is.EqualTo(File.ReadAllLines(predictions)));

        // The JSON apart from its images: --images names their root.
        string apart = Path.Combine(_dir, "apart");
        Directory.CreateDirectory(apart);
        File.Copy(Path.Combine(data, "data.json"), Path.Combine(apart, "data.json"));
        string elsewhere = Path.Combine(_dir, "elsewhere.jsonl");
        var moved = Run("eval", "--model", _model, "--data", Path.Combine(apart, "data.json"), "--images", data, "--template", "shapes_chat",
                        "--out", elsewhere, "--max-new-tokens", "3", "--threads", "1");
        Assert.That(moved.ExitCode, Is.Zero, moved.Stderr);
        Assert.That(File.ReadAllLines(elsewhere), Is.EqualTo(File.ReadAllLines(predictions)));
        AssertOneLineError(Run("eval", "--model", _model, "--data", Path.Combine(apart, "data.json"), "--template", "shapes_chat", "--threads", "1"),
                           1, "data.json: entry 0", "not found");
        AssertOneLineError(Run("eval", "--model", _model, "--data", Path.Combine(data, "absent.json")), 1, "absent.json");
        string empty = Path.Combine(_dir, "empty.json");
        File.WriteAllText(empty, "[]");
        AssertOneLineError(Run("eval", "--model", _model, "--data", empty), 1, "empty.json: no samples, so no questions to evaluate");
    }
}
