using NUnit.Framework;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;

namespace VwLmm.Tests.Data;

public class BatchBuilderTests
{
    private const int I = Llava.IgnoreIndex, S = Llava.ImageTokenIndex;

    private static TokenizedConversation Sample(int[] ids, int[] labels) => new(ids, labels);

    [Test]
    public void SplicesOneImageAndShiftsEverything()
    {
        // BOS, text 5, image (3 rows), text 6 7, answer 8 9.
        var s = Sample([1, 5, S, 6, 7, 8, 9], [I, I, I, I, I, 8, 9]);
        var batch = new BatchBuilder(imageTokens: 3, maxLength: 100, vocabSize: 10).Build([s]);
        Assert.That(batch.L, Is.EqualTo(9));
        Assert.That(batch.Map, Is.EqualTo(new[] { 1, 5, -2, -3, -4, 6, 7, 8, 9 }));
        Assert.That(batch.ImageMask, Is.EqualTo(new byte[] { 0, 0, 1, 1, 1, 0, 0, 0, 0 }));
        Assert.That(batch.Targets, Is.EqualTo(new[] { I, I, I, I, I, I, 8, 9, I }));
        Assert.That(batch.VmPairs, Is.EqualTo(new[] { 1, 0, 2, 1, 3, 2 }));
        Assert.That(batch.Positions, Is.EqualTo(Enumerable.Range(0, 9).ToArray()));
        Assert.That(batch.KeyLengths, Is.EqualTo(new[] { 9 }));
        Assert.That(batch.Images, Is.EqualTo(new[] { new ImageRef(0, 0) }));
        Assert.That((batch.TextTargetCount, batch.ImageTokenCount), Is.EqualTo((2, 3)));
    }

    [Test]
    public void MixedBatchPadsRightAndNumbersImagesGlobally()
    {
        var a = Sample([1, S, 4, 5], [I, I, 4, 5]);
        var textOnly = Sample([1, 6, 7], [I, 6, 7]);
        var c = Sample([1, 2, S, 8], [I, I, I, 8]);
        var batch = new BatchBuilder(2, 100, 10).Build([a, textOnly, c]);
        Assert.That(batch.L, Is.EqualTo(5));
        Assert.That(batch.Map, Is.EqualTo(new[] { 1, -2, -3, 4, 5, 1, 6, 7, -1, -1, 1, 2, -4, -5, 8 }));
        Assert.That(batch.ImageMask, Is.EqualTo(new byte[] { 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0 }));
        Assert.That(batch.Targets, Is.EqualTo(new[] { I, I, 4, 5, I, 6, 7, I, I, I, I, I, I, 8, I }));
        Assert.That(batch.Positions, Is.EqualTo(new[] { 0, 1, 2, 3, 4, 0, 1, 2, 0, 0, 0, 1, 2, 3, 4 }));
        Assert.That(batch.KeyLengths, Is.EqualTo(new[] { 5, 3, 5 }));
        Assert.That(batch.VmPairs, Is.EqualTo(new[] { 0, 0, 1, 1, 11, 2, 12, 3 }));
        Assert.That(batch.Images, Is.EqualTo(new[] { new ImageRef(0, 0), new ImageRef(2, 0) }));
        Assert.That((batch.TextTargetCount, batch.ImageTokenCount), Is.EqualTo((5, 4)));
    }

    [Test]
    public void LossRowsAreTheSupervisedRowsAndThoseBeforeAPatch()
    {
        var batch = new BatchBuilder(2, 100, 10).Build(
            [Sample([1, S, 4, 5], [I, I, 4, 5]), Sample([1, 6, 7], [I, 6, 7]), Sample([1, 2, S, 8], [I, I, I, 8])]);
        // Targets at rows 2, 3, 5, 6, 13; the LM side of the VM pairs at 0, 1, 11, 12.
        Assert.That(batch.LossRows, Is.EqualTo(new[] { 0, 1, 2, 3, 5, 6, 11, 12, 13 }));
        Assert.That(batch.LossTargets, Is.EqualTo(new[] { I, I, 4, 5, 6, 7, I, I, 8 }));
        Assert.That(batch.LossVmPairs, Is.EqualTo(new[] { 0, 0, 1, 1, 6, 2, 7, 3 }));
        Assert.That((batch.LossRowOf(13), batch.LossRowOf(11), batch.LossRowOf(4), batch.LossRowOf(14)), Is.EqualTo((8, 6, -1, -1)));

        var unsupervised = new BatchBuilder(2, 100, 10).Build([Sample([1, 3, 4], [I, I, I])]);
        Assert.That((unsupervised.LossRows, unsupervised.LossTargets, unsupervised.LossVmPairs),
                    Is.EqualTo((new[] { 0 }, new[] { I }, Array.Empty<int>())), "row 0 stands in when no loss reads a row");
    }

    [Test]
    public void MultiTurnConversationTrainsExactlyTheAnswers()
    {
        var tok = new PieceTestTokenizer();
        Turn[] turns =
        [
            new(Speaker.Human, "<image>\nwhat colour is the triangle ?"), new(Speaker.Gpt, "green"),
            new(Speaker.Human, "how many circles ?"), new(Speaker.Gpt, "2"),
            new(Speaker.Human, "is there a red cross ?"), new(Speaker.Gpt, "yes"),
        ];
        var encoded = ConversationTemplate.VicunaV1.Encode(turns, hasImage: true, tok);
        var batch = new BatchBuilder(4, 1000, tok.VocabSize).Build([encoded]);
        var trained = batch.Targets.Where(t => t >= 0).Select(tok.IdToPiece);
        Assert.That(trained, Is.EqualTo(new[] { "\u2581green", "</s>", "\u25812", "</s>", "\u2581yes", "</s>" }));
        for (int t = 0; t + 1 < batch.L; t++)
            if (batch.Targets[t] >= 0) Assert.That(batch.Map[t + 1], Is.EqualTo(batch.Targets[t]), $"target at {t} is the next input");
        Assert.That(batch.VmPairCount, Is.EqualTo(4));
        // METHOD §2.3: the first patch is predicted from the piece after "USER:", here the lone space piece.
        Assert.That(tok.IdToPiece(batch.Map[batch.VmPairs[0]]), Is.EqualTo("\u2581"));
        Assert.That(batch.TextTargetCount, Is.EqualTo(6));
    }

    [Test]
    public void TextOnlyBatchHasNoImagesNoPairs()
    {
        var batch = new BatchBuilder(4, 100, 10).Build([Sample([1, 3, 4], [I, 3, 4]), Sample([1, 5], [I, 5])]);
        Assert.That(batch.ImageCount, Is.Zero);
        Assert.That(batch.VmPairCount, Is.Zero);
        Assert.That(batch.ImageMask, Is.All.Zero);
        Assert.That(batch.Targets, Is.EqualTo(new[] { 3, 4, I, 5, I, I }));
    }

    [Test]
    public void TruncationInsideImageBlock()
    {
        // BOS, image of 4 → keep BOS + 2 image rows; the second sample's image is cut off entirely.
        var a = Sample([1, S, 6, 7], [I, I, 6, 7]);
        var b = Sample([1, 2, 3, S], [I, 2, 3, I]);
        var batch = new BatchBuilder(4, 3, 10).Build([a, b]);
        Assert.That(batch.L, Is.EqualTo(3));
        Assert.That(batch.Map, Is.EqualTo(new[] { 1, -2, -3, 1, 2, 3 }));
        Assert.That(batch.Targets, Is.EqualTo(new[] { I, I, I, 2, 3, I }));
        Assert.That(batch.VmPairs, Is.EqualTo(new[] { 0, 0, 1, 1 }));
        Assert.That(batch.Images, Is.EqualTo(new[] { new ImageRef(0, 0) }));
        Assert.That(batch.ImageTokenCount, Is.EqualTo(2));
        Assert.That(batch.TruncatedCount, Is.EqualTo(2));
    }

    [Test]
    public void TruncationInsideTextDropsTheLastTarget()
    {
        var batch = new BatchBuilder(2, 5, 10).Build([Sample([1, S, 4, 5, 6], [I, I, 4, 5, 6])]);
        Assert.That(batch.Map, Is.EqualTo(new[] { 1, -2, -3, 4, 5 }));
        Assert.That(batch.Targets, Is.EqualTo(new[] { I, I, 4, 5, I }), "label 6 of the cut token is gone");
        Assert.That(batch.TruncatedCount, Is.EqualTo(1));
        Assert.That(new BatchBuilder(2, 6, 10).Build([Sample([1, S, 4, 5, 6], [I, I, 4, 5, 6])]).TruncatedCount, Is.Zero, "exactly MaxLength is not cut");
    }

    [Test]
    public void MultipleImagesInOneSample()
    {
        var batch = new BatchBuilder(2, 100, 10).Build([Sample([S, 3, S], [I, 3, I])]);
        Assert.That(batch.Map, Is.EqualTo(new[] { -2, -3, 3, -4, -5 }));
        Assert.That(batch.VmPairs, Is.EqualTo(new[] { 0, 1, 2, 2, 3, 3 }), "t = 0 has no predecessor");
        Assert.That(batch.Images, Is.EqualTo(new[] { new ImageRef(0, 0), new ImageRef(0, 1) }));
    }

    [Test]
    public void BadSamplesAreRejected()
    {
        var bb = new BatchBuilder(2, 10, 10);
        Assert.Throws<ArgumentException>(() => bb.Build([]));
        Assert.Throws<ArgumentException>(() => bb.Build([Sample([1, 2], [I])]));
        Assert.Throws<ArgumentException>(() => bb.Build([Sample([1, 10], [I, I])]));
        Assert.Throws<ArgumentException>(() => bb.Build([Sample([1, -3], [I, I])]));
        Assert.Throws<ArgumentException>(() => bb.Build([Sample([1, 2], [I, -5])]));
        Assert.Throws<ArgumentException>(() => new BatchBuilder(0, 10, 10));
    }

    [Test]
    public void AgreesWithPortOfLlavaPrepareInputs([Range(0, 19)] int seed)
    {
        var rng = new Random(seed);
        int nImg = rng.Next(1, 6), vocab = 50, maxLength = rng.Next(3, 30);
        var samples = Enumerable.Range(0, rng.Next(1, 5)).Select(_ => RandomSample(rng, vocab)).ToArray();
        var batch = new BatchBuilder(nImg, maxLength, vocab).Build(samples);
        var port = LlavaPort(samples, nImg, maxLength);

        Assert.That(batch.L, Is.EqualTo(port.L));
        for (int r = 0; r < batch.B * batch.L; r++)
        {
            Assert.That(Describe(batch, batch.Map[r]), Is.EqualTo(port.Embeds[r]), $"row {r}");
            Assert.That(batch.ImageMask[r], Is.EqualTo(port.Mask[r]), $"mask {r}");
            Assert.That(batch.Positions[r], Is.EqualTo(port.Attention[r] ? r % batch.L : 0), $"position {r}");
        }
        Assert.That(batch.ImageMask.Where((m, r) => m != 0 && batch.Map[r] == -1), Is.Empty, "padding never in the mask");
        Assert.That(batch.Targets, Is.EqualTo(port.ShiftedTargets));
        Assert.That(batch.KeyLengths, Is.EqualTo(port.KeyLengths));
        var pairs = Enumerable.Range(0, batch.VmPairCount)
            .Select(p => (batch.VmPairs[2 * p], Describe(batch, -2 - batch.VmPairs[2 * p + 1]))).ToArray();
        Assert.That(pairs, Is.EqualTo(port.Pairs));
        Assert.That(batch.TextTargetCount, Is.EqualTo(port.ShiftedTargets.Count(t => t >= 0)));
        Assert.That(batch.ImageTokenCount, Is.EqualTo(port.Mask.Count(m => m == 1)));
    }

    private static TokenizedConversation RandomSample(Random rng, int vocab)
    {
        int n = rng.Next(1, 15);
        var ids = new int[n];
        var labels = new int[n];
        for (int i = 0; i < n; i++)
        {
            ids[i] = rng.Next(6) == 0 ? S : rng.Next(vocab);
            labels[i] = ids[i] == S || rng.Next(3) == 0 ? I : ids[i];
        }
        return new TokenizedConversation(ids, labels);
    }

    /// <summary>"tok 7", "img s.k j" (sample s, k-th image, row j) or "pad": independent of how image rows are numbered.</summary>
    private static string Describe(Batch batch, int map)
    {
        if (map == -1) return "pad";
        if (map >= 0) return $"tok {map}";
        int row = -2 - map;
        var image = batch.Images[row / batch.ImageTokens];
        return $"img {image.Sample}.{image.Ordinal} {row % batch.ImageTokens}";
    }

    private sealed record PortResult(int L, string[] Embeds, byte[] Mask, bool[] Attention, int[] ShiftedTargets, int[] KeyLengths,
                                     (int, string)[] Pairs);

    /// <summary>
    /// vw_arch.prepare_inputs_labels_for_multimodal, sample by sample, then truncation to the max length after expansion
    /// (LLaVA's tokenizer_model_max_length), right padding, and the loss-side shift: labels[:, 1:], mask[:, 1:].
    /// </summary>
    private static PortResult LlavaPort(TokenizedConversation[] samples, int nImg, int maxLength)
    {
        var embeds = new List<List<string>>();
        var labels = new List<List<int>>();
        var masks = new List<List<byte>>();
        for (int b = 0; b < samples.Length; b++)
        {
            var curIds = samples[b].InputIds.ToList();
            var curLabels = samples[b].Labels.ToList();
            var e = new List<string>();
            var l = new List<int>();
            var m = new List<byte>();
            int ordinal = 0;
            int start;
            while ((start = curIds.IndexOf(S)) >= 0)
            {
                e.AddRange(curIds.Take(start).Select(id => $"tok {id}"));
                l.AddRange(curLabels.Take(start));
                m.AddRange(Enumerable.Repeat((byte)0, start));
                e.AddRange(Enumerable.Range(0, nImg).Select(j => $"img {b}.{ordinal} {j}"));
                l.AddRange(Enumerable.Repeat(I, nImg));
                m.AddRange(Enumerable.Repeat((byte)1, nImg));
                ordinal++;
                curIds = curIds.Skip(start + 1).ToList();
                curLabels = curLabels.Skip(start + 1).ToList();
            }
            e.AddRange(curIds.Select(id => $"tok {id}"));
            l.AddRange(curLabels);
            m.AddRange(Enumerable.Repeat((byte)0, curIds.Count));
            embeds.Add(e.Take(maxLength).ToList());
            labels.Add(l.Take(maxLength).ToList());
            masks.Add(m.Take(maxLength).ToList());
        }
        int len = embeds.Max(e => e.Count), bs = samples.Length;
        var flatE = new string[bs * len];
        var flatL = new int[bs * len];
        var flatM = new byte[bs * len];
        var attention = new bool[bs * len];
        for (int b = 0; b < bs; b++)
            for (int t = 0; t < len; t++)
            {
                bool valid = t < embeds[b].Count;
                flatE[b * len + t] = valid ? embeds[b][t] : "pad";
                flatL[b * len + t] = valid ? labels[b][t] : I;
                flatM[b * len + t] = valid ? masks[b][t] : (byte)0;
                attention[b * len + t] = valid;
            }
        var shifted = new int[bs * len];
        var pairs = new List<(int, string)>();
        for (int b = 0; b < bs; b++)
            for (int t = 0; t < len; t++)
            {
                shifted[b * len + t] = t + 1 < len ? flatL[b * len + t + 1] : I;
                if (t + 1 < len && flatM[b * len + t + 1] == 1) pairs.Add((b * len + t, flatE[b * len + t + 1]));
            }
        return new PortResult(len, flatE, flatM, attention, shifted, embeds.Select(e => e.Count).ToArray(), pairs.ToArray());
    }
}
