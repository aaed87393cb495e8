namespace VwLmm.Data.Images;

/// <summary>An 8-bit RGB image, row-major, interleaved (R,G,B per pixel).</summary>
public sealed class RgbImage
{
    public RgbImage(int width, int height, byte[] pixels)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"image size {width}x{height} must be positive");
        if (pixels.Length != checked(width * height * 3))
            throw new ArgumentException($"image {width}x{height} needs {width * height * 3} bytes, got {pixels.Length}");
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    public RgbImage(int width, int height) : this(width, height, new byte[checked(width * height * 3)]) { }

    public int Width { get; }
    public int Height { get; }
    public byte[] Pixels { get; }

    public Span<byte> Pixel(int x, int y) => Pixels.AsSpan((y * Width + x) * 3, 3);
}
