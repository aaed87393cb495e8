using NUnit.Framework;
using System.Text.Json;
using VwLmm.Data;
using VwLmm.Data.Images;

namespace VwLmm.Tests.Data.Images;

public class ClipPreprocessorTests
{
    private static IEnumerable<TestCaseData> ResizeCases() => ImageFixtures.Cases("resize");
    private static IEnumerable<TestCaseData> ClipCases() => ImageFixtures.Cases("clip");

    private static RgbImage Source(JsonElement entry) => ImageCodec.Decode(ImageFixtures.PathOf("src", entry.GetProperty("src").GetString()!));

    /// <summary>Byte-identical to PIL's Image.resize(BICUBIC), up- and down-scaling, both passes and one-pass cases.</summary>
    [TestCaseSource(nameof(ResizeCases))]
    public void BicubicResizeMatchesPil(JsonElement entry)
    {
        var resized = PilBicubic.Resize(Source(entry), entry.GetProperty("width").GetInt32(), entry.GetProperty("height").GetInt32());
        Assert.That(resized.Pixels, Is.EqualTo(File.ReadAllBytes(ImageFixtures.PathOf("resize", entry.GetProperty("file").GetString()!))));
    }

    /// <summary>Bit-identical to the numpy re-implementation of CLIPImageProcessor over PIL's resize (the brief allows
    /// 1/255; float32 rescale/normalise in numpy's order makes exact equality reachable).</summary>
    [TestCaseSource(nameof(ClipCases))]
    public void ProcessMatchesClipImageProcessor(JsonElement entry)
    {
        int size = entry.GetProperty("size").GetInt32();
        var pre = new ClipPreprocessor(new ClipPreprocessorOptions { Size = size, Pad = entry.GetProperty("pad").GetBoolean() });
        float[] actual = pre.Process(Source(entry));
        var (expected, shape) = Npy.Read<float>(ImageFixtures.PathOf("clip", entry.GetProperty("file").GetString()!));
        Assert.That(shape, Is.EqualTo(new[] { 3, size, size }));
        Assert.That(actual, Is.EqualTo(expected));
    }

    [Test]
    public void CroppedResizeEqualsWindowOfFullResize()
    {
        var source = new RgbImage(29, 13);
        new Random(3).NextBytes(source.Pixels);
        foreach (var (w, h) in new[] { (61, 31), (11, 40), (29, 7), (9, 13) })
        {
            var full = PilBicubic.Resize(source, w, h);
            int left = w / 3, top = h / 4, cw = w - left - 1, ch = h - top - 2;
            var window = PilBicubic.Resize(source, w, h, left, top, cw, ch);
            for (int y = 0; y < ch; y++)
                Assert.That(window.Pixels.AsSpan(y * cw * 3, cw * 3).ToArray(),
                            Is.EqualTo(full.Pixels.AsSpan(((top + y) * w + left) * 3, cw * 3).ToArray()), $"{w}x{h} row {y}");
        }
    }

    [TestCase(100, 7, 24, 342, 24)]   // 24·100/7 = 342.86 → 342 (truncated, not rounded)
    [TestCase(17, 53, 32, 32, 99)]    // 32·53/17 = 99.76 → 99
    [TestCase(640, 480, 336, 448, 336)]
    [TestCase(336, 500, 336, 336, 500)]
    public void ResizeTargetTruncatesTheLongSide(int w, int h, int s, int ew, int eh) =>
        Assert.That(ClipPreprocessor.ResizeTarget(w, h, s), Is.EqualTo((ew, eh)));

    [Test]
    public void ExpandToSquareCentresWithIntegerDivision()
    {
        var image = new RgbImage(2, 5);
        image.Pixels.AsSpan().Fill(9);
        var square = ClipPreprocessor.ExpandToSquare(image, (122, 116, 104));
        Assert.That((square.Width, square.Height), Is.EqualTo((5, 5)));
        for (int y = 0; y < 5; y++)
            for (int x = 0; x < 5; x++)
                Assert.That(square.Pixel(x, y).ToArray(), Is.EqualTo(x is 1 or 2 ? new byte[] { 9, 9, 9 } : new byte[] { 122, 116, 104 }), $"({x},{y})");
    }

    [Test]
    public void ASquareTooLargeToHoldIsNamedWithItsSize()
    {
        var strip = new RgbImage(30_000, 1);
        Assert.That(Assert.Throws<InvalidDataException>(() => ClipPreprocessor.ExpandToSquare(strip, (0, 0, 0)))!.Message,
                    Does.StartWith("a 30000x1 image padded to a square (30000x30000) needs more than"));
    }

    [Test]
    public void DefaultsAreLlava15()
    {
        var pre = new ClipPreprocessor();
        Assert.That((pre.Size, pre.Options.Pad, pre.PadColor, pre.OutputLength), Is.EqualTo((336, true, ((byte)122, (byte)116, (byte)104), 3 * 336 * 336)));
    }

    [Test]
    public void NormalisationMatchesDoubleFormulaWithinFloatRounding()
    {
        var image = new RgbImage(4, 4);
        for (int i = 0; i < image.Pixels.Length; i++) image.Pixels[i] = (byte)(i * 5);
        var opts = new ClipPreprocessorOptions { Size = 4, Pad = false };
        float[] chw = new ClipPreprocessor(opts).Process(image);
        for (int p = 0; p < 16; p++)
            for (int c = 0; c < 3; c++)
            {
                double expected = (image.Pixels[3 * p + c] / 255.0 - opts.Mean[c]) / opts.Std[c];
                Assert.That(chw[c * 16 + p], Is.EqualTo(expected).Within(1e-6));
            }
    }

    [Test]
    public void BadArgumentsThrow()
    {
        Assert.Throws<ArgumentException>(() => new ClipPreprocessor(new ClipPreprocessorOptions { Size = 0 }));
        Assert.Throws<ArgumentException>(() => new ClipPreprocessor(new ClipPreprocessorOptions { Mean = [0.5, 0.5] }));
        Assert.Throws<ArgumentException>(() => new ClipPreprocessor(new ClipPreprocessorOptions { Std = [0.5, 0, 0.5] }));
        var pre = new ClipPreprocessor(new ClipPreprocessorOptions { Size = 8 });
        Assert.Throws<ArgumentException>(() => pre.Process(new RgbImage(3, 3), new float[3 * 8 * 8 - 1]));
        Assert.Throws<ArgumentException>(() => PilBicubic.Resize(new RgbImage(3, 3), 4, 4, 1, 1, 4, 4));
    }
}
