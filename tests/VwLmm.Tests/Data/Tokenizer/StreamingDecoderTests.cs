using System.Text.Json;
using NUnit.Framework;
using VwLmm.Data.Text;

namespace VwLmm.Tests.Data.Tokenizer;

/// <summary>
/// The streamed pieces of an answer, joined, must be <c>Decode(ids).Trim()</c> — what `chat` printed before it streamed —
/// and no piece may be handed out that a later id would change.
/// </summary>
public class StreamingDecoderTests
{
    private static SentencePieceTokenizer Tokenizer(string name = "llama_like.model") =>
        SentencePieceTokenizer.Load(SentencePieceFixtureTests.FixturePath(name));

    // The pieces each id releases, then Finish's rest.
    private static List<string> Stream(StreamingDecoder stream, IEnumerable<int> ids)
    {
        var pieces = ids.Select(stream.Push).ToList();
        pieces.Add(stream.Finish());
        return pieces;
    }

    [TestCase("llama_like.model")]
    [TestCase("plain.model")]
    [TestCase("noprefix.model")]
    [TestCase("charsmap.model")]
    public void JoinedPiecesAreTheTrimmedDecodeOfTheFixtureTexts(string model)
    {
        var tok = Tokenizer(model);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(SentencePieceFixtureTests.FixturePath("sentencepiece_cases.json")));
        var texts = doc.RootElement.GetProperty("texts").EnumerateArray().Select(t => t.GetString()!)
            .Concat(["  leading and trailing  ", "naïve café — 東京 🙂 ok", "🙂🙂", "a \n b"]);
        var stream = new StreamingDecoder(tok);
        foreach (var text in texts)
        {
            var ids = tok.Encode(text, addBos: true).Append(tok.EosId).ToArray();
            Assert.That(string.Concat(Stream(stream, ids)), Is.EqualTo(tok.Decode(ids).Trim()), $"{model}: {text}");
        }
    }

    /// <summary>Random ids, byte pieces included, make broken UTF-8 runs and stray control ids: the join still holds.</summary>
    [Test]
    public void JoinedPiecesAreTheTrimmedDecodeOfRandomIds()
    {
        var tok = Tokenizer();
        var rng = new Random(7);
        var stream = new StreamingDecoder(tok);
        int firstByte = tok.PieceToId("<0x00>");
        for (int trial = 0; trial < 300; trial++)
        {
            // Half the ids are byte pieces from the UTF-8 lead/continuation range, so runs are valid only by chance.
            var ids = Enumerable.Range(0, rng.Next(0, 24))
                .Select(_ => rng.Next(2) == 0 ? firstByte + rng.Next(0x80, 0xF5) : rng.Next(tok.VocabSize)).ToArray();
            var pieces = Stream(stream, ids);
            Assert.That(string.Concat(pieces), Is.EqualTo(tok.Decode(ids).Trim()), $"trial {trial}: [{string.Join(", ", ids)}]");
        }
    }

    [Test]
    public void ACharacterSplitOverBytePiecesIsReleasedWhenItsLastByteArrives()
    {
        var tok = Tokenizer();
        var stream = new StreamingDecoder(tok);
        int Byte(int b) => tok.PieceToId($"<0x{b:X2}>");
        Assert.That(stream.Push(tok.PieceToId("▁a")), Is.EqualTo("a"));
        // U+1F642 is F0 9F 99 82: nothing of it may show before the fourth byte.
        Assert.That(new[] { stream.Push(Byte(0xF0)), stream.Push(Byte(0x9F)), stream.Push(Byte(0x99)) }, Is.All.Empty);
        Assert.That(stream.Push(Byte(0x82)), Is.EqualTo("🙂"));
    }

    [Test]
    public void WhitespaceWaitsForTheTextAfterIt()
    {
        var tok = Tokenizer();
        var stream = new StreamingDecoder(tok);
        Assert.That(stream.Push(tok.PieceToId("▁")), Is.Empty);
        Assert.That(stream.Push(tok.PieceToId("▁a")), Is.EqualTo("a"));
        Assert.That(stream.Push(tok.PieceToId("▁")), Is.Empty);
        Assert.That(stream.Push(tok.PieceToId("▁a")), Is.EqualTo("  a"));
        Assert.That(stream.Push(tok.PieceToId("▁")), Is.Empty);
        Assert.That(stream.Finish(), Is.Empty, "trailing whitespace is dropped");
        Assert.That(stream.Push(tok.PieceToId("▁a")), Is.EqualTo("a"), "Finish starts a new answer");
    }
}
