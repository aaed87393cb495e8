using NUnit.Framework;
using VwLmm.Data.Text;

namespace VwLmm.Tests.Data.Tokenizer;

/// <summary>BpeTrainer on tiny corpora; python compatibility of its output is checked by SentencePieceFixtureTests.</summary>
public class BpeTrainerTests
{
    [Test]
    public void LearnsTheMostFrequentPairsInOrder()
    {
        // Words ▁ab×3, ▁cd×1. Chars by count: ▁(4) a(3) b(3) c(1) d(1). Pair counts (▁a)=(ab)=3 tie → lower ids: ▁a;
        // then ▁a+b=3 → ▁ab; then (▁c)=(cd)=1 → ▁c; then ▁cd.
        var model = BpeTrainer.Train(["ab ab ab cd"], new BpeTrainerOptions { VocabSize = 3 + 256 + 5 + 4 });
        var normal = model.Pieces.Where(p => p.Type == PieceType.Normal).Select(p => p.Piece).ToArray();
        Assert.That(normal, Is.EqualTo(new[] { "▁a", "▁ab", "▁c", "▁cd", "▁", "a", "b", "c", "d" }));
        var scores = model.Pieces.Where(p => p.Type == PieceType.Normal).Select(p => p.Score).ToArray();
        Assert.That(scores, Is.Ordered.Descending);
    }

    [Test]
    public void LayoutIsLlamaLike()
    {
        var model = BpeTrainer.Train(["x <image> y"], new BpeTrainerOptions { VocabSize = 3 + 1 + 256 + 4, UserDefinedSymbols = ["<image>"] });
        Assert.That(model.Pieces.Take(5), Is.EqualTo(new[]
        {
            new SentencePiece("<unk>", 0, PieceType.Unknown), new SentencePiece("<s>", 0, PieceType.Control),
            new SentencePiece("</s>", 0, PieceType.Control), new SentencePiece("<image>", 0, PieceType.UserDefined),
            new SentencePiece("<0x00>", 0, PieceType.Byte),
        }));
        Assert.That(model.Pieces, Has.Count.EqualTo(264));
        Assert.That((model.ModelType, model.NormalizerName, model.ByteFallback, model.PadId), Is.EqualTo((SentencePieceModelType.Bpe, "identity", true, -1)));
    }

    [Test]
    public void TrainedModelRoundTripsTextThroughTheTokenizer()
    {
        string[] corpus = ["the cat sat on the mat", "the dog sat on the log 2024", "a cat and a dog <image>", "  two  spaces\tand tab"];
        var model = BpeTrainer.Train(corpus, new BpeTrainerOptions { VocabSize = 300, UserDefinedSymbols = ["<image>"] });
        var tok = new SentencePieceTokenizer(model, "trained");
        Assert.That(tok.VocabSize, Is.EqualTo(300));
        foreach (string s in corpus.Append("unseen ünïcödé 😀 text 31415 <image><image>"))
            Assert.That(tok.Decode(tok.Encode(s)), Is.EqualTo(s));
        Assert.That(tok.Encode("<image>", addBos: false), Is.EqualTo(new[] { tok.PieceToId("▁"), tok.PieceToId("<image>") }));
        Assert.That(tok.Encode("2024", addBos: false).Skip(1).Select(tok.IdToPiece), Is.EqualTo(new[] { "2", "0", "2", "4" }));
    }

    [Test]
    public void NeverLearnsOverlongOrSpecialPieces()
    {
        string[] corpus = [.. Enumerable.Repeat("aaaaaaaa x<s> x<s>", 20)];
        var model = BpeTrainer.Train(corpus, new BpeTrainerOptions { VocabSize = 3 + 256 + 6 + 3, MaxPieceLength = 3, ByteFallback = true });
        var normal = model.Pieces.Where(p => p.Type == PieceType.Normal).Select(p => p.Piece).ToArray();
        Assert.That(normal.Max(p => p.Length), Is.LessThanOrEqualTo(3));
        Assert.That(normal, Does.Not.Contain("<s>"));
        Assert.DoesNotThrow(() => _ = new SentencePieceTokenizer(model, "trained"));
    }

    [Test]
    public void VocabSizeOutsideWhatTheCorpusAllowsIsRejected()
    {
        Assert.Throws<ArgumentException>(() => BpeTrainer.Train(["abc"], new BpeTrainerOptions { VocabSize = 100 }));
        Assert.Throws<ArgumentException>(() => BpeTrainer.Train(["abc"], new BpeTrainerOptions { VocabSize = 5000 }));
    }

    [Test]
    public void ConflictingSpecialIdsAreRejected()
    {
        Assert.Throws<ArgumentException>(() => BpeTrainer.Train(["abc"], new BpeTrainerOptions { VocabSize = 300, BosId = 0 }));
        Assert.Throws<ArgumentException>(() => BpeTrainer.Train(["abc"], new BpeTrainerOptions { VocabSize = 300, PadId = 7 }));
    }

    [Test]
    public void MissingCorpusIsFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => BpeTrainer.TrainFromFile("/nonexistent/corpus.txt", new BpeTrainerOptions()));
    }
}
