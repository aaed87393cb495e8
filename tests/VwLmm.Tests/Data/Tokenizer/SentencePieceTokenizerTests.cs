using NUnit.Framework;
using VwLmm.Data.Text;

namespace VwLmm.Tests.Data.Tokenizer;

/// <summary>
/// Hand-built vocabularies whose segmentations follow by hand from bpe_model.cc, for the paths the trained fixtures
/// seldom reach (UNUSED pieces, score ties), plus argument checking.
/// </summary>
public class SentencePieceTokenizerTests
{
    private static SentencePieceTokenizer Tokenizer(bool byteFallback, params (string Piece, float Score, PieceType Type)[] pieces)
    {
        var all = new List<SentencePiece> { new("<unk>", 0, PieceType.Unknown), new("<s>", 0, PieceType.Control), new("</s>", 0, PieceType.Control) };
        if (byteFallback) all.AddRange(Enumerable.Range(0, 256).Select(b => new SentencePiece($"<0x{b:X2}>", 0, PieceType.Byte)));
        all.AddRange(pieces.Select(p => new SentencePiece(p.Piece, p.Score, p.Type)));
        var model = new SentencePieceModel
        {
            Pieces = all, ModelType = SentencePieceModelType.Bpe, ByteFallback = byteFallback, NormalizerName = "identity",
            AddDummyPrefix = false, RemoveExtraWhitespaces = false,
        };
        return new SentencePieceTokenizer(model, "hand.model");
    }

    private static string[] Pieces(SentencePieceTokenizer tok, string text) =>
        tok.Encode(text, addBos: false).Select(tok.IdToPiece).ToArray();

    [Test]
    public void EqualScoresMergeLeftmostFirst()
    {
        var tok = Tokenizer(false, ("a", 0, PieceType.Normal), ("aa", -1, PieceType.Normal));
        Assert.That(Pieces(tok, "aaa"), Is.EqualTo(new[] { "aa", "a" }));
        Assert.That(Pieces(tok, "aaaaa"), Is.EqualTo(new[] { "aa", "aa", "a" }));
    }

    [Test]
    public void HigherScoreWinsOverPosition()
    {
        var tok = Tokenizer(false, ("a", 0, PieceType.Normal), ("b", 0, PieceType.Normal), ("ab", -2, PieceType.Normal), ("bb", -1, PieceType.Normal));
        Assert.That(Pieces(tok, "abb"), Is.EqualTo(new[] { "a", "bb" }));
    }

    [Test]
    public void UnusedPiecesAreSplitBackUnlessMergedFurther()
    {
        var tok = Tokenizer(false, ("a", 0, PieceType.Normal), ("b", 0, PieceType.Normal), ("c", 0, PieceType.Normal),
            ("ab", -1, PieceType.Unused), ("abc", -2, PieceType.Normal));
        Assert.That(Pieces(tok, "ab"), Is.EqualTo(new[] { "a", "b" }));
        Assert.That(Pieces(tok, "abc"), Is.EqualTo(new[] { "abc" }));
    }

    [Test]
    public void UnknownRunBecomesOneUnkWithoutByteFallback()
    {
        var tok = Tokenizer(false, ("a", 0, PieceType.Normal));
        Assert.That(tok.Encode("xyaz", addBos: false), Is.EqualTo(new[] { 0, 3, 0 }));
        Assert.That(tok.Decode([0, 3, 0]), Is.EqualTo(" \u2047 a \u2047 "));
    }

    [Test]
    public void LoneSurrogateIsEncodedAsReplacementCharacterBytes()
    {
        var tok = Tokenizer(true, ("a", 0, PieceType.Normal));
        Assert.That(Pieces(tok, "a\uD800"), Is.EqualTo(new[] { "a", "<0xEF>", "<0xBF>", "<0xBD>" }));
    }

    [Test]
    public void AddBosPrependsBos()
    {
        var tok = Tokenizer(false, ("a", 0, PieceType.Normal));
        Assert.That(tok.Encode("a"), Is.EqualTo(new[] { 1, 3 }));
        Assert.That(tok.Encode(""), Is.EqualTo(new[] { 1 }));
    }

    [Test]
    public void DecodeRejectsIdsOutsideTheVocabulary()
    {
        var tok = Tokenizer(false, ("a", 0, PieceType.Normal));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([3, 4]));
        Assert.That(ex!.Message, Does.Contain("4").And.Contain("hand.model"));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([-1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.IdToPiece(4));
    }

    [Test]
    public void DuplicatePieceIsRejected()
    {
        var ex = Assert.Throws<InvalidDataException>(() => Tokenizer(false, ("a", 0, PieceType.Normal), ("a", -1, PieceType.Normal)));
        Assert.That(ex!.Message, Does.Contain("hand.model").And.Contain("'a' is already defined"));
    }

    [Test]
    public void BytePieceWithoutByteFallbackIsRejected()
    {
        var model = new SentencePieceModel
        {
            Pieces = [new("<unk>", 0, PieceType.Unknown), new("<0x41>", 0, PieceType.Byte)],
            ModelType = SentencePieceModelType.Bpe,
        };
        var ex = Assert.Throws<InvalidDataException>(() => new SentencePieceTokenizer(model, "hand.model"));
        Assert.That(ex!.Message, Does.Contain("byte_fallback is false"));
    }

    [Test]
    public void ModelWithoutUnknownPieceIsRejected()
    {
        var model = new SentencePieceModel { Pieces = [new("a", 0, PieceType.Normal)], ModelType = SentencePieceModelType.Bpe };
        Assert.Throws<InvalidDataException>(() => new SentencePieceTokenizer(model, "hand.model"));
    }
}
