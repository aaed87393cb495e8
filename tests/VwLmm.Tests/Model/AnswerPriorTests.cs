using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Data.ShapesGrid;
using VwLmm.Data.Text;
using VwLmm.Model;
using VwLmm.Model.Recipes;
using VwLmm.Model.Training;

namespace VwLmm.Tests.Model;

using Ops = VwLmm.Core.Ops;

/// <summary>
/// The frame-relative answer prior: its table against hand counts, which rows it biases, the text loss it feeds,
/// and that training against it leaves the question-only association to the prior instead of the model.
/// </summary>
public class AnswerPriorTests : CpuFixture
{
    // A toy vocabulary: BOS 1, EOS 2, "what" 10, "colour" 11, "?" 12; shapes 20, 21 (class 1); colours 30, 31, 32 (class 0).
    private const int What = 10, Colour = 11, Mark = 12, Triangle = 20, Circle = 21, Red = 30, Blue = 31, White = 32;
    private static readonly Dictionary<int, int> Classes = new() { [Red] = 0, [Blue] = 0, [White] = 0, [Triangle] = 1, [Circle] = 1 };

    private static int[] Question(int shape) => [What, Colour, shape, Mark];

    /// <summary>BOS, then turns of (question, answer word + EOS); labels on the answers.</summary>
    private static TokenizedConversation Turns(params (int[] question, int answer)[] turns)
    {
        var ids = new List<int> { 1 };
        var answers = new List<int>();
        foreach (var (q, a) in turns)
        {
            ids.AddRange(q);
            answers.Add(ids.Count);
            ids.AddRange([a, 2]);
        }
        var labels = ids.Select((id, i) => answers.Any(s => i == s || i == s + 1) ? id : Llava.IgnoreIndex).ToArray();
        return new TokenizedConversation(ids.ToArray(), labels);
    }

    private static Batch Build(params TokenizedConversation[] samples) => new BatchBuilder(4, 64, 64).Build(samples);

    // Triangle → red ×3, white ×1; circle → blue ×2, red ×2.
    private static AnswerPrior Counted() => AnswerPrior.Count(
    [
        Build(Turns((Question(Triangle), Red)), Turns((Question(Triangle), Red)), Turns((Question(Circle), Blue))),
        Build(Turns((Question(Triangle), Red)), Turns((Question(Triangle), White)), Turns((Question(Circle), Blue)),
              Turns((Question(Circle), Red)), Turns((Question(Circle), Red))),
    ], Classes, 64);

    [Test]
    public void TableIsTheSmoothedLogRatioOfContextAndFrameCounts()
    {
        var prior = Counted();
        var batch = Build(Turns((Question(Triangle), Red)));
        var map = prior.RowMap(batch).ToArray();
        int answerRow = 4; // the row of "?", whose target is the answer word
        Assert.That(map[answerRow], Is.GreaterThanOrEqualTo(0));
        var bias = prior.Table.Slice(map[answerRow] * 64, 64).ToArray();
        // Frame "what colour <shape> ?": red 5, white 1, blue 2 of 8. Context "… triangle ?": red 3, white 1 of 4.
        // bias(a) = log(((n_ctx(a) + β·p_frame(a)) / (n_ctx + β)) / p_frame(a)) with β = 1.
        Assert.That(bias[Red], Is.EqualTo(Math.Log((3 + 5.0 / 8) / 5 / (5.0 / 8))).Within(1e-6));
        Assert.That(bias[White], Is.EqualTo(Math.Log((1 + 1.0 / 8) / 5 / (1.0 / 8))).Within(1e-6));
        Assert.That(bias[Blue], Is.EqualTo(Math.Log(2.0 / 8 / 5 / (2.0 / 8))).Within(1e-6));
        Assert.That(bias.Where((_, a) => a is not (Red or White or Blue)), Is.All.EqualTo(0f), "answers the frame never had are left to the model");
    }

    [Test]
    public void OnlyAnswerRowsWhoseContextNamesAClassWordAreBiased()
    {
        var prior = Counted();
        var map = prior.RowMap(Build(Turns((Question(Triangle), Red)), Turns(([What, Colour, Mark], Red)))).ToArray();
        int l = map.Length / 2;
        Assert.That(map.Take(4), Is.All.EqualTo(-1), "prompt rows have no target");
        Assert.That(map[4], Is.GreaterThanOrEqualTo(0));
        Assert.That(map[5], Is.GreaterThanOrEqualTo(0), "the EOS after a class word is biased too (by ≈ 0)");
        Assert.That(map[6], Is.EqualTo(-1), "EOS row: no target");
        Assert.That(map.Skip(l), Is.All.EqualTo(-1), "a context without class words equals its frame");
        Assert.That(prior.Table.Slice(map[5] * 64, 64).ToArray(), Is.All.EqualTo(0f).Within(1e-6));
    }

    [Test]
    public void ContextStartsAfterThePreviousAnswerAndSkipsImageRows()
    {
        var counted = AnswerPrior.Count([Build(Turns((Question(Circle), Blue), (Question(Triangle), Red)))], Classes, 64);
        var a = counted.RowMap(Build(Turns((Question(Circle), Blue), (Question(Triangle), White)))).ToArray();
        var b = counted.RowMap(Build(Turns((Question(Triangle), Red), (Question(Triangle), White)))).ToArray();
        int secondAnswer = 1 + 4 + 2 + 3; // BOS, question, answer + EOS, then the second question up to "?"
        Assert.That(a[secondAnswer], Is.GreaterThanOrEqualTo(0));
        Assert.That(b[secondAnswer], Is.EqualTo(a[secondAnswer]), "the second turn's context does not depend on the first turn");
        Assert.That(b[4], Is.EqualTo(-1), "a first-turn context (with BOS) is not a second-turn one");

        var withImage = new TokenizedConversation([1, Llava.ImageTokenIndex, What, Colour, Circle, Mark, Blue, 2],
            [-100, -100, -100, -100, -100, -100, Blue, 2]);
        var m = counted.RowMap(Build(withImage)).ToArray();
        Assert.That(m[5 + 3], Is.EqualTo(counted.RowMap(Build(Turns((Question(Circle), Blue))))[4]), "image rows are not part of the context");
    }

    [Test]
    public void TextLossSeesTheBiasedLogitsAndNothingElseDoes()
    {
        using var m = TinyWorld.Model(Cpu, TinyWorld.Config(), scale: 4);
        var batch = new BatchBuilder(m.Vision.TokensPerImage, 64, 64).Build(
        [
            TinyWorld.Sample([1, 5, Llava.ImageTokenIndex, 7, 8, 9, 2], 3),
            TinyWorld.Sample([1, 11, 12, Llava.ImageTokenIndex, 13, 2], 4),
        ]);
        var px = TinyWorld.Pixels(batch.ImageCount, m.Config, 3);
        using var arena = new Arena(Cpu, 64 << 20);
        var tape = new Tape(Cpu, arena, record: false);
        var pixels = Ops.Input(tape, px, batch.ImageCount, 3, m.Config.Vision.ImageSize, m.Config.Vision.ImageSize);
        int rows = batch.B * batch.L, v = 64;
        var rng = new Random(9);
        var biasHost = Enumerable.Range(0, rows * v).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        var plain = m.Forward(tape, batch, pixels);
        var biased = m.Forward(tape, batch, pixels, textLogitBias: Ops.Input(tape, biasHost, rows, v));

        var logits = biased.Logits.ToArray();
        Assert.That(logits, Is.EqualTo(plain.Logits.ToArray()), "returned logits exclude the bias");
        Assert.That(biased.Vm.Mean, Is.EqualTo(plain.Vm.Mean), "the VM loss does not see the bias");
        double sum = 0;
        int n = 0;
        for (int r = 0; r < rows; r++)
        {
            int target = batch.Targets[r];
            if (target < 0) continue;
            var z = Enumerable.Range(0, v).Select(j => (double)logits[r * v + j] + biasHost[r * v + j]).ToArray();
            double max = z.Max();
            sum += Math.Log(z.Sum(x => Math.Exp(x - max))) + max - z[target];
            n++;
        }
        Assert.That(biased.Text.Mean, Is.EqualTo(sum / n).Within(1e-5 * Math.Max(1, sum / n)));
        Assert.That(biased.Text.Mean, Is.Not.EqualTo(plain.Text.Mean).Within(1e-3));
    }

    /// <summary>Answers "what colour &lt;shape&gt; ?" with the shape's one colour: triangle → red, circle → blue.</summary>
    private sealed class ShapeColourSource : ITrainingSource
    {
        public int Count => 64;
        public TrainingExample Get(int index) => new(index % 2 == 0 ? Turns((Question(Triangle), Red)) : Turns((Question(Circle), Blue)), null);
    }

    /// <summary><see cref="ShapeColourSource"/>, remembering which examples were read, in order.</summary>
    private sealed class RecordingSource : ITrainingSource
    {
        private readonly ShapeColourSource _inner = new();
        public List<int> Requested { get; } = [];
        public int Count => _inner.Count;

        public TrainingExample Get(int index)
        {
            Requested.Add(index);
            return _inner.Get(index);
        }
    }

    [TestCase(null, 60 * 8)]
    [TestCase(16, 16)]
    public void PriorIsCountedOnTheExamplesTheStageTrainsOnInTrainingOrder(int? samples, int counted)
    {
        using var m = TinyWorld.Model(Cpu, TinyWorld.Config(lambda: 0), seed: 3);
        var source = new RecordingSource();
        var config = OneStage([["red", "blue", "white"], ["triangle", "circle"]]);
        config = config with { Stages = [config.Stages[0] with { AnswerPriorSamples = samples }] };
        using (var t = new Trainer(m, config, _ => source, 64 << 20, ToyTokenizer))
            t.Run(null, CancellationToken.None);
        const int trained = 60 * 8; // steps × batch, 7.5 passes over the 64 examples
        var read = source.Requested;
        Assert.That(read, Has.Count.EqualTo(counted + trained), "the prior is counted once, then each step reads its batch");
        Assert.That(read.Take(counted), Is.EqualTo(read.Skip(counted).Take(counted)), "the prior reads what training reads, in its order");
        Assert.That(read.Skip(counted).Take(source.Count).Distinct().Count(), Is.EqualTo(source.Count), "an epoch visits every example once");
    }

    private sealed class WordTokenizer(Dictionary<string, int[]> words) : ITokenizer
    {
        public int VocabSize => 64;
        public int BosId => 1;
        public int EosId => 2;
        public int PadId => -1;
        public int UnkId => 0;
        public int[] Encode(string text, bool addBos = true) => words[text];
        public string Decode(ReadOnlySpan<int> ids) => throw new NotSupportedException();
        public string IdToPiece(int id) => throw new NotSupportedException();
        public int PieceToId(string piece) => throw new NotSupportedException();
    }

    private static readonly WordTokenizer ToyTokenizer = new(new()
    {
        ["red"] = [Red], ["blue"] = [Blue], ["white"] = [White], ["triangle"] = [Triangle], ["circle"] = [Circle], ["red circle"] = [Red, Circle],
    });

    private static TrainConfig OneStage(IReadOnlyList<IReadOnlyList<string>>? prior) => new()
    {
        Seed = 4,
        MaxLength = 32,
        Stages = [new StageConfig { Name = "qa", Data = "qa", Trainable = [ParameterGroup.Llm], Steps = 60, Lr = 1e-2, BatchSize = 8, AnswerPrior = prior }],
    };

    /// <summary>The model's own (unbiased) log-odds of the shape's colour over the other colour, after training.</summary>
    private double LearnedLogOdds(IReadOnlyList<IReadOnlyList<string>>? prior)
    {
        using var m = TinyWorld.Model(Cpu, TinyWorld.Config(lambda: 0), seed: 3);
        using (var t = new Trainer(m, OneStage(prior), _ => new ShapeColourSource(), 64 << 20, ToyTokenizer))
            t.Run(null, CancellationToken.None);
        using var arena = new Arena(Cpu, 16 << 20);
        var tape = new Tape(Cpu, arena, record: false);
        var batch = Build(Turns((Question(Triangle), Red)));
        var logits = m.Forward(tape, batch, null).Logits.ToArray();
        return logits[4 * 64 + Red] - logits[4 * 64 + Blue];
    }

    [Test]
    public void TrainingAgainstThePriorLeavesTheQuestionOnlyAssociationToIt()
    {
        double plain = LearnedLogOdds(null), debiased = LearnedLogOdds([["red", "blue", "white"], ["triangle", "circle"]]);
        Assert.That(plain, Is.GreaterThan(3), "without the prior the model learns triangle → red from the question alone");
        Assert.That(Math.Abs(debiased), Is.LessThan(plain / 2), "with the prior the question alone should decide the colour far less");
    }

    /// <summary>Checked when the trainer is made, before any step of any stage: here the prior is the second stage's.</summary>
    [Test]
    public void PriorWordsMustBeSingleTokensAndNeedATokenizer()
    {
        using var m = TinyWorld.Model(Cpu, TinyWorld.Config(lambda: 0), seed: 3);
        TrainConfig SecondStageWith(IReadOnlyList<IReadOnlyList<string>> prior)
        {
            var config = OneStage(null);
            return config with { Stages = [config.Stages[0], config.Stages[0] with { Name = "later", AnswerPrior = prior }] };
        }
        Assert.That(Assert.Throws<InvalidDataException>(() => new Trainer(m, SecondStageWith([["red circle"]]), _ => new ShapeColourSource(), 64 << 20, ToyTokenizer))!.Message,
            Does.Contain("'later'").And.Contain("'red circle' is 2 tokens"));
        Assert.That(Assert.Throws<InvalidDataException>(() => new Trainer(m, SecondStageWith([["red", "blue"], ["circle", "red"]]), _ => new ShapeColourSource(), 64 << 20, ToyTokenizer))!.Message,
            Does.Contain("'later'").And.Contain("'red' is in two classes"));
        Assert.That(Assert.Throws<InvalidDataException>(() => new Trainer(m, SecondStageWith([["red", "blue", "red"]]), _ => new ShapeColourSource(), 64 << 20, ToyTokenizer))!.Message,
            Does.Contain("'later'").And.Contain("'red' is listed twice"));
        Assert.That(Assert.Throws<InvalidOperationException>(() => new Trainer(m, SecondStageWith([["red"]]), _ => new ShapeColourSource(), 64 << 20))!.Message,
            Does.Contain("tokenizer"));
    }

    [Test]
    public void OnShapesGridQuestionsThePriorKnowsWhichColoursEachShapeCameIn()
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        var source = recipe.Source("qa", tok);
        var builder = new BatchBuilder(recipe.World.Options.Grid * recipe.World.Options.Grid, 128, tok.VocabSize);
        var classOf = ShapesGridRecipe.AnswerPriorClasses.SelectMany((words, c) => words.Select(w => (id: tok.Encode(w, addBos: false).Single(), c)))
            .ToDictionary(x => x.id, x => x.c);
        var prior = AnswerPrior.Count(Enumerable.Range(0, 200).Select(i => builder.Build(
            Enumerable.Range(i * 16, 16).Select(k => source.Get(k).Tokens).ToList())), classOf, tok.VocabSize);

        var held = recipe.World.HeldOut[0];
        string question = $"what colour is the {Words.Of(held.Shape)} ?";
        int index = Enumerable.Range(0, 10_000).First(i => recipe.World.InstructionConversation(Split.Train, i, "image") is { HasImage: true } c
                                                          && c.Turns[0].Value.EndsWith(question));
        var conv = recipe.World.InstructionConversation(Split.Train, index, "image");
        var batch = builder.Build([ShapesGridRecipe.Template.Encode(conv, tok)]);
        int row = Array.FindIndex(batch.Targets, t => t >= 0);
        Assert.That(tok.Decode([batch.Targets[row]]), Is.EqualTo(conv.Turns[1].Value));
        int tableRow = prior.RowMap(batch)[row];
        Assert.That(tableRow, Is.GreaterThanOrEqualTo(0), "a training question about a shape has a prior");
        var bias = prior.Table.Slice(tableRow * tok.VocabSize, tok.VocabSize).ToArray();
        int Id(string w) => tok.Encode(w, addBos: false).Single();
        Assert.That(bias[Id(Words.Of(held.Colour))], Is.LessThan(-3), $"{held} never occurs in training: the prior must say so");
        Assert.That(bias[Id(conv.Turns[1].Value)], Is.GreaterThan(0), "the colour the training answer names");
        Assert.That(bias[Id("yes")], Is.Zero, "not an answer to a colour question: left to the model");
    }

    [TestCase("""[["red"], []]""")]
    [TestCase("""["red"]""")]
    [TestCase("""[[1]]""")]
    public void MalformedAnswerPriorConfigIsAnError(string value)
    {
        var doc = System.Text.Json.JsonDocument.Parse($$"""{"stages":[{"data":"d","trainable":["llm"],"steps":1,"lr":0.1,"answer_prior":{{value}}}]}""");
        var e = Assert.Throws<InvalidDataException>(() => TrainConfig.Parse(doc.RootElement, "train.json"))!;
        Assert.That(e.Message, Does.Contain("train.json").And.Contain("answer_prior"));
    }

    [Test]
    public void AnswerPriorConfigParses()
    {
        var doc = System.Text.Json.JsonDocument.Parse("""{"stages":[{"data":"d","trainable":["llm"],"steps":1,"lr":0.1,"answer_prior":[["red","blue"],["circle"]],"answer_prior_samples":100}]}""");
        var s = TrainConfig.Parse(doc.RootElement, "train.json").Stages[0];
        Assert.That(s.AnswerPrior, Is.EqualTo(new[] { new[] { "red", "blue" }, new[] { "circle" } }));
        Assert.That(s.AnswerPriorSamples, Is.EqualTo(100));
    }
}
