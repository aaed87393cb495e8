using NUnit.Framework;
using VwLmm.Data.Text;

namespace VwLmm.Tests.Data.Tokenizer;

/// <summary>ModelProto reading/writing and the rejection of corrupt, truncated or unsupported model files.</summary>
public class SentencePieceModelTests
{
    private static byte[] LlamaLikeBytes() => File.ReadAllBytes(SentencePieceFixtureTests.FixturePath("llama_like.model"));

    private static string TempPath(string name) => Path.Combine(Path.GetTempPath(), $"vwlmm-tok-{Environment.ProcessId}-{name}");

    [Test]
    public void ReadsLlamaLikeFields()
    {
        var m = SentencePieceModel.Read(SentencePieceFixtureTests.FixturePath("llama_like.model"));
        Assert.Multiple(() =>
        {
            Assert.That(m.Pieces, Has.Count.EqualTo(1000));
            Assert.That(m.Pieces[0], Is.EqualTo(new SentencePiece("<unk>", 0, PieceType.Unknown)));
            Assert.That(m.Pieces[5], Is.EqualTo(new SentencePiece("<0x00>", 0, PieceType.Byte)));
            Assert.That(m.ModelType, Is.EqualTo(SentencePieceModelType.Bpe));
            Assert.That(m.TrainerVocabSize, Is.EqualTo(1000));
            Assert.That(m.ByteFallback && m.SplitDigits, Is.True);
            Assert.That((m.UnkId, m.BosId, m.EosId, m.PadId), Is.EqualTo((0, 1, 2, -1)));
            Assert.That(m.NormalizerName, Is.EqualTo("identity"));
            Assert.That((m.AddDummyPrefix, m.RemoveExtraWhitespaces, m.EscapeWhitespaces), Is.EqualTo((true, false, true)));
            Assert.That(m.PrecompiledCharsmap, Is.Empty);
        });
    }

    [Test]
    public void WriteThenReadRoundTrips()
    {
        var m = SentencePieceModel.Read(SentencePieceFixtureTests.FixturePath("llama_like.model"));
        string path = TempPath("roundtrip.model");
        m.Write(path);
        try
        {
            var back = SentencePieceModel.Read(path);
            Assert.That(back.Pieces, Is.EqualTo(m.Pieces));
            Assert.That((back.ModelType, back.ByteFallback, back.PadId, back.AddDummyPrefix, back.RemoveExtraWhitespaces, back.UnkSurface),
                Is.EqualTo((m.ModelType, m.ByteFallback, m.PadId, m.AddDummyPrefix, m.RemoveExtraWhitespaces, m.UnkSurface)));
            Assert.That(Directory.GetFiles(Path.GetTempPath(), Path.GetFileName(path) + ".tmp*"), Is.Empty);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void MissingFileIsFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => SentencePieceTokenizer.Load(TempPath("does-not-exist.model")));
    }

    [Test]
    public void TruncatedFilesAreRejectedCleanly()
    {
        byte[] data = LlamaLikeBytes();
        // The pieces come first; trainer_spec (which says BPE) and normalizer_spec are the last ~170 bytes.
        for (int cut = 0; cut < data.Length; cut += cut < 64 ? 1 : 37)
        {
            var ex = LoadOrInvalid(data[..cut], $"cut{cut}.model");
            if (cut < data.Length - 512)
                Assert.That(ex, Is.Not.Null, $"cut at {cut} loaded");
        }
    }

    [Test]
    public void TruncationInsideAPieceNamesFieldAndOffset()
    {
        byte[] data = LlamaLikeBytes();
        // pieces[0] is 0A 0E | 0A 05 "<unk>" 15 <f32> 18 02: cutting 4 bytes in leaves "<unk>" short.
        var ex = Assert.Throws<InvalidDataException>(() => SentencePieceModel.Parse(data[..6], "tokenizer.model"));
        Assert.That(ex!.Message, Is.EqualTo("tokenizer.model: truncated at byte 6 in field pieces[0], which starts at byte 0"));
    }

    [Test]
    public void FlippedBytesNeverCrash()
    {
        byte[] original = LlamaLikeBytes();
        var rng = new Random(5);
        int loaded = 0;
        for (int trial = 0; trial < 300; trial++)
        {
            byte[] data = (byte[])original.Clone();
            for (int k = rng.Next(1, 4); k > 0; k--) data[rng.Next(data.Length)] ^= (byte)rng.Next(1, 256);
            if (LoadOrInvalid(data, $"flip{trial}.model") is null) loaded++;
        }
        // Most flips hit piece text or scores and leave a loadable model; the rest must fail cleanly.
        Assert.That(loaded, Is.InRange(1, 299));
    }

    [Test]
    public void WrongWireTypeIsInvalidData()
    {
        byte[] data = [0x08, 0x01];  // field 1 (pieces) as a varint
        var ex = Assert.Throws<InvalidDataException>(() => SentencePieceModel.Parse(data, "m.model"));
        Assert.That(ex!.Message, Does.Contain("m.model").And.Contain("pieces"));
    }

    /// <summary>Every protobuf field is optional, so these parse as a model of defaults, whose model type (Unigram)
    /// would otherwise be what is refused.</summary>
    [TestCase(new byte[0], "empty.model: empty file, not a sentencepiece model")]
    [TestCase(new byte[] { 0x12, 0x02, 0x18, 0x02 }, "empty.model: no pieces: not a sentencepiece model")]
    public void AFileWithoutPiecesIsNotASentencePieceModel(byte[] data, string message)
    {
        var ex = Assert.Throws<InvalidDataException>(() => SentencePieceModel.Parse(data, "empty.model"));
        Assert.That(ex!.Message, Is.EqualTo(message));
    }

    [Test]
    public void UnigramModelIsRejected()
    {
        // A second trainer_spec merges into the first (protobuf semantics): model_type = UNIGRAM.
        byte[] data = [.. LlamaLikeBytes(), 0x12, 0x02, 0x18, 0x01];
        var ex = Assert.Throws<InvalidDataException>(() => Load(data, "unigram.model"));
        Assert.That(ex!.Message, Does.Contain("unigram.model").And.Contain("Unigram").And.Contain("only BPE"));
    }

    [Test]
    public void CharsmapWithImpossibleTrieSizeIsRejected()
    {
        // normalizer_spec { precompiled_charsmap: trie size 0xFF (LE u32) but only 2 more bytes }
        byte[] data = [.. LlamaLikeBytes(), 0x1A, 0x08, 0x12, 0x06, 0xFF, 0x00, 0x00, 0x00, 0x41, 0x00];
        var ex = Assert.Throws<InvalidDataException>(() => Load(data, "charsmap.model"));
        Assert.That(ex!.Message, Does.Contain("charsmap.model").And.Contain("precompiled_charsmap"));
    }

    [Test]
    public void CorruptCharsmapTrieFailsCleanlyOnEncode()
    {
        // A one-unit trie whose root offset points far outside the array.
        byte[] data = [.. LlamaLikeBytes(), 0x1A, 0x0C, 0x12, 0x0A, 0x04, 0x00, 0x00, 0x00, 0x00, 0xFC, 0xFF, 0x7F, 0x41, 0x00];
        var tok = Load(data, "trie.model");
        var ex = Assert.Throws<InvalidDataException>(() => tok.Encode("abc"));
        Assert.That(ex!.Message, Does.Contain("trie.model").And.Contain("trie index"));
    }

    [Test]
    public void DenormalizerIsRejected()
    {
        byte[] data = [.. LlamaLikeBytes(), 0x2A, 0x03, 0x12, 0x01, 0x00];
        var ex = Assert.Throws<InvalidDataException>(() => Load(data, "denorm.model"));
        Assert.That(ex!.Message, Does.Contain("denorm.model").And.Contain("denormalizer"));
    }

    [Test]
    public void InvalidUtf8PieceIsRejected()
    {
        byte[] data = [0x0A, 0x04, 0x0A, 0x02, 0xC3, 0x28];
        var ex = Assert.Throws<InvalidDataException>(() => SentencePieceModel.Parse(data, "m.model"));
        Assert.That(ex!.Message, Does.Contain("invalid UTF-8").And.Contain("pieces[0].piece"));
    }

    private static SentencePieceTokenizer Load(byte[] data, string name)
    {
        string path = TempPath(name);
        File.WriteAllBytes(path, data);
        try
        {
            return SentencePieceTokenizer.Load(path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Null when the bytes load (and then encode/decode run), else the InvalidDataException; anything else fails.</summary>
    private static InvalidDataException? LoadOrInvalid(byte[] data, string name)
    {
        try
        {
            var tok = Load(data, name);
            int[] ids = tok.Encode("hello wörld 123 <image> 😀", addBos: false);
            tok.Decode(ids);
            return null;
        }
        catch (InvalidDataException e)
        {
            Assert.That(e.Message, Does.StartWith(TempPath(name) + ": "));
            Assert.That(e.Message, Does.Not.Contain("\n"));
            return e;
        }
    }
}
