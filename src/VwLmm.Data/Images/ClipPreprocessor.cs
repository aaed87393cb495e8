namespace VwLmm.Data.Images;

/// <summary>Settings of <see cref="ClipPreprocessor"/>; the defaults are LLaVA-1.5's (CLIP ViT-L/14-336,
/// image_aspect_ratio "pad", OpenAI CLIP mean/std).</summary>
public sealed record ClipPreprocessorOptions
{
    /// <summary>Output side S: the short side is resized to S, then the centre S×S is cropped.</summary>
    public int Size { get; init; } = 336;

    /// <summary>LLaVA's expand2square: pad to a square of the mean colour before resizing.</summary>
    public bool Pad { get; init; } = true;

    public IReadOnlyList<double> Mean { get; init; } = [0.48145466, 0.4578275, 0.40821073];
    public IReadOnlyList<double> Std { get; init; } = [0.26862954, 0.26130258, 0.27577711];
}

/// <summary>
/// LLaVA-1.5 <c>process_images</c> + transformers' (slow) CLIPImageProcessor, reproduced exactly: optional
/// expand2square, PIL bicubic resize of the short side to S (long side int(S·long/short) as in
/// get_resize_output_image_size), centre crop with top = (h − S) // 2, left = (w − S) // 2, then
/// float32((double)v · (1/255)) and (x − mean) / std in float32, as numpy evaluates rescale and normalize.
/// </summary>
public sealed class ClipPreprocessor
{
    private readonly float[] _table;  // [3,256]: normalised value of each channel byte

    public ClipPreprocessor(ClipPreprocessorOptions? options = null)
    {
        Options = options ?? new ClipPreprocessorOptions();
        if (Options.Size <= 0) throw new ArgumentException($"CLIP image size must be positive, got {Options.Size}");
        if (Options.Mean.Count != 3 || Options.Std.Count != 3)
            throw new ArgumentException($"CLIP mean and std need 3 channels, got {Options.Mean.Count} and {Options.Std.Count}");
        _table = new float[3 * 256];
        for (int c = 0; c < 3; c++)
        {
            if (!(Options.Mean[c] >= 0 && Options.Mean[c] <= 1)) throw new ArgumentException($"CLIP mean[{c}] = {Options.Mean[c]} is outside [0, 1]");
            if (!(Options.Std[c] > 0)) throw new ArgumentException($"CLIP std[{c}] = {Options.Std[c]} must be positive");
            float mean = (float)Options.Mean[c], std = (float)Options.Std[c];
            for (int v = 0; v < 256; v++) _table[c * 256 + v] = ((float)(v * (1.0 / 255)) - mean) / std;
        }
        // expand2square's fill: tuple(int(x * 255) for x in image_processor.image_mean) = (122, 116, 104) by default.
        PadColor = ((byte)(Options.Mean[0] * 255), (byte)(Options.Mean[1] * 255), (byte)(Options.Mean[2] * 255));
    }

    public ClipPreprocessorOptions Options { get; }
    public int Size => Options.Size;
    public (byte R, byte G, byte B) PadColor { get; }

    /// <summary>Elements of one output tensor, 3·S·S.</summary>
    public int OutputLength => 3 * Size * Size;

    /// <summary>[H,W,3] RGB8 → [3,S,S] float32 CHW.</summary>
    public float[] Process(RgbImage image)
    {
        var output = new float[OutputLength];
        Process(image, output);
        return output;
    }

    /// <summary>[H,W,3] RGB8 → <paramref name="chw"/> [3,S,S] float32.</summary>
    public void Process(RgbImage image, Span<float> chw)
    {
        if (chw.Length != OutputLength) throw new ArgumentException($"CLIP output needs {OutputLength} floats (3x{Size}x{Size}), got {chw.Length}");
        if (Options.Pad) image = ExpandToSquare(image, PadColor);
        var (width, height) = ResizeTarget(image.Width, image.Height, Size);
        var crop = PilBicubic.Resize(image, width, height, (width - Size) / 2, (height - Size) / 2, Size, Size);
        int plane = Size * Size;
        for (int p = 0; p < plane; p++)
            for (int c = 0; c < 3; c++)
                chw[c * plane + p] = _table[c * 256 + crop.Pixels[3 * p + c]];
    }

    /// <summary>LLaVA's expand2square: [H,W,3] → [M,M,3], M = max(W,H), the image pasted at ((M−W)/2, (M−H)/2) with
    /// integer division over a <paramref name="fill"/> background; a square image is returned as is.</summary>
    public static RgbImage ExpandToSquare(RgbImage image, (byte R, byte G, byte B) fill)
    {
        if (image.Width == image.Height) return image;
        int side = Math.Max(image.Width, image.Height), left = (side - image.Width) / 2, top = (side - image.Height) / 2;
        if (3L * side * side > Array.MaxLength)
            throw new InvalidDataException($"a {image.Width}x{image.Height} image padded to a square ({side}x{side}) needs more than {Array.MaxLength / 3} pixels; crop or resize it first");
        var square = new RgbImage(side, side);
        for (int i = 0; i < square.Pixels.Length; i += 3)
        {
            square.Pixels[i] = fill.R;
            square.Pixels[i + 1] = fill.G;
            square.Pixels[i + 2] = fill.B;
        }
        int stride = image.Width * 3;
        for (int y = 0; y < image.Height; y++)
            image.Pixels.AsSpan(y * stride, stride).CopyTo(square.Pixels.AsSpan(((top + y) * side + left) * 3));
        return square;
    }

    /// <summary>transformers' get_resize_output_image_size(default_to_square=False): the short side becomes
    /// <paramref name="shortSide"/>, the long side int(shortSide · long / short) with Python's true division, which is
    /// one correctly rounded double division of the exact product, as here.</summary>
    public static (int Width, int Height) ResizeTarget(int width, int height, int shortSide)
    {
        if (width <= 0 || height <= 0 || shortSide <= 0) throw new ArgumentException($"cannot resize {width}x{height} to short side {shortSide}");
        int shortest = Math.Min(width, height), longest = Math.Max(width, height);
        int newLong = checked((int)((double)((long)shortSide * longest) / shortest));
        return width <= height ? (shortSide, newLong) : (newLong, shortSide);
    }
}
