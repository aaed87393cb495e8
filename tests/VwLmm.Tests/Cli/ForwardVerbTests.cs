using System.Text.Json;
using NUnit.Framework;
using VwLmm.Data;
using VwLmm.Data.Conversations;
using VwLmm.Data.Text;
using static VwLmm.Tests.Cli.CliRunner;

namespace VwLmm.Tests.Cli;

/// <summary>
/// `vwlmm forward` on the real binary: the visual-word KL of a λ = 0 model, the length limit, the --prompt/--answer and
/// --labels paths. Every loss is recomputed here in double from the dumped logits and visual words, with labels built
/// in the test (the HF shift: logits at t score label t + 1; the LM head at t − 1 predicts the visual word at t).
/// </summary>
public class ForwardVerbTests
{
    private const double Lambda = 0.5;
    private string _dir = "", _lambdaZero = "", _weighted = "", _image = "";
    private int _vocab, _patches, _maxPositions;
    private SentencePieceTokenizer _tok = null!;

    [OneTimeSetUp]
    public void SaveModels()
    {
        _dir = TempDir();
        var lambdaZero = RandomShapesGridModel.Save(Path.Combine(_dir, "lambda0"), c => c with { VmLossWeight = 0 });
        // The weighted model's longer limit fits vicuna_v1's system prompt with the image (149 positions).
        var weighted = RandomShapesGridModel.Save(Path.Combine(_dir, "weighted"),
            c => c with { VmLossWeight = Lambda, Llm = c.Llm with { MaxPositionEmbeddings = 2 * c.Llm.MaxPositionEmbeddings } }, lambdaZero);
        (_lambdaZero, _weighted, _tok) = (lambdaZero.Dir, weighted.Dir, lambdaZero.Tokenizer);
        var config = lambdaZero.Config;
        _vocab = config.Llm.VocabSize;
        _patches = config.ImageTokens;
        _maxPositions = config.Llm.MaxPositionEmbeddings;
        _image = RandomShapesGridModel.SaveScene(_dir);
    }

    [OneTimeTearDown]
    public void Remove() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void LambdaZeroModelStillReportsTheUnweightedVisualWordKl()
    {
        int[] ids = [_tok.BosId, Llava.ImageTokenIndex, .. _tok.Encode("what colour is the circle ?", addBos: false), _tok.EosId];
        var d = Forward(_lambdaZero, "lambda0", "--ids", Json("lambda0-ids.json", ids));

        double vm = ExpectedVisualWordKl(d, imageStart: 1);
        Assert.That(vm, Is.GreaterThan(0.1), "a random model's visual words are far from its LM head's predictions");
        Assert.That(d.Vm, Is.EqualTo(vm).Within(1e-4 * vm));
        Assert.That(d.Total, Is.EqualTo(d.Text), "λ = 0: total = text");
        Assert.That(d.Text, Is.EqualTo(AssertTextLossesReturnMean(d, Expand(ids, imageStart: 1))).Within(1e-4 * d.Text));
    }

    [Test]
    public void AnythingButOneImageSentinelIsAOneLineErrorNamingItsSource()
    {
        string dump = Path.Combine(_dir, "sentinels");
        string none = Json("no-image.json", [_tok.BosId, 5, 6]);
        AssertOneLineError(Run("forward", "--model", _lambdaZero, "--image", _image, "--ids", none, "--dump", dump, "--threads", "1"),
                           1, none + ": 0 image sentinels −200 where a forward pass takes exactly one");
        string two = Json("two-images.json", [_tok.BosId, Llava.ImageTokenIndex, 5, Llava.ImageTokenIndex]);
        AssertOneLineError(Run("forward", "--model", _lambdaZero, "--image", _image, "--ids", two, "--dump", dump, "--threads", "1"),
                           1, two + ": 2 image sentinels");
        AssertOneLineError(Run("forward", "--model", _lambdaZero, "--image", _image, "--prompt", "<image> and", "--template", "plain", "--dump", dump, "--threads", "1"),
                           1, "2 <image> placeholders; at most one image per sample");
        Assert.That(Directory.Exists(dump), Is.False);
    }

    /// <summary>--labels is read with --ids only, --answer and --template with --prompt only: given with the other, each
    /// is a usage error naming it, before anything is written.</summary>
    [Test]
    public void AnOptionOfTheOtherInputIsAUsageErrorNamingIt()
    {
        string dump = Path.Combine(_dir, "mixed");
        string ids = Json("mixed-ids.json", [_tok.BosId, Llava.ImageTokenIndex, 5]);
        string labels = Json("mixed-labels.json", [-100, -100, 5]);
        AssertOneLineError(Run("forward", "--model", _lambdaZero, "--image", _image, "--prompt", "hi", "--labels", labels, "--dump", dump),
                           2, "vwlmm forward: --labels goes with --ids, not --prompt");
        AssertOneLineError(Run("forward", "--model", _lambdaZero, "--image", _image, "--ids", ids, "--answer", "red", "--dump", dump),
                           2, "vwlmm forward: --answer goes with --prompt, not --ids");
        AssertOneLineError(Run("forward", "--model", _lambdaZero, "--image", _image, "--ids", ids, "--template", "plain", "--dump", dump),
                           2, "vwlmm forward: --template goes with --prompt, not --ids");
        Assert.That(Directory.Exists(dump), Is.False);
    }

    [Test]
    public void SequencesLongerThanMaxPositionEmbeddingsAreOneLineErrors()
    {
        int text = _maxPositions - _patches;  // with BOS and the image: one position too many
        int[] ids = [_tok.BosId, Llava.ImageTokenIndex, .. Enumerable.Repeat(5, text)];
        string dump = Path.Combine(_dir, "too-long");
        AssertOneLineError(Run("forward", "--model", _lambdaZero, "--image", _image, "--ids", Json("too-long.json", ids), "--dump", dump, "--threads", "1"),
                           1, "too-long.json", $"{_maxPositions + 1}", $"max_position_embeddings {_maxPositions}");
        // vicuna_v1's system prompt alone does not fit beside the image.
        AssertOneLineError(Run("forward", "--model", _lambdaZero, "--image", _image, "--prompt", "what colour is the circle ?", "--dump", dump, "--threads", "1"),
                           1, "--prompt", $"max_position_embeddings {_maxPositions}");
        Assert.That(Directory.Exists(dump), Is.False, "nothing is dumped for a failed call");

        int[] fits = ids[..^1];
        var d = Forward(_lambdaZero, "fits", "--ids", Json("fits.json", fits));
        Assert.That(d.Logits.Shape, Is.EqualTo(new[] { _maxPositions, _vocab }), "exactly max_position_embeddings positions still run");
    }

    [Test]
    public void PromptAndAnswerAreEncodedWithTheTemplateAndOnlyTheAnswerIsScored()
    {
        // shapes_chat: "USER: <image>\n{prompt} ASSISTANT: {answer}</s>", the answer and EOS supervised.
        int[] answer = [.. _tok.Encode("red", addBos: false), _tok.EosId];
        int[] prefix = [_tok.BosId, .. _tok.Encode("USER: ", addBos: false)];
        int[] question = _tok.Encode("\nwhat colour is the circle ? ASSISTANT:", addBos: false);
        int imageStart = prefix.Length;
        int[] labels = [.. Enumerable.Repeat(Llava.IgnoreIndex, prefix.Length + 1 + question.Length), .. answer];

        var d = Forward(_weighted, "answer", "--prompt", "what colour is the circle ?", "--answer", "red", "--template", "shapes_chat");
        int l = labels.Length - 1 + _patches;
        Assert.That(d.Logits.Shape, Is.EqualTo(new[] { l, _vocab }));
        Assert.That(d.VisualWords.Shape, Is.EqualTo(new[] { _patches, _vocab }));
        Assert.That(d.TextLoss.Shape, Is.EqualTo(new[] { l }));
        double text = AssertTextLossesReturnMean(d, Expand(labels, imageStart));
        Assert.That(d.Text, Is.EqualTo(text).Within(1e-4 * text));
        double vm = ExpectedVisualWordKl(d, imageStart);
        Assert.That(d.Vm, Is.EqualTo(vm).Within(1e-4 * vm));
        Assert.That(d.Total, Is.EqualTo(text + Lambda * vm).Within(1e-4 * (text + Lambda * vm)));

        // Without an answer (and with the default template) nothing is supervised.
        var prompt = Forward(_weighted, "prompt", "--prompt", "what colour is the circle ?");
        Assert.That(prompt.TextLoss.Data, Is.All.EqualTo(0f));
        Assert.That(prompt.Text, Is.EqualTo(0));
        Assert.That(prompt.Total, Is.EqualTo(Lambda * prompt.Vm).Within(1e-6 * prompt.Vm));
    }

    [Test]
    public void ExplicitLabelsAreScoredWithTheHfShiftAndIgnoredWhereMinus100()
    {
        int[] ids = [_tok.BosId, 17, Llava.ImageTokenIndex, 30, 31, 32, 33, 34, _tok.EosId];
        // Labels unrelated to the ids, two ignored, and one at the sentinel, which the image's positions override.
        int[] labels = [Llava.IgnoreIndex, 3, _vocab - 1, 40, Llava.IgnoreIndex, 41, Llava.IgnoreIndex, 42, 43];
        var d = Forward(_weighted, "labels", "--ids", Json("labels-ids.json", ids), "--labels", Json("labels.json", labels));
        Assert.That(d.Logits.Shape, Is.EqualTo(new[] { ids.Length - 1 + _patches, _vocab }));
        var expanded = Expand(labels, imageStart: 2);
        Assert.That(expanded.Count(x => x >= 0), Is.EqualTo(5));
        double text = AssertTextLossesReturnMean(d, expanded);
        Assert.That(d.Text, Is.EqualTo(text).Within(1e-4 * text));
    }

    [Test]
    public void NonFinitePixelsAreRefusedAndOverflowingLossesAreWrittenAsStrings()
    {
        int size = (int)Math.Sqrt(_patches) * 8;  // ShapesGrid: 8-pixel patches
        int[] ids = [_tok.BosId, Llava.ImageTokenIndex, .. _tok.Encode("what colour is the circle ?", addBos: false), _tok.EosId];
        string idsFile = Json("overflow-ids.json", ids), pixels = Path.Combine(_dir, "pixels.npy"), dump = Path.Combine(_dir, "dump-overflow");
        var values = new float[3 * size * size];
        values[7] = float.NaN;
        Npy.Write<float>(pixels, values, [3, size, size]);
        AssertOneLineError(Run("forward", "--model", _lambdaZero, "--pixels", pixels, "--ids", idsFile, "--dump", dump), 1, pixels, "element 7 is NaN");
        // Finite, but far past what a preprocessed image holds: the patch embedding overflows and every loss is NaN.
        Array.Fill(values, 3e38f);
        Npy.Write<float>(pixels, values, [3, size, size]);
        var r = Run("forward", "--model", _lambdaZero, "--pixels", pixels, "--ids", idsFile, "--dump", dump, "--threads", "1");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var losses = JsonDocument.Parse(File.ReadAllText(Path.Combine(dump, "losses.json")));
        Assert.That(losses.RootElement.GetProperty("text").GetString(), Is.EqualTo("NaN"));
    }

    private sealed record Dump(NpyArray Logits, NpyArray VisualWords, NpyArray TextLoss, double Text, double Vm, double Total);

    private sealed record NpyArray(float[] Data, int[] Shape);

    private Dump Forward(string model, string name, params string[] input)
    {
        string dump = Path.Combine(_dir, "dump-" + name);
        var r = Run(["forward", "--model", model, "--image", _image, .. input, "--dump", dump, "--threads", "1"]);
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        NpyArray Read(string file)
        {
            var (data, shape) = Npy.Read<float>(Path.Combine(dump, file));
            return new NpyArray(data, shape);
        }
        using var losses = JsonDocument.Parse(File.ReadAllText(Path.Combine(dump, "losses.json")));
        var root = losses.RootElement;
        Assert.That(root.EnumerateObject().Select(p => p.Name), Is.EquivalentTo(new[] { "text", "vm", "total" }));
        return new Dump(Read("logits.npy"), Read("visual_words.npy"), Read("text_loss.npy"),
                        root.GetProperty("text").GetDouble(), root.GetProperty("vm").GetDouble(), root.GetProperty("total").GetDouble());
    }

    private string Json(string name, int[] values)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, JsonSerializer.Serialize(values));
        return path;
    }

    /// <summary>Labels per sequence position: whatever is at the sentinel's index, the image's positions are ignored.</summary>
    private int[] Expand(int[] labels, int imageStart) =>
        [.. labels[..imageStart], .. Enumerable.Repeat(Llava.IgnoreIndex, _patches), .. labels[(imageStart + 1)..]];

    private double[] LogSoftmax(NpyArray logits, int t)
    {
        var row = logits.Data.AsSpan(t * _vocab, _vocab);
        double max = double.NegativeInfinity, sum = 0;
        foreach (float x in row) max = Math.Max(max, x);
        foreach (float x in row) sum += Math.Exp(x - max);
        double logSum = max + Math.Log(sum);
        return row.ToArray().Select(x => x - logSum).ToArray();
    }

    /// <summary>Asserts text_loss.npy position by position against −log softmax(logits[t])[label[t+1]]; returns their mean.</summary>
    private double AssertTextLossesReturnMean(Dump d, int[] labels)
    {
        int l = d.Logits.Shape[0];
        Assert.That(labels, Has.Length.EqualTo(l));
        double sum = 0;
        int count = 0;
        for (int t = 0; t < l; t++)
        {
            int next = t + 1 < l ? labels[t + 1] : Llava.IgnoreIndex;
            double expected = next < 0 ? 0 : -LogSoftmax(d.Logits, t)[next];
            Assert.That(d.TextLoss.Data[t], Is.EqualTo(expected).Within(1e-4 * Math.Max(1, expected)), $"text loss at {t}");
            if (next >= 0) { sum += expected; count++; }
        }
        Assert.That(count, Is.Positive);
        return sum / count;
    }

    /// <summary>Mean over patches j of KL(p_j ‖ softmax(logits[imageStart + j − 1])), summed over the vocabulary.</summary>
    private double ExpectedVisualWordKl(Dump d, int imageStart)
    {
        Assert.That(imageStart, Is.Positive);
        double sum = 0;
        for (int j = 0; j < _patches; j++)
        {
            var p = d.VisualWords.Data.AsSpan(j * _vocab, _vocab);
            var logQ = LogSoftmax(d.Logits, imageStart + j - 1);
            for (int v = 0; v < _vocab; v++)
                if (p[v] > 0) sum += p[v] * (Math.Log(p[v]) - logQ[v]);
        }
        return sum / _patches;
    }
}
