using NUnit.Framework;
using VwLmm.Data.ShapesGrid;
using VwLmm.Model.Recipes;

namespace VwLmm.Tests.Model;

/// <summary>The evaluator's split of wrong answers into "read another object" and "named what nothing in the image has".</summary>
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
        var results = new ShapesGridResults(0, new Dictionary<string, double>(), 0, 0, 0, 0, 0, 0, [],
            [P(QuestionKind.Colour, false, true), P(QuestionKind.Shape, false, false), P(QuestionKind.Shape, false, true),
             P(QuestionKind.Colour, true, false), P(QuestionKind.Count, false, false), P(QuestionKind.Existence, false, false)], []);
        Assert.That(results.WrongAnswersNamingAnotherObject, Is.EqualTo(2.0 / 3).Within(1e-12));
        var allRight = results with { Predictions = [P(QuestionKind.Colour, true, false), P(QuestionKind.Count, false, false)] };
        Assert.That(allRight.WrongAnswersNamingAnotherObject, Is.Null);
    }

    [Test]
    public void TrainDistributionAccuracyIsTheShareRightOverallAndByKind()
    {
        QaPrediction P(QuestionKind kind, bool correct) => new("train-0", kind, "q", "a", correct ? "a" : "b", correct, false, false);
        var results = new ShapesGridResults(0, new Dictionary<string, double>(), 0, 0, 0, 0, 0, 0, [], [],
            [P(QuestionKind.Colour, true), P(QuestionKind.Colour, false), P(QuestionKind.Colour, true), P(QuestionKind.Shape, false), P(QuestionKind.Count, true)]);
        Assert.That(results.TrainDistributionAccuracy, Is.EquivalentTo(new Dictionary<string, double>
        {
            ["overall"] = 3.0 / 5, ["colour"] = 2.0 / 3, ["shape"] = 0, ["count"] = 1,
        }));
        Assert.That((results with { TrainDistribution = [] }).TrainDistributionAccuracy, Is.EquivalentTo(new Dictionary<string, double> { ["overall"] = 0 }));
        var heldOut = results with { QaAccuracy = 0.5, QaAccuracyByKind = new Dictionary<string, double> { ["colour"] = 0.25 } };
        Assert.That(heldOut.QaAccuracyWithOverall, Is.EquivalentTo(new Dictionary<string, double> { ["colour"] = 0.25, ["overall"] = 0.5 }));
    }
}
