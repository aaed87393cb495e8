namespace VwLmm.Data.Images;

/// <summary>
/// PIL's <c>Image.resize(size, Image.BICUBIC)</c> on RGB8, bit for bit (Pillow src/libImaging/Resample.c, checked
/// against Pillow 9.4): separable Keys cubic with a = −0.5, support 2 widened by the scale factor when shrinking,
/// taps normalised per output pixel and rounded to 22-bit fixed point; horizontal pass first, rounded and clipped to
/// uint8, then the vertical pass. A pass whose size does not change is skipped, as PIL does.
/// </summary>
public static class PilBicubic
{
    private const int PrecisionBits = 32 - 8 - 2;

    /// <summary>[H,W,3] → [height,width,3].</summary>
    public static RgbImage Resize(RgbImage source, int width, int height) => Resize(source, width, height, 0, 0, width, height);

    /// <summary>The window (left, top, cropWidth, cropHeight) of <c>Resize(source, width, height)</c>, computing only that
    /// window; every output pixel is the same as in the full resize. [H,W,3] → [cropHeight,cropWidth,3].</summary>
    public static RgbImage Resize(RgbImage source, int width, int height, int left, int top, int cropWidth, int cropHeight)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"resize target {width}x{height} must be positive");
        if (left < 0 || top < 0 || cropWidth <= 0 || cropHeight <= 0 || left + cropWidth > width || top + cropHeight > height)
            throw new ArgumentException($"crop {cropWidth}x{cropHeight} at ({left},{top}) is outside the {width}x{height} resize");

        Kernel? rows = height != source.Height ? new Kernel(source.Height, height, top, cropHeight) : null;
        int firstRow = rows?.First ?? top, rowCount = rows?.Span ?? cropHeight;
        byte[] mid = width != source.Width
            ? Horizontal(source, new Kernel(source.Width, width, left, cropWidth), firstRow, rowCount)
            : CopyWindow(source, left, firstRow, cropWidth, rowCount);
        return new RgbImage(cropWidth, cropHeight, rows is null ? mid : Vertical(mid, cropWidth * 3, rows));
    }

    /// <summary>Fixed-point taps for output positions [first, first + count) of an inSize → outSize resample.</summary>
    private sealed class Kernel
    {
        public readonly int Taps;
        public readonly int[] Start, Count, Weights;  // Weights: [count, Taps], only the first Count[i] used
        public int First => Start[0];
        public int Span => Start[^1] + Count[^1] - Start[0];  // source positions the outputs read, both ends monotone

        public Kernel(int inSize, int outSize, int first, int count)
        {
            double scale = (double)inSize / outSize;
            double filterScale = Math.Max(scale, 1.0);
            double support = 2.0 * filterScale, ss = 1.0 / filterScale;
            Taps = (int)Math.Ceiling(support) * 2 + 1;
            Start = new int[count];
            Count = new int[count];
            Weights = new int[count * Taps];
            var w = new double[Taps];
            for (int i = 0; i < count; i++)
            {
                double center = (first + i + 0.5) * scale;
                int xmin = Math.Max((int)(center - support + 0.5), 0);
                int n = Math.Min((int)(center + support + 0.5), inSize) - xmin;
                double sum = 0;
                for (int x = 0; x < n; x++) sum += w[x] = Cubic((x + xmin - center + 0.5) * ss);
                for (int x = 0; x < n; x++)
                {
                    double k = sum != 0 ? w[x] / sum : w[x];
                    Weights[i * Taps + x] = k < 0 ? (int)(-0.5 + k * (1 << PrecisionBits)) : (int)(0.5 + k * (1 << PrecisionBits));
                }
                Start[i] = xmin;
                Count[i] = n;
            }
        }

        private static double Cubic(double x)
        {
            const double a = -0.5;
            if (x < 0.0) x = -x;
            if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
            if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
            return 0.0;
        }
    }

    private static unsafe byte[] Horizontal(RgbImage source, Kernel cols, int firstRow, int rowCount)
    {
        int outWidth = cols.Start.Length, inStride = source.Width * 3;
        var mid = new byte[rowCount * outWidth * 3];
        fixed (byte* src = source.Pixels, dst = mid)
        fixed (int* weights = cols.Weights)
        {
            for (int y = 0; y < rowCount; y++)
            {
                byte* row = src + (long)(firstRow + y) * inStride, output = dst + (long)y * outWidth * 3;
                for (int i = 0; i < outWidth; i++)
                {
                    int* k = weights + i * cols.Taps;
                    byte* p = row + cols.Start[i] * 3;
                    int r = 1 << (PrecisionBits - 1), g = r, b = r;
                    for (int x = 0, n = cols.Count[i]; x < n; x++, p += 3)
                    {
                        r += p[0] * k[x];
                        g += p[1] * k[x];
                        b += p[2] * k[x];
                    }
                    output[3 * i] = Clip8(r);
                    output[3 * i + 1] = Clip8(g);
                    output[3 * i + 2] = Clip8(b);
                }
            }
        }
        return mid;
    }

    private static unsafe byte[] Vertical(byte[] mid, int stride, Kernel rows)
    {
        int outHeight = rows.Start.Length;
        var output = new byte[outHeight * stride];
        var acc = new int[stride];
        fixed (byte* src = mid, dst = output)
        fixed (int* sum = acc, weights = rows.Weights)
        {
            for (int i = 0; i < outHeight; i++)
            {
                acc.AsSpan().Fill(1 << (PrecisionBits - 1));
                int* k = weights + i * rows.Taps;
                for (int t = 0, n = rows.Count[i]; t < n; t++)
                {
                    byte* row = src + (long)(rows.Start[i] - rows.First + t) * stride;
                    int kt = k[t];
                    for (int c = 0; c < stride; c++) sum[c] += row[c] * kt;
                }
                byte* line = dst + (long)i * stride;
                for (int c = 0; c < stride; c++) line[c] = Clip8(sum[c]);
            }
        }
        return output;
    }

    private static byte[] CopyWindow(RgbImage source, int left, int top, int width, int height)
    {
        var window = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
            source.Pixels.AsSpan(((top + y) * source.Width + left) * 3, width * 3).CopyTo(window.AsSpan(y * width * 3));
        return window;
    }

    private static byte Clip8(int v) => (v >> PrecisionBits) switch { < 0 => 0, > 255 => 255, var x => (byte)x };
}
