using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Data.ShapesGrid;
using VwLmm.Model;
using VwLmm.Model.Recipes;

namespace VwLmm.Tests.Model;

using Ops = VwLmm.Core.Ops;

/// <summary>
/// The evaluator's split of wrong answers into "read another object" and "named what nothing in the image has", and its
/// per-patch visual words and logit lens against a double-precision recomputation, and its next-patch prediction
/// against the LM head's logits of a forward pass over a question's prompt.
/// </summary>
public class ShapesGridEvaluatorTests
{
    private static readonly Scene TwoObjects = new(4, 2, Background.Grass,
        [new GridObject(0, 0, ObjectColour.Red, ObjectShape.Triangle, ObjectSize.Large),
         new GridObject(1, 1, ObjectColour.Blue, ObjectShape.Square, ObjectSize.Large)], 0);

    [TestCase(QuestionKind.Colour, "what colour is the triangle ?", "red", "blue", true)]
    [TestCase(QuestionKind.Colour, "what colour is the triangle ?", "red", "green", false)]
    [TestCase(QuestionKind.Colour, "what colour is the triangle ?", "red", "red", false)]
    [TestCase(QuestionKind.Colour, "what colour is the triangle ?", "red", "square", false)]
    [TestCase(QuestionKind.Shape, "what shape is the blue object ?", "square", "triangle", true)]
    [TestCase(QuestionKind.Shape, "what shape is the blue object ?", "square", "cross", false)]
    [TestCase(QuestionKind.Shape, "what shape is the blue object ?", "square", "red", false)]
    [TestCase(QuestionKind.Count, "how many triangles ?", "1", "2", false)]
    [TestCase(QuestionKind.Position, "what is in row 1 column 1 ?", "red triangle", "blue square", false)]
    public void NamesAnotherObjectOnlyForAWrongAttributeOfTheSameKindInTheScene(QuestionKind kind, string question, string answer, string predicted, bool expected) =>
        Assert.That(ShapesGridEvaluator.NamesAnotherObject(TwoObjects, new QaPair(kind, question, answer, false), predicted), Is.EqualTo(expected));

    [Test]
    public void ShareOfWrongAnswersNamingAnotherObjectCountsColourAndShapeQuestionsOnly()
    {
        QaPrediction P(QuestionKind kind, bool correct, bool other) => new("test-0", kind, "q", "a", correct ? "a" : "b", correct, false, other);
        var results = new ShapesGridResults(0, new Dictionary<string, double>(), 0, 0, 0, 0, 0, 0, 0, 0, 0, [],
            [P(QuestionKind.Colour, false, true), P(QuestionKind.Shape, false, false), P(QuestionKind.Shape, false, true),
             P(QuestionKind.Colour, true, false), P(QuestionKind.Count, false, false), P(QuestionKind.Existence, false, false)], []);
        Assert.That(results.WrongAnswersNamingAnotherObject, Is.EqualTo(2.0 / 3).Within(1e-12));
        var allRight = results with { Predictions = [P(QuestionKind.Colour, true, false), P(QuestionKind.Count, false, false)] };
        Assert.That(allRight.WrongAnswersNamingAnotherObject, Is.Null);
    }

    [Test]
    public void PairCountsSplitColourAndShapeQuestionsByTheAskedObjectsPair()
    {
        QaPrediction P(QuestionKind kind, bool correct, bool heldOut) => new("test-0", kind, "q", "a", correct ? "a" : "b", correct, heldOut, false);
        var results = new ShapesGridResults(0, new Dictionary<string, double>(), 0, 0, 0, 0, 0, 0, 0, 0, 0, [],
            [P(QuestionKind.Colour, true, true), P(QuestionKind.Colour, false, true), P(QuestionKind.Colour, true, false),
             P(QuestionKind.Shape, false, true), P(QuestionKind.Existence, true, true), P(QuestionKind.Position, true, false)],
            [P(QuestionKind.Colour, true, false)]);
        Assert.That(results.AboutPairs(QuestionKind.Colour, heldOut: true), Is.EqualTo((1, 2)));
        Assert.That(results.AboutPairs(QuestionKind.Colour, heldOut: false), Is.EqualTo((1, 1)), "the training distribution's questions are not counted");
        Assert.That(results.AboutPairs(QuestionKind.Shape, heldOut: true), Is.EqualTo((0, 1)));
        Assert.That(results.AboutPairs(QuestionKind.Shape, heldOut: false), Is.EqualTo((0, 0)));
    }

    [Test]
    public void TrainDistributionAccuracyIsTheShareRightOverallAndByKind()
    {
        QaPrediction P(QuestionKind kind, bool correct) => new("train-0", kind, "q", "a", correct ? "a" : "b", correct, false, false);
        var results = new ShapesGridResults(0, new Dictionary<string, double>(), 0, 0, 0, 0, 0, 0, 0, 0, 0, [], [],
            [P(QuestionKind.Colour, true), P(QuestionKind.Colour, false), P(QuestionKind.Colour, true), P(QuestionKind.Shape, false), P(QuestionKind.Count, true)]);
        Assert.That(results.TrainDistributionAccuracy, Is.EquivalentTo(new Dictionary<string, double>
        {
            ["overall"] = 3.0 / 5, ["colour"] = 2.0 / 3, ["shape"] = 0, ["count"] = 1,
        }));
        Assert.That((results with { TrainDistribution = [] }).TrainDistributionAccuracy, Is.EquivalentTo(new Dictionary<string, double> { ["overall"] = 0 }));
        var heldOut = results with { QaAccuracy = 0.5, QaAccuracyByKind = new Dictionary<string, double> { ["colour"] = 0.25 } };
        Assert.That(heldOut.QaAccuracyWithOverall, Is.EquivalentTo(new Dictionary<string, double> { ["colour"] = 0.25, ["overall"] = 0.5 }));
    }

    [Test]
    public void ContentWordFollowsTheLogitsWhenTheSoftmaxUnderflows()
    {
        // p = softmax(row) is 1 on "the" and 0 in float for every candidate (e^-195 < the smallest float), so a choice
        // made on p ties and the first candidate would win; on the logits it is "blue".
        var row = new float[8];
        row[0] = 200f;
        row[3] = 1f;
        row[5] = 5f;
        row[6] = -2f;
        (string, int)[] candidates = [("red", 3), ("blue", 5), ("grass", 6)];
        Assert.That(MathF.Exp(row[5] - row[0]), Is.EqualTo(0f), "the row must saturate a float softmax");
        Assert.That(ShapesGridEvaluator.BestWord(row, candidates), Is.EqualTo("blue"));
        row[6] = 5f;
        Assert.That(ShapesGridEvaluator.BestWord(row, candidates), Is.EqualTo("blue"), "ties go to the first candidate");
        Assert.That(ShapesGridEvaluator.BestWord(row, []), Is.EqualTo(""));
    }

    [Test]
    public void PatchWordsMatchARecomputationOfEveryHeadEvenWhenPSaturates()
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        using var cpu = new CpuBackend(1);
        using var model = new VwLmmModel(cpu, recipe.ModelConfig(tok));
        model.InitializeRandom(5);
        // A VM head large enough that a float softmax is 0 for every content word of most patches.
        var wvm = model.VmHead.Value.ToArray().Select(w => w * 1e6f).ToArray();
        cpu.Upload<float>(model.VmHead.Value, wvm);
        var evaluator = new ShapesGridEvaluator(model, tok, recipe);
        var content = evaluator.ContentWords.Select(w => (Word: w, Id: tok.Encode(w, addBos: false).Single())).ToArray();
        var embed = model.Decoder.EmbedTokens.Value.ToArray();
        int d = model.Config.Llm.HiddenSize, grid = recipe.World.Options.Grid;
        int saturated = 0;
        for (int i = 0; i < 3; i++)
        {
            var sample = recipe.World.Sample(Split.Test, i);
            var (x, _, _) = evaluator.Patches(sample);
            var words = evaluator.VisualWords(sample, topK: 3);
            // The LM head's logits before each patch, from a forward over the prompt of a real question: the row before
            // image row j is (image position − 1 + j), and the question after the image cannot change it.
            var prompt = evaluator.Prompt(sample.Questions[0].Question);
            int first = Array.IndexOf(prompt.InputIds, Llava.ImageTokenIndex), v = model.Config.Llm.VocabSize;
            float[] lm;
            using (var arena = new Arena(cpu, 64L << 20))
            {
                var tape = new Tape(cpu, arena, record: false);
                var batch = new BatchBuilder(model.Vision.TokensPerImage, int.MaxValue, v).Build([prompt]);
                var px = Ops.Input(tape, recipe.Pixels(sample.Image), 1, 3, model.Config.Vision.ImageSize, model.Config.Vision.ImageSize);
                lm = model.Forward(tape, batch, px, vmLossWeight: 0).Logits.ToArray();
            }
            Assert.That(words, Has.Count.EqualTo(grid * grid));
            for (int j = 0; j < grid * grid; j++)
            {
                string Argmax(float[] w) => content.MaxBy(c => Enumerable.Range(0, d).Sum(k => (double)w[c.Id * d + k] * x[j * d + k])).Word;
                double Logit(int v) => Enumerable.Range(0, d).Sum(k => (double)wvm[v * d + k] * x[j * d + k]);
                // e^-104 is below the smallest float: every content word's p underflows to 0.
                if (Enumerable.Range(0, model.Config.Llm.VocabSize).Max(Logit) - content.Max(c => Logit(c.Id)) > 104) saturated++;
                Assert.That(words[j].ContentWord, Is.EqualTo(Argmax(wvm)), $"image {i} patch {j}: VM head");
                Assert.That(words[j].LensWord, Is.EqualTo(Argmax(embed)), $"image {i} patch {j}: logit lens E·x");
                var obj = sample.Scene.ObjectAt(j / grid, j % grid);
                bool names = obj is { } o ? words[j].LensWord == Words.Of(o.Colour) || words[j].LensWord == Words.Of(o.Shape) : words[j].LensWord == words[j].Truth;
                Assert.That(words[j].LensCorrect, Is.EqualTo(names));
                Assert.That(words[j].Top.Select(t => t.P), Is.Ordered.Descending);
                var q = lm.AsSpan((first - 1 + j) * v, v).ToArray();
                string predicted = content.MaxBy(c => q[c.Id]).Word;
                Assert.That(words[j].PredictedWord, Is.EqualTo(predicted), $"image {i} patch {j}: LM head before the patch");
                Assert.That(words[j].PredictedCorrect, Is.EqualTo(obj is { } o2 ? predicted == Words.Of(o2.Colour) || predicted == Words.Of(o2.Shape) : predicted == words[j].Truth));
                int vmArgmax = Enumerable.Range(0, v).MaxBy(Logit);
                Assert.That(words[j].PredictionAgrees, Is.EqualTo(Array.IndexOf(q, q.Max()) == vmArgmax));
            }
        }
        Assert.That(saturated, Is.GreaterThan(grid * grid), "the test must cover patches whose content words all underflow in a float softmax");
    }
}
