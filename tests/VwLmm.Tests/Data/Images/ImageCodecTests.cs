using NUnit.Framework;
using System.Text.Json;
using VwLmm.Data.Images;

namespace VwLmm.Tests.Data.Images;

public class ImageCodecTests
{
    private static IEnumerable<TestCaseData> DecodeCases() => ImageFixtures.Cases("decode");

    /// <summary>Pixels equal PIL's Image.open(f).convert("RGB") (libjpeg-turbo 2.1.5 on both sides, so JPEG is exact
    /// too); manifest max_abs_diff is 1 only for 16-bit PNG with alpha, 0 everywhere else.</summary>
    [TestCaseSource(nameof(DecodeCases))]
    public void DecodeMatchesPil(JsonElement entry)
    {
        string file = entry.GetProperty("file").GetString()!;
        var image = ImageCodec.Decode(ImageFixtures.PathOf("src", file));
        byte[] expected = File.ReadAllBytes(ImageFixtures.PathOf("rgb", file + ".rgb"));
        Assert.That((image.Width, image.Height), Is.EqualTo((entry.GetProperty("width").GetInt32(), entry.GetProperty("height").GetInt32())));
        int worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(image.Pixels[i] - expected[i]));
        Assert.That(worst, Is.LessThanOrEqualTo(entry.GetProperty("max_abs_diff").GetInt32()));
    }

    [Test]
    public void PngRoundTripIsLossless()
    {
        var rng = new Random(5);
        var image = new RgbImage(37, 11);
        rng.NextBytes(image.Pixels);
        byte[] png = ImageCodec.EncodePng(image);
        var back = ImageCodec.Decode(png, "memory");
        Assert.That((back.Width, back.Height), Is.EqualTo((37, 11)));
        Assert.That(back.Pixels, Is.EqualTo(image.Pixels));
    }

    [Test]
    public void SavePngWritesADecodableFileAndNoTempFiles()
    {
        string dir = Directory.CreateTempSubdirectory("vwlmm-png").FullName;
        try
        {
            var image = ImageCodec.Decode(ImageFixtures.PathOf("src", "rgb_40x30.png"));
            string path = Path.Combine(dir, "out.png");
            ImageCodec.SavePng(image, path);
            ImageCodec.SavePng(image, path);
            Assert.That(ImageCodec.Decode(path).Pixels, Is.EqualTo(image.Pixels));
            Assert.That(Directory.GetFiles(dir), Is.EqualTo(new[] { path }));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void SavePngCreatesAMissingDirectory()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"vwlmm-none-{Guid.NewGuid():N}");
        string path = Path.Combine(dir, "out.png");
        try
        {
            ImageCodec.SavePng(new RgbImage(2, 2), path);
            Assert.That(ImageCodec.Decode(path).Pixels, Is.EqualTo(new byte[12]));
            Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(1), "no temporary file may be left behind");
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void MissingFileThrowsFileNotFoundNamingIt()
    {
        string path = Path.Combine(ImageFixtures.Dir, "no-such-dir", "missing.png");
        var e = Assert.Throws<FileNotFoundException>(() => ImageCodec.Decode(path));
        Assert.That(e!.Message, Does.Contain(path));
    }

    private static IEnumerable<TestCaseData> TruncationCases()
    {
        foreach (string file in new[] { "rgb_40x30.png", "palette_100x7.png", "rgb16_23x9.png", "rgb420_40x30.jpg", "progressive_150x97.jpg", "cmyk_24x18.jpg" })
        {
            int length = (int)new FileInfo(ImageFixtures.PathOf("src", file)).Length;
            // Inside the signature, the header, the image data, the last CRC before IEND / the EOI marker.
            int last = file.EndsWith(".png") ? length - 14 : length - 1;
            foreach (int cut in new[] { 4, 20, 40, length / 3, length / 2, last })
                yield return new TestCaseData(file, cut).SetArgDisplayNames(file, cut.ToString());
        }
    }

    [TestCaseSource(nameof(TruncationCases))]
    public void TruncatedFileThrowsInvalidData(string file, int cut)
    {
        byte[] bytes = File.ReadAllBytes(ImageFixtures.PathOf("src", file));
        string path = WriteTemp(bytes.AsSpan(0, cut).ToArray(), Path.GetExtension(file));
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => ImageCodec.Decode(path));
            Assert.That(e!.Message, Does.StartWith(path + ": "));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// A file cut inside its signature is a truncated image of that kind, and a JPEG cut in its header (which libjpeg
    /// reads on past as if it ended there, and calls bogus or tables-only) is said to be truncated.
    /// </summary>
    [TestCase("rgb420_40x30.jpg", 2, "truncated JPEG file (2 bytes)")]
    [TestCase("rgb_40x30.png", 3, "truncated PNG file (3 bytes)")]
    [TestCase("rgb420_40x30.jpg", 3, "truncated JPEG file: it ends in its header, before the image data")]
    [TestCase("grey_31x17.jpg", 24, "truncated JPEG file: it ends in its header, before the image data")]
    [TestCase("progressive_150x97.jpg", 100, "truncated JPEG file: it ends in its header, before the image data")]
    public void AFileCutBeforeItsImageDataIsSaidToBeTruncated(string file, int cut, string message)
    {
        byte[] bytes = File.ReadAllBytes(ImageFixtures.PathOf("src", file));
        var e = Assert.Throws<InvalidDataException>(() => ImageCodec.Decode(bytes.AsSpan(0, cut), "cut"));
        Assert.That(e!.Message, Is.EqualTo("cut: " + message));
    }

    [Test]
    public void AJpegOfTablesOnlyHoldsNoImage()
    {
        var e = Assert.Throws<InvalidDataException>(() => ImageCodec.Decode((byte[])[0xFF, 0xD8, 0xFF, 0xD9], "tables.jpg"));
        Assert.That(e!.Message, Is.EqualTo("tables.jpg: the JPEG file holds no image: no frame header (SOF), tables only"));
    }

    /// <summary>libjpeg warns of stray bytes before a marker and decodes on; PIL ignores the warning and so do we.</summary>
    [TestCase("rgb420_40x30.jpg")]
    [TestCase("progressive_150x97.jpg")]
    [TestCase("cmyk_24x18.jpg")]
    public void JpegWithStrayBytesBeforeEoiDecodesAsTheCleanFile(string file)
    {
        byte[] bytes = File.ReadAllBytes(ImageFixtures.PathOf("src", file));
        Assert.That(bytes[^2..], Is.EqualTo(new byte[] { 0xFF, 0xD9 }));
        byte[] stray = [.. bytes[..^2], 0x12, 0x34, .. bytes[^2..]];
        Assert.That(ImageCodec.Decode(stray, "stray.jpg").Pixels, Is.EqualTo(ImageCodec.Decode(bytes, file).Pixels));
    }

    /// <summary>libpng's simplified reader stops after the last row, like PIL: a lost IEND costs no pixels.</summary>
    [Test]
    public void PngCutInsideIendStillDecodesFully()
    {
        byte[] bytes = File.ReadAllBytes(ImageFixtures.PathOf("src", "rgb_40x30.png"));
        var whole = ImageCodec.Decode(bytes, "whole.png");
        var cut = ImageCodec.Decode(bytes.AsSpan(0, bytes.Length - 6), "cut.png");
        Assert.That(cut.Pixels, Is.EqualTo(whole.Pixels));
    }

    [Test]
    public void CorruptPngDataThrowsInvalidData()
    {
        byte[] bytes = File.ReadAllBytes(ImageFixtures.PathOf("src", "rgb_40x30.png"));
        bytes[bytes.Length / 2] ^= 0x55;  // inside IDAT: the chunk CRC no longer matches
        var e = Assert.Throws<InvalidDataException>(() => ImageCodec.Decode(bytes, "corrupt.png"));
        Assert.That(e!.Message, Does.StartWith("corrupt.png: "));
    }

    private static IEnumerable<TestCaseData> GarbageCases()
    {
        var random = new byte[300];
        new Random(7).NextBytes(random);
        random[0] = 0x42;
        yield return new TestCaseData(random, "not a PNG or JPEG").SetArgDisplayNames("random");
        yield return new TestCaseData("hello, this is text\n"u8.ToArray(), "not a PNG or JPEG").SetArgDisplayNames("text");
        yield return new TestCaseData(Array.Empty<byte>(), "empty file").SetArgDisplayNames("empty");
        byte[] pngHead = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A, .. random];
        yield return new TestCaseData(pngHead, "").SetArgDisplayNames("png-signature-then-random");
        byte[] jpegHead = [0xFF, 0xD8, 0xFF, .. random];
        yield return new TestCaseData(jpegHead, "").SetArgDisplayNames("jpeg-signature-then-random");
    }

    [TestCaseSource(nameof(GarbageCases))]
    public void NonImageThrowsInvalidData(byte[] bytes, string reason)
    {
        string path = WriteTemp(bytes, ".png");
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => ImageCodec.Decode(path));
            Assert.That(e!.Message, Does.StartWith(path + ": ").And.Contain(reason));
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static string WriteTemp(byte[] bytes, string extension)
    {
        string path = Path.Combine(Path.GetTempPath(), $"vwlmm-bad-{Guid.NewGuid():N}{extension}");
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
