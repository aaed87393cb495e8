using NUnit.Framework;
using System.Text;
using System.Text.Json;
using VwLmm.Data;

namespace VwLmm.Tests.Data.Images;

public class NpyTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("vwlmm-npy").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private static IEnumerable<TestCaseData> NumpyCases() => ImageFixtures.Cases("npy");

    [Test]
    public void ReadsFromAPipe()
    {
        string file = Path.Combine(_dir, "a.npy"), pipe = Fifo.Make(Path.Combine(_dir, "pipe.npy"));
        float[] values = [1.5f, -2, 3, 0.25f, 5, 6];
        Npy.Write(file, values, [2, 3]);
        var writer = Task.Run(() => File.WriteAllBytes(pipe, File.ReadAllBytes(file)));
        Assert.That(Npy.Read<float>(pipe), Is.EqualTo((values, new[] { 2, 3 })));
        Assert.That(writer.Wait(TimeSpan.FromSeconds(30)));
    }

    [TestCaseSource(nameof(NumpyCases))]
    public void ReadsArraysWrittenByNumpy(JsonElement entry)
    {
        string path = ImageFixtures.PathOf("npy", entry.GetProperty("file").GetString()!);
        int[] shape = entry.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var values = entry.GetProperty("values").EnumerateArray();
        switch (Npy.ReadHeader(path).Descr)
        {
            case "<i4":
                Assert.That(Npy.Read<int>(path), Is.EqualTo((values.Select(v => v.GetInt32()).ToArray(), shape)));
                break;
            case "<i8":
                Assert.That(Npy.Read<long>(path), Is.EqualTo((values.Select(v => v.GetInt64()).ToArray(), shape)));
                break;
            default:
                Assert.That(Npy.Read<float>(path), Is.EqualTo((values.Select(v => v.GetSingle()).ToArray(), shape)));
                break;
        }
    }

    /// <summary>Our header layout (key order, spacing, 64-byte padding) is numpy 1.24's, byte for byte.</summary>
    [Test]
    public void WritesTheSameBytesAsNumpy()
    {
        string numpyFile = ImageFixtures.PathOf("clip", "rgb_40x30.png.s24.npy");
        var (data, shape) = Npy.Read<float>(numpyFile);
        string ours = Path.Combine(_dir, "ours.npy");
        Npy.Write<float>(ours, data, shape);
        Assert.That(File.ReadAllBytes(ours), Is.EqualTo(File.ReadAllBytes(numpyFile)));
        string ints = Path.Combine(_dir, "ints.npy");
        var (i4, i4Shape) = Npy.Read<int>(ImageFixtures.PathOf("npy", "i4_2x3x4.npy"));
        Npy.Write<int>(ints, i4, i4Shape);
        Assert.That(File.ReadAllBytes(ints), Is.EqualTo(File.ReadAllBytes(ImageFixtures.PathOf("npy", "i4_2x3x4.npy"))));
    }

    [Test]
    public void RoundTripsEveryTypeAndRank()
    {
        RoundTrip(new[] { 1.5f, -2f, float.MaxValue, float.Epsilon, float.NaN, 0f }, 2, 3);
        RoundTrip(new[] { int.MinValue, 7, int.MaxValue }, 3);
        RoundTrip(new[] { long.MinValue, 1L << 50, long.MaxValue, -1L }, 1, 2, 1, 2);
        RoundTrip(new[] { 42f });
        RoundTrip(Array.Empty<int>(), 4, 0, 2);
    }

    private void RoundTrip<T>(T[] data, params int[] shape) where T : unmanaged
    {
        string path = Path.Combine(_dir, $"rt{shape.Length}.npy");
        Npy.Write<T>(path, data, shape);
        var (back, backShape) = Npy.Read<T>(path);
        Assert.That(backShape, Is.EqualTo(shape));
        Assert.That(back, Is.EqualTo(data));
        Assert.That(Npy.ReadHeader(path).DataOffset % 64, Is.EqualTo(0));
        Assert.That(Directory.GetFiles(_dir, "*.tmp"), Is.Empty);
    }

    private static byte[] File10(string dict, int dataBytes, byte major = 1)
    {
        var header = Encoding.ASCII.GetBytes(dict + "\n");
        var bytes = new List<byte> { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', major, 0 };
        bytes.AddRange(major == 1 ? BitConverter.GetBytes((ushort)header.Length) : BitConverter.GetBytes((uint)header.Length));
        bytes.AddRange(header);
        bytes.AddRange(new byte[dataBytes]);
        return [.. bytes];
    }

    [Test]
    public void ReadsVersion2HeadersAndOtherKeyOrders()
    {
        string path = Path.Combine(_dir, "v2.npy");
        File.WriteAllBytes(path, File10("{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<i4\"}", 8, major: 2));
        Assert.That(Npy.Read<int>(path), Is.EqualTo((new[] { 0, 0 }, new[] { 2 })));
    }

    private static IEnumerable<TestCaseData> BadFiles()
    {
        yield return new TestCaseData(Array.Empty<byte>(), "no \\x93NUMPY magic").SetArgDisplayNames("empty");
        yield return new TestCaseData("hello world, not numpy"u8.ToArray(), "magic").SetArgDisplayNames("text");
        yield return new TestCaseData(File10("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20), "needs 24 data bytes").SetArgDisplayNames("short-data");
        yield return new TestCaseData(File10("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28), "the file has 28").SetArgDisplayNames("long-data");
        yield return new TestCaseData(File10("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8), "dtype '>f4'").SetArgDisplayNames("big-endian");
        yield return new TestCaseData(File10("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16), "dtype '<f8'").SetArgDisplayNames("float64");
        yield return new TestCaseData(File10("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8), "Fortran").SetArgDisplayNames("fortran");
        yield return new TestCaseData(File10("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", 8), "bad dimension").SetArgDisplayNames("bad-shape");
        yield return new TestCaseData(File10("{'descr': '<f4', 'shape': (2,), }", 8), "no 'fortran_order'").SetArgDisplayNames("missing-key");
        yield return new TestCaseData(File10("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8), "unexpected key").SetArgDisplayNames("extra-key");
        yield return new TestCaseData(File10("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 8), "expected '}'").SetArgDisplayNames("unterminated");
        yield return new TestCaseData(File10("{'descr': '<f4', 'fortran_order': False, 'shape': (2147483647, 2147483647, 4), }", 8), "too many elements").SetArgDisplayNames("huge");
        yield return new TestCaseData(File10("{'descr': '<f4'}", 0, major: 7), "version 7").SetArgDisplayNames("version");
        // Said before the array is allocated: 1.2 GB for a 70-byte file, and more than one array holds.
        yield return new TestCaseData(File10("{'descr': '<f4', 'fortran_order': False, 'shape': (300000000,), }", 8), "needs 1200000000 data bytes, the file has 8").SetArgDisplayNames("overstated");
        yield return new TestCaseData(File10("{'descr': '<f4', 'fortran_order': False, 'shape': (600000000,), }", 8), "needs 2400000000 bytes, more than one array holds").SetArgDisplayNames("over-2-GiB");
        byte[] cut = File10("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8);
        yield return new TestCaseData(cut[..30], "runs past the end").SetArgDisplayNames("truncated-header");
    }

    [TestCaseSource(nameof(BadFiles))]
    public void BadFilesThrowInvalidDataNamingTheFile(byte[] bytes, string reason)
    {
        string path = Path.Combine(_dir, "bad.npy");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => Npy.Read<float>(path));
        Assert.That(e!.Message, Does.StartWith(path + ": ").And.Contain(reason));
    }

    [Test]
    public void MissingFileAndBadWritesThrow()
    {
        string missing = Path.Combine(_dir, "nope", "x.npy");
        Assert.That(Assert.Throws<FileNotFoundException>(() => Npy.Read<float>(missing))!.Message, Does.Contain(missing));
        string path = Path.Combine(_dir, "w.npy");
        Assert.Throws<ArgumentException>(() => Npy.Write<float>(path, new float[5], [2, 3]));
        Assert.Throws<ArgumentException>(() => Npy.Write<double>(path, new double[1], [1]));
        Assert.Throws<ArgumentException>(() => Npy.Write<float>(path, new float[0], [-1]));
        Assert.That(Directory.GetFiles(_dir), Is.Empty);
    }
}
