using System.Text.Json;
using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Model.Checkpoints;
using static VwLmm.Tests.Model.Checkpoints.CheckpointFixtures;

namespace VwLmm.Tests.Model.Checkpoints;

public class SafetensorsReaderTests
{
    [Test]
    public void F32FileListsTensorsAndReadsValuesExactly()
    {
        using var f = SafetensorsFile.Open(File("f32.safetensors"));
        Assert.That(f.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "b", "a", "scalar", "empty", "ids64", "ids32" }));
        Assert.That(f.Metadata, Is.EquivalentTo(new Dictionary<string, string> { ["format"] = "pt", ["note"] = "fixture" }));
        Assert.That(f.GetInfo("a").Shape, Is.EqualTo(new Shape(2, 3)));
        Assert.That(f.GetInfo("scalar").Shape.Rank, Is.Zero);
        Assert.That(f.GetInfo("empty").Shape, Is.EqualTo(new Shape(0, 4)));
        Assert.That(f.GetInfo("ids64").DType, Is.EqualTo(SafetensorsDType.I64));

        using var expected = JsonDocument.Parse(System.IO.File.ReadAllText(File("f32_expected.json")));
        foreach (string name in new[] { "a", "b" })
        {
            uint[] bits = expected.RootElement.GetProperty(name).EnumerateArray().Select(e => e.GetUInt32()).ToArray();
            var got = new float[bits.Length];
            f.ReadFloat(name, got);
            Assert.That(got.Select(BitConverter.SingleToUInt32Bits), Is.EqualTo(bits), name);
        }
        var scalar = new float[1];
        f.ReadFloat("scalar", scalar);
        Assert.That(scalar[0], Is.EqualTo(3.25f));
        f.ReadFloat("empty", Span<float>.Empty);
    }

    [Test]
    public void IntegerTensorsReadAsInt64()
    {
        using var f = SafetensorsFile.Open(File("f32.safetensors"));
        var i64 = new long[3];
        f.ReadInt64("ids64", i64);
        Assert.That(i64, Is.EqualTo(new long[] { -1, 1L << 40, 7 }));
        var i32 = new long[4];
        f.ReadInt64("ids32", i32);
        Assert.That(i32, Is.EqualTo(new long[] { -5, 0, 3, int.MaxValue }));
        var ex = Assert.Throws<InvalidDataException>(() => f.ReadFloat("ids32", new float[4]));
        Assert.That(ex!.Message, Does.Contain("ids32").And.Contain("not a float tensor"));
        Assert.Throws<InvalidDataException>(() => f.ReadInt64("a", new long[6]));
    }

    [Test]
    public void RawBytesAreTheStoredLittleEndianData()
    {
        using var f = SafetensorsFile.Open(File("f32.safetensors"));
        var bytes = f.GetBytes("scalar");
        Assert.That(bytes.ToArray(), Is.EqualTo(BitConverter.GetBytes(3.25f)));
    }

    [Test]
    public void WrongDestinationLengthOrNameIsAnArgumentError()
    {
        using var f = SafetensorsFile.Open(File("f32.safetensors"));
        var ex = Assert.Throws<ArgumentException>(() => f.ReadFloat("a", new float[5]));
        Assert.That(ex!.Message, Does.Contain("'a'").And.Contain("[2,3]"));
        Assert.That(Assert.Throws<ArgumentException>(() => f.GetInfo("nope"))!.Message, Does.Contain("nope"));
    }

    [Test]
    public void F16MatchesTorchIncludingSubnormalsInfinitiesAndSignedZero()
    {
        using var f = SafetensorsFile.Open(File("f16.safetensors"));
        uint[] expected = ReadBin<uint>("f16_expected_f32.bin");
        var got = new float[f.GetInfo("h").Shape.Numel];
        Assert.That(got, Has.Length.EqualTo(expected.Length));
        f.ReadFloat("h", got);
        for (int i = 0; i < got.Length; i++)
        {
            float want = BitConverter.UInt32BitsToSingle(expected[i]);
            // NaN payload propagation differs between conversion instructions; class and sign must agree.
            if (float.IsNaN(want))
                Assert.That(float.IsNaN(got[i]) && float.IsNegative(got[i]) == float.IsNegative(want), $"element {i}: NaN expected");
            else
                Assert.That(BitConverter.SingleToUInt32Bits(got[i]), Is.EqualTo(expected[i]), $"element {i}");
        }
        Assert.That(BitConverter.SingleToUInt32Bits(got[1]), Is.EqualTo(0x80000000u), "negative zero");
        Assert.That(got[2], Is.EqualTo(MathF.Pow(2, -24)), "smallest subnormal");
        Assert.That(got[9], Is.EqualTo(float.PositiveInfinity));
    }

    [Test]
    public void Bf16MatchesTorchBitForBitIncludingNaNPayloads()
    {
        using var f = SafetensorsFile.Open(File("bf16.safetensors"));
        uint[] expected = ReadBin<uint>("bf16_expected_f32.bin");
        var got = new float[f.GetInfo("w").Shape.Numel];
        Assert.That(got, Has.Length.EqualTo(expected.Length));
        f.ReadFloat("w", got);
        Assert.That(got.Select(BitConverter.SingleToUInt32Bits), Is.EqualTo(expected));

        using var t = SafetensorsFile.Open(File("bf16_torch.safetensors"));
        var w = new float[12];
        t.ReadFloat("w", w);
        Assert.That(w.Select(BitConverter.SingleToUInt32Bits), Is.EqualTo(ReadBin<uint>("bf16_torch_expected_f32.bin")));
    }

    /// <summary>
    /// A symbolic link (how the Hugging Face cache lays out a model's files) opens as the file it reaches; its own
    /// length, that of its target's name, once made it look truncated.
    /// </summary>
    [Test]
    public void SymbolicLinkOpensAsTheFileItReaches()
    {
        using var dir = new Scratch();
        string link = dir["linked.safetensors"];
        System.IO.File.CreateSymbolicLink(link, Path.GetFullPath(File("f32.safetensors")));
        using var f = SafetensorsFile.Open(link);
        Assert.That(f.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "b", "a", "scalar", "empty", "ids64", "ids32" }));
        var scalar = new float[1];
        f.ReadFloat("scalar", scalar);
        Assert.That(scalar[0], Is.EqualTo(3.25f));
    }

    [TestCase("truncated", "shorter than the 8-byte header length")]
    [TestCase("header_past_eof", "header length 1000 runs past the end of the file")]
    [TestCase("header_too_large", "exceeds the 100000000-byte limit")]
    [TestCase("bad_json", "header is not valid JSON")]
    [TestCase("not_object", "does not start with '{'")]
    [TestCase("trailing_garbage", "bytes after the JSON object")]
    [TestCase("offsets_out_of_range", "tensor 'a': data_offsets [0,8] run past the end of the 4-byte data buffer")]
    [TestCase("overlapping", "tensor 'b' at [4,12] overlaps tensor 'a'")]
    [TestCase("gap", "tensor 'b' starts at 12, leaving a gap of 4 bytes")]
    [TestCase("incomplete_buffer", "tensors cover 8 bytes but the data buffer has 12")]
    [TestCase("unknown_dtype", "tensor 'a': unsupported dtype 'Q7'")]
    [TestCase("unsupported_dtype", "tensor 'a': unsupported dtype 'F64'")]
    [TestCase("size_mismatch", "tensor 'a': 8 bytes at [0,8] but F32 [3] needs 12")]
    [TestCase("negative_dim", "tensor 'a': shape [-2] has an entry that is not a non-negative integer")]
    [TestCase("duplicate_key", "duplicate key 'a'")]
    [TestCase("metadata_not_string", "__metadata__ value of 'k' is not a string")]
    public void MalformedFileIsRejectedWithOneLineNamingFileAndTensor(string name, string message)
    {
        string path = File("malformed", name + ".safetensors");
        var ex = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path));
        Assert.That(ex!.Message, Does.StartWith(path + ": ").And.Contain(message).And.Not.Contain("\n"));
    }

    /// <summary>A file of one F32 [1] tensor 'a' (value 2) under the given header bytes.</summary>
    private static string Handmade(Scratch dir, byte[] header)
    {
        string path = dir["handmade.safetensors"];
        System.IO.File.WriteAllBytes(path, [.. BitConverter.GetBytes((long)header.Length), .. header, .. BitConverter.GetBytes(2f)]);
        return path;
    }

    private const string Entry = "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}";

    [TestCase("{\"__metadata__\":{\"k\":\"\\ud800\"}," + Entry + "}", "header holds a string that is not valid Unicode")]
    [TestCase("{\"a\":{\"dtype\":\"I32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "tensor 'a': duplicate field 'dtype'")]
    public void HeaderTextTheReferenceRefusesIsOneLineNamingTheFile(string header, string message)
    {
        using var dir = new Scratch();
        string path = Handmade(dir, System.Text.Encoding.UTF8.GetBytes(header));
        var ex = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path));
        Assert.That(ex!.Message, Does.StartWith(path + ": ").And.Contain(message).And.Not.Contain("\n"));
    }

    [Test]
    public void HeaderBytesThatAreNotUtf8AreOneLineNamingTheFile()
    {
        using var dir = new Scratch();
        byte[] header = System.Text.Encoding.UTF8.GetBytes("{\"__metadata__\":{\"k\":\"v?\"}," + Entry + "}");
        header[Array.IndexOf(header, (byte)'?')] = 0xFF;
        string path = Handmade(dir, header);
        Assert.That(Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path))!.Message, Is.EqualTo(path + ": header is not valid UTF-8"));
    }

    [Test]
    public void NullMetadataIsNoMetadataAsTheReferenceReadsIt()
    {
        using var dir = new Scratch();
        using var f = SafetensorsFile.Open(Handmade(dir, System.Text.Encoding.UTF8.GetBytes("{\"__metadata__\":null," + Entry + "}")));
        Assert.That(f.Metadata, Is.Empty);
        var a = new float[1];
        f.ReadFloat("a", a);
        Assert.That(a, Is.EqualTo(new[] { 2f }));
    }

    [Test]
    public void AnIndexWithAByteOrderMarkOpensAndABrokenStringInItIsNamed()
    {
        using var dir = new Scratch();
        System.IO.File.Copy(File("f32.safetensors"), dir["one.safetensors"]);
        string index = dir[CheckpointReader.IndexFileName];
        System.IO.File.WriteAllText(index, "{\"weight_map\": {\"a\": \"one.safetensors\"}}", new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: true));
        Assert.That(System.IO.File.ReadAllBytes(index)[..3], Is.EqualTo(new byte[] { 0xEF, 0xBB, 0xBF }));
        using (var r = CheckpointReader.Open(dir.Path))
            Assert.That(r.Names, Is.EqualTo(new[] { "a" }));
        System.IO.File.WriteAllText(index, "{\"weight_map\": {\"a\\udc00\": \"one.safetensors\"}}");
        Assert.That(Assert.Throws<InvalidDataException>(() => CheckpointReader.Open(dir.Path))!.Message,
                    Does.StartWith(index + ": a string is not valid Unicode"));
    }

    [Test]
    public void MissingFileIsFileNotFound() =>
        Assert.Throws<FileNotFoundException>(() => SafetensorsFile.Open(File("no_such.safetensors")));

    [Test]
    public void ShardedCheckpointOpensShardsLazilyAndReadsEveryTensor()
    {
        using var r = CheckpointReader.Open(File("sharded"));
        string[] names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "vm_head.weight"];
        Assert.That(r.Names, Is.EquivalentTo(names));
        Assert.That(r.Metadata["total_size"], Is.EqualTo(((12 + 3 + 12 + 12) * 4).ToString()));
        for (int k = 0; k < names.Length; k++)
        {
            float[] got = r.ReadFloat(names[k]);
            Assert.That(got, Is.EqualTo(Enumerable.Range(0, got.Length).Select(i => (float)(k * 100 + i))), names[k]);
        }
        Assert.That(r.GetInfo("lm_head.weight").Shape, Is.EqualTo(new Shape(4, 3)));
        Assert.That(r.ParameterCountsByModule()["vm_head"], Is.EqualTo(12));
        Assert.That(r.ParameterCountsByDType()[SafetensorsDType.F32], Is.EqualTo(39));
    }

    [Test]
    public void SingleFileCheckpointOpensByFileOrDirectory()
    {
        using var r = CheckpointReader.Open(File("f32.safetensors"));
        Assert.That(r.Names, Has.Count.EqualTo(6));
        Assert.That(r.Metadata["format"], Is.EqualTo("pt"));
        Assert.That(Assert.Throws<FileNotFoundException>(() => CheckpointReader.Open(File("malformed")))!.Message,
            Does.Contain("model.safetensors"));
    }

    [Test]
    public void IndexNamingAMissingShardOrAPathOutsideTheDirectoryIsRejected()
    {
        var missing = Assert.Throws<FileNotFoundException>(() => CheckpointReader.Open(File("sharded_missing_shard")));
        Assert.That(missing!.Message, Does.Contain("model-00001-of-00001.safetensors"));
        var escape = Assert.Throws<InvalidDataException>(() => CheckpointReader.Open(File("sharded_path_escape")));
        Assert.That(escape!.Message, Does.Contain("'a' is not a plain shard file name"));
    }

    [Test]
    public void IndexPointingAtTheWrongShardIsReportedOnRead()
    {
        using var dir = new Scratch();
        System.IO.File.Copy(File("f32.safetensors"), dir["one.safetensors"]);
        System.IO.File.WriteAllText(dir[CheckpointReader.IndexFileName], """{"weight_map": {"a": "one.safetensors", "ghost": "one.safetensors"}}""");
        using var r = CheckpointReader.Open(dir.Path);
        Assert.That(r.ReadFloat("a"), Has.Length.EqualTo(6));
        var ex = Assert.Throws<InvalidDataException>(() => r.GetInfo("ghost"));
        Assert.That(ex!.Message, Does.Contain("'ghost'").And.Contain("one.safetensors"));
    }
}
