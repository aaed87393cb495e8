using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Model.Training;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Model;

public class TwinLossTests : CpuFixture
{
    private const int R = 7, V = 11;
    // Two classes; word 9 is in neither, so its logits must not count.
    private static readonly int[][] Classes = [[1, 4, 6], [0, 3, 5, 8]];
    private static readonly int[] RowsA = [0, 2, 5], RowsB = [1, 6, 2];

    /// <summary>β/P · Σ over pairs and classes of Σ_w (d_w − mean of d over the class)², d = z_a − z_b, from the definition.</summary>
    private static double Reference(double[] z, double beta)
    {
        double sum = 0;
        for (int p = 0; p < RowsA.Length; p++)
            foreach (var words in Classes)
            {
                double Diff(int w) => z[RowsA[p] * V + w] - z[RowsB[p] * V + w];
                double mean = words.Average(Diff);
                sum += words.Sum(w => (Diff(w) - mean) * (Diff(w) - mean));
            }
        return beta * sum / RowsA.Length;
    }

    [Test]
    public void LossAndGradientsMatchTheDefinitionInDouble()
    {
        const float beta = 0.3f;
        var host = OpHarness.Random(5, R * V, 2f);
        using var z = new Parameter(Cpu, "z", new Shape(R, V)) { Trainable = true };
        Cpu.Upload<float>(z.Value, host);
        using var arena = new Arena(Cpu, 1 << 20);
        var tape = new Tape(Cpu, arena, record: true);
        tape.Track([z]);
        var loss = new TwinLoss(V, Classes);
        Assert.That(loss.Columns, Is.EqualTo(7));
        double value = loss.Add(tape, z.Value, RowsA, RowsB, beta);
        tape.Backward();

        var zd = OpHarness.ToDouble(host);
        double expected = Reference(zd, beta);
        Assert.That(expected, Is.GreaterThan(1), "the random rows differ");
        Assert.That(value, Is.EqualTo(expected).Within(1e-5 * expected));
        // Row 2 is in two pairs (once on each side), rows 3 and 4 in none, word 9 in no class: all must come out right.
        var fd = OpHarness.FiniteDifference(x => Reference(x, beta), zd);
        OpHarness.AssertClose("dz", fd, z.Grad!.ToArray(), 1e-9);
        var dz = z.Grad!.ToArray();
        for (int r = 0; r < R; r++) Assert.That(dz[r * V + 9], Is.Zero, $"word 9, row {r}");
        Assert.That(dz.AsSpan(3 * V, 2 * V).ToArray(), Is.All.Zero, "rows 3 and 4");
    }

    [Test]
    public void AShiftOfAClassesLogitsCostsNothingAndNoPairsGiveZero()
    {
        var a = OpHarness.Random(6, V, 2f);
        var b = (float[])a.Clone();
        foreach (int w in Classes[1]) b[w] += 3.5f;
        b[9] -= 40f;
        using var arena = new Arena(Cpu, 1 << 20);
        var tape = new Tape(Cpu, arena, record: false);
        var loss = new TwinLoss(V, Classes);
        var z = VwLmm.Core.Ops.Input(tape, [.. a, .. b], 2, V);
        Assert.That(loss.Add(tape, z, [0], [1], 1f), Is.EqualTo(0).Within(1e-9));
        Assert.That(loss.Add(tape, z, [], [], 1f), Is.Zero);
        b[Classes[0][1]] += 1f;
        z = VwLmm.Core.Ops.Input(tape, [.. a, .. b], 2, V);
        // d = 1 on one of three words: (1 − 1/3)² + 2·(1/3)² = 2/3.
        Assert.That(loss.Add(tape, z, [0], [1], 1f), Is.EqualTo(2.0 / 3).Within(1e-6));
    }

    [Test]
    public void AnswerRowsAreTheRowsWhoseTargetIsAnAnswersFirstToken()
    {
        // With 3 tokens per image, sample 0's labels 6 (position 3) and 9, 10 (positions 6, 7) sit at spliced positions
        // 5 and 8, 9, so their targets are rows 4 and 7, 8: answers 0 and 1 start at rows 4 and 7.
        var first = new TokenizedConversation([1, Llava.ImageTokenIndex, 5, 6, 7, 8, 9, 10], [-100, -100, -100, 6, -100, -100, 9, 10]);
        var second = new TokenizedConversation([1, 5, 6], [-100, -100, 6]);
        var batch = new BatchBuilder(3, 32, 16).Build([first, second]);
        Assert.That(batch.L, Is.EqualTo(10));
        Assert.That(TwinLoss.AnswerRow(batch, 0, 0), Is.EqualTo(4));
        Assert.That(TwinLoss.AnswerRow(batch, 0, 1), Is.EqualTo(7));
        Assert.That(TwinLoss.AnswerRow(batch, 0, 2), Is.Null);
        Assert.That(TwinLoss.AnswerRow(batch, 1, 0), Is.EqualTo(10 + 1));
        Assert.That(TwinLoss.AnswerRow(batch, 1, 1), Is.Null);
    }

    [Test]
    public void WordsOutsideTheVocabularyAreRejected() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new TwinLoss(V, [[1, V]]));
}
