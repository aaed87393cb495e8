using System.Text.Json;
using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Model.Checkpoints;
using static VwLmm.Tests.Model.Checkpoints.CheckpointFixtures;

namespace VwLmm.Tests.Model.Checkpoints;

public class SafetensorsWriterTests
{
    private static float[] Values(int n, int seed)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(rng.NextDouble() * 4 - 2);
        return v;
    }

    [Test]
    public void F32RoundTripIsBitIdenticalWithMetadataAndPaddedHeader()
    {
        using var dir = new Scratch();
        float[] special = [0f, -0f, float.Epsilon, -float.Epsilon, float.MaxValue, float.PositiveInfinity, float.NegativeInfinity,
            BitConverter.UInt32BitsToSingle(0x7FC12345), BitConverter.UInt32BitsToSingle(0xFF812345), 1e-40f];
        float[] w = Values(35, 1);
        SafetensorsEntry[] tensors =
        [
            new("w", new Shape(5, 7), w),
            new("special", new Shape(special.Length), special),
            new("scalar", new Shape(), new[] { 2.5f }),
            new("empty", new Shape(0, 3), Array.Empty<float>()),
        ];
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["step"] = "12" };
        SafetensorsWriter.Write(dir["x.safetensors"], tensors, meta);

        byte[] raw = System.IO.File.ReadAllBytes(dir["x.safetensors"]);
        long headerLength = BitConverter.ToInt64(raw, 0);
        Assert.That((8 + headerLength) % 8, Is.Zero, "data buffer must start 8-byte aligned");
        using (var header = JsonDocument.Parse(raw.AsMemory(8, (int)headerLength)))
        {
            var e = header.RootElement.GetProperty("special");
            Assert.That(e.GetProperty("dtype").GetString(), Is.EqualTo("F32"));
            Assert.That(e.GetProperty("data_offsets")[0].GetInt64(), Is.EqualTo(35 * 4));
            Assert.That(header.RootElement.GetProperty("__metadata__").GetProperty("step").GetString(), Is.EqualTo("12"));
        }

        using var f = SafetensorsFile.Open(dir["x.safetensors"]);
        Assert.That(f.Metadata, Is.EquivalentTo(meta));
        Assert.That(f.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "w", "special", "scalar", "empty" }));
        foreach (var t in tensors)
        {
            var got = new float[t.Data.Length];
            f.ReadFloat(t.Name, got);
            Assert.That(got.Select(BitConverter.SingleToUInt32Bits), Is.EqualTo(t.Data.ToArray().Select(BitConverter.SingleToUInt32Bits)), t.Name);
            Assert.That(f.GetInfo(t.Name).Shape, Is.EqualTo(t.Shape));
        }
        Assert.That(Directory.GetFiles(dir.Path), Has.Length.EqualTo(1), "no temporary file may remain");
    }

    [Test]
    public void Bf16RoundingMatchesTorch()
    {
        using var dir = new Scratch();
        float[] src = ReadBin<float>("bf16_round_src_f32.bin");
        ushort[] expected = ReadBin<ushort>("bf16_round_expected.bin");
        SafetensorsWriter.Write(dir["b.safetensors"], [new("x", new Shape(src.Length), src)], dtype: SafetensorsDType.BF16);
        using var f = SafetensorsFile.Open(dir["b.safetensors"]);
        Assert.That(f.GetInfo("x").DType, Is.EqualTo(SafetensorsDType.BF16));
        ushort[] got = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(f.GetBytes("x")).ToArray();
        for (int i = 0; i < src.Length; i++)
        {
            string what = $"element {i}: src bits 0x{BitConverter.SingleToUInt32Bits(src[i]):X8}";
            // torch's NaN encoding depends on its code path (0x7FC0 scalar, 0xFFFF vectorised): only NaN-ness is checked.
            if (float.IsNaN(src[i])) Assert.That((got[i] & 0x7F80) == 0x7F80 && (got[i] & 0x7F) != 0, what);
            else Assert.That(got[i], Is.EqualTo(expected[i]), what);
        }
    }

    [Test]
    public void ShardedCheckpointSplitsByMaxShardSizeAndReadsBack()
    {
        using var dir = new Scratch();
        // 40, 40, 100 (alone: larger than the limit), 20, 20 bytes with a 64-byte limit → [a],[b],[c],[d,e]
        SafetensorsEntry[] tensors =
        [
            new("a", new Shape(10), Values(10, 1)), new("b", new Shape(2, 5), Values(10, 2)), new("c", new Shape(25), Values(25, 3)),
            new("d", new Shape(5), Values(5, 4)), new("e", new Shape(5), Values(5, 5)),
        ];
        var files = SafetensorsWriter.WriteCheckpoint(dir.Path, tensors, maxShardBytes: 64);
        Assert.That(files.Select(Path.GetFileName), Is.EqualTo(new[]
        {
            "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors",
            "model-00004-of-00004.safetensors", "model.safetensors.index.json",
        }));
        using (var index = JsonDocument.Parse(System.IO.File.ReadAllText(dir[CheckpointReader.IndexFileName])))
        {
            Assert.That(index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64(), Is.EqualTo(55 * 4));
            Assert.That(index.RootElement.GetProperty("weight_map").GetProperty("e").GetString(), Is.EqualTo("model-00004-of-00004.safetensors"));
        }
        using (var r = CheckpointReader.Open(dir.Path))
        {
            Assert.That(r.Names, Is.EqualTo(new[] { "a", "b", "c", "d", "e" }));
            foreach (var t in tensors) Assert.That(r.ReadFloat(t.Name), Is.EqualTo(t.Data.ToArray()), t.Name);
        }

        // Fewer shards over more: the index names the new ones, and the shards it no longer names are gone.
        SafetensorsWriter.WriteCheckpoint(dir.Path, tensors, maxShardBytes: 100);
        Assert.That(Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order(), Is.EqualTo(new[]
        {
            "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors",
            "model.safetensors.index.json",
        }));
        using (var r = CheckpointReader.Open(dir.Path))
            foreach (var t in tensors) Assert.That(r.ReadFloat(t.Name), Is.EqualTo(t.Data.ToArray()), t.Name);

        // Rewriting as one file removes the now-stale index and its shards, so readers cannot pick up the old shards.
        SafetensorsWriter.WriteCheckpoint(dir.Path, tensors[..2]);
        Assert.That(Directory.GetFiles(dir.Path).Select(Path.GetFileName), Is.EqualTo(new[] { CheckpointReader.SingleFileName }));
        var single = CheckpointReader.Open(dir.Path);
        Assert.That(single.Path, Does.EndWith(CheckpointReader.SingleFileName));
        Assert.That(single.Names, Is.EqualTo(new[] { "a", "b" }));
        single.Dispose();
        Assert.Throws<ObjectDisposedException>(() => single.ReadFloat("a"), "a disposed reader maps nothing again");
    }

    [Test]
    public void FailedWriteLeavesThePreviousFileAndNoTemporary()
    {
        using var dir = new Scratch();
        string path = dir["m.safetensors"];
        SafetensorsWriter.Write(path, [new("a", new Shape(2), new[] { 1f, 2f })]);
        byte[] before = System.IO.File.ReadAllBytes(path);
        Assert.Throws<IOException>(() => AtomicFile.Write(path, s =>
        {
            s.Write(new byte[100]);
            throw new IOException("disk full");
        }));
        Assert.That(System.IO.File.ReadAllBytes(path), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(dir.Path), Has.Length.EqualTo(1));
    }

    [Test]
    public void InvalidEntriesAreRejectedBeforeAnythingIsWritten()
    {
        using var dir = new Scratch();
        string path = dir["bad.safetensors"];
        Assert.That(Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("a", new Shape(3), new float[2])]))!.Message,
            Does.Contain("'a'").And.Contain("needs 3 values, got 2"));
        Assert.That(Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path,
            [new("a", new Shape(1), new float[1]), new("a", new Shape(1), new float[1])]))!.Message, Does.Contain("duplicate tensor 'a'"));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("__metadata__", new Shape(1), new float[1])]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("a", new Shape(1), new float[1])], dtype: SafetensorsDType.F16));
        Assert.That(Directory.GetFiles(dir.Path), Is.Empty);
    }
}
