using System.Text.Json;
using NUnit.Framework;
using VwLmm.Data.Text;

namespace VwLmm.Tests.Data.Tokenizer;

/// <summary>Encode/Decode against python sentencepiece 0.1.97 (tests/fixtures/tokenizer/make_fixtures.py).</summary>
public class SentencePieceFixtureTests
{
    internal static string FixturePath(string name) =>
        Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", "tokenizer", name);

    [TestCase("llama_like.model")]
    [TestCase("plain.model")]
    [TestCase("noprefix.model")]
    [TestCase("charsmap.model")]
    public void MatchesPythonSentencePiece(string modelName)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(FixturePath("sentencepiece_cases.json")));
        var texts = doc.RootElement.GetProperty("texts").EnumerateArray().Select(t => t.GetString()!).ToArray();
        Check(SentencePieceTokenizer.Load(FixturePath(modelName)), texts, doc.RootElement.GetProperty("models").GetProperty(modelName));
    }

    [Test]
    public void BpeTrainerModelEncodesLikePythonSentencePiece()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(FixturePath("bpe_trainer_cases.json")));
        var texts = doc.RootElement.GetProperty("texts").EnumerateArray().Select(t => t.GetString()!).ToArray();
        var tok = SentencePieceTokenizer.Load(FixturePath("bpe_trainer.model"));
        Assert.That(tok.VocabSize, Is.EqualTo(doc.RootElement.GetProperty("vocab_size").GetInt32()));
        Check(tok, texts, doc.RootElement);
    }

    [Test]
    public void LlamaLikeSpecialIds()
    {
        var tok = SentencePieceTokenizer.Load(FixturePath("llama_like.model"));
        Assert.That((tok.UnkId, tok.BosId, tok.EosId, tok.PadId), Is.EqualTo((0, 1, 2, -1)));
        Assert.That(tok.IdToPiece(1), Is.EqualTo("<s>"));
        Assert.That(tok.PieceToId("<image>"), Is.EqualTo(3));
        Assert.That(tok.GetPieceType(3), Is.EqualTo(PieceType.UserDefined));
        Assert.That(tok.PieceToId("<0x41>"), Is.EqualTo(3 + 2 + 0x41));
        Assert.That(tok.PieceToId("no such piece"), Is.EqualTo(-1));
    }

    private static void Check(SentencePieceTokenizer tok, string[] texts, JsonElement expected)
    {
        int[][] Ids(string name) => expected.GetProperty(name).EnumerateArray()
            .Select(a => a.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();
        string[] Strings(string name) => expected.GetProperty(name).EnumerateArray().Select(x => x.GetString()!).ToArray();
        var ids = Ids("ids");
        var bosIds = Ids("bos_ids");
        var decoded = Strings("decoded");
        var decodeIds = Ids("decode_ids");
        var decodeTexts = Strings("decode_texts");
        Assert.That(texts, Has.Length.EqualTo(ids.Length));

        var failures = new List<string>();
        for (int i = 0; i < texts.Length; i++)
        {
            int[] got = tok.Encode(texts[i], addBos: false);
            if (!got.SequenceEqual(ids[i]))
                failures.Add($"encode {JsonSerializer.Serialize(texts[i])}: got [{string.Join(",", got)}] want [{string.Join(",", ids[i])}]");
            string text = tok.Decode(ids[i]);
            if (text != decoded[i])
                failures.Add($"decode [{string.Join(",", ids[i])}]: got {JsonSerializer.Serialize(text)} want {JsonSerializer.Serialize(decoded[i])}");
        }
        for (int i = 0; i < bosIds.Length; i++)
            if (!tok.Encode(texts[i], addBos: true).SequenceEqual(bosIds[i]))
                failures.Add($"encode+bos {JsonSerializer.Serialize(texts[i])}");
        for (int i = 0; i < decodeIds.Length; i++)
        {
            string text = tok.Decode(decodeIds[i]);
            if (text != decodeTexts[i])
                failures.Add($"decode [{string.Join(",", decodeIds[i])}]: got {JsonSerializer.Serialize(text)} want {JsonSerializer.Serialize(decodeTexts[i])}");
        }
        Assert.That(failures, Is.Empty, $"{failures.Count} mismatches; first: {string.Join("\n", failures.Take(8))}");
    }
}
