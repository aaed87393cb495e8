using VwLmm.Core;
using VwLmm.Data.Images;

namespace VwLmm.Data.ShapesGrid;

/// <summary>How to draw one object instead of its palette colour and shape: a colour, and whether the shape is replaced
/// by a random speckle blob that is none of the world's shapes.</summary>
public readonly record struct ObjectPaint((int R, int G, int B) Colour, bool Blob);

/// <summary>
/// Draws a <see cref="Scene"/>: textured background cells, one hard-edged shape per object cell (kept inside its cell, so
/// every patch has exact ground truth), per-object colour jitter and per-pixel noise. Palette colours are ≥ 95 (Euclidean
/// RGB) from every background base colour, well above the jitter and texture amplitudes, so a patch's colour is unambiguous.
/// Integer arithmetic and IEEE basic operations only, so pixels are identical on every platform.
/// </summary>
public static class ShapesGridRenderer
{
    /// <summary>Base RGB of each <see cref="ObjectColour"/>.</summary>
    public static readonly IReadOnlyList<(int R, int G, int B)> Palette =
        [(220, 40, 40), (40, 200, 70), (40, 70, 220), (235, 215, 40), (245, 245, 245), (150, 50, 200)];

    /// <summary>Base RGB of each <see cref="Background"/>.</summary>
    public static readonly IReadOnlyList<(int R, int G, int B)> BackgroundBase =
        [(140, 195, 240), (70, 115, 40), (20, 90, 110), (210, 185, 130)];

    private const int ColourJitter = 15, PixelNoise = 10;

    /// <summary>Shape radius as a fraction of the patch size.</summary>
    private const double LargeRadius = 0.38, SmallRadius = 0.25;

    /// <summary>
    /// Scene → RgbImage [size×size]; pixels depend only on the scene (its seed included) and <paramref name="paint"/>,
    /// which repaints the objects it returns a paint for (the vision pretraining's augmentations).
    /// </summary>
    public static RgbImage Render(Scene scene, int imageSize, int patchSize, Func<GridObject, ObjectPaint?>? paint = null)
    {
        if (scene.Grid * patchSize != imageSize)
            throw new ArgumentException($"scene grid {scene.Grid} × patch {patchSize} != image size {imageSize}", nameof(imageSize));
        var image = new RgbImage(imageSize, imageSize);
        var rng = Streams.Derive(scene.Seed, Scene.PixelStream);
        for (int y = 0; y < imageSize; y++)
            for (int x = 0; x < imageSize; x++)
                Put(image, x, y, BackgroundPixel(scene.BackgroundAt(y / patchSize), x, y, imageSize, rng));
        foreach (var o in scene.Objects) DrawObject(image, o, paint?.Invoke(o) ?? new ObjectPaint(Palette[(int)o.Colour], Blob: false), patchSize, rng);
        return image;
    }

    private static (int, int, int) BackgroundPixel(Background kind, int x, int y, int size, Rng rng)
    {
        var (r, g, b) = BackgroundBase[(int)kind];
        int shift = kind switch
        {
            Background.Sky => 10 - 20 * y / size,                                   // lighter towards the top
            Background.Grass => (int)(((uint)x * 2654435761u) >> 28) - 8 + rng.Next(-4, 4), // vertical blade streaks
            Background.Water => 3 * (Math.Abs((x * 5 + 3 * (y * 7 % 11)) % 16 - 8) - 4),      // integer ripples: no libm
            _ => rng.NextInt(100) < 15 ? -30 : 0,                                      // sand speckles
        };
        int noise = kind == Background.Sky ? 6 : 8;
        return (r + shift + rng.Next(-noise, noise), g + shift + rng.Next(-noise, noise), b + shift + rng.Next(-noise, noise));
    }

    private static void DrawObject(RgbImage image, GridObject o, ObjectPaint paint, int patch, Rng rng)
    {
        var (pr, pg, pb) = paint.Colour;
        int jr = rng.Next(-ColourJitter, ColourJitter), jg = rng.Next(-ColourJitter, ColourJitter), jb = rng.Next(-ColourJitter, ColourJitter);
        double radius = (o.Size == ObjectSize.Large ? LargeRadius : SmallRadius) * patch;
        double slack = Math.Max(0, patch / 2.0 - radius - 0.5);
        double cx = o.Column * patch + patch / 2.0 + (rng.NextDouble() * 2 - 1) * slack;
        double cy = o.Row * patch + patch / 2.0 + (rng.NextDouble() * 2 - 1) * slack;
        for (int y = o.Row * patch; y < (o.Row + 1) * patch; y++)
            for (int x = o.Column * patch; x < (o.Column + 1) * patch; x++)
            {
                double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
                if (paint.Blob ? Math.Abs(dx) > radius || Math.Abs(dy) > radius || rng.NextInt(100) >= 55 : !Inside(o.Shape, dx, dy, radius)) continue;
                Put(image, x, y, (pr + jr + rng.Next(-PixelNoise, PixelNoise), pg + jg + rng.Next(-PixelNoise, PixelNoise),
                                  pb + jb + rng.Next(-PixelNoise, PixelNoise)));
            }
    }

    /// <summary>Is the pixel centre at offset (dx, dy) from the shape centre inside a shape of radius r? (y grows down.)</summary>
    private static bool Inside(ObjectShape shape, double dx, double dy, double r) => shape switch
    {
        ObjectShape.Circle => dx * dx + dy * dy <= r * r,
        ObjectShape.Square => Math.Abs(dx) <= 0.85 * r && Math.Abs(dy) <= 0.85 * r,
        // Apex up at (0, −r), base at y = 0.8 r from −r to r.
        ObjectShape.Triangle => dy <= 0.8 * r && Math.Abs(dx) <= (dy + r) / 1.8,
        _ => (Math.Abs(dx) <= 0.3 * r && Math.Abs(dy) <= r) || (Math.Abs(dy) <= 0.3 * r && Math.Abs(dx) <= r),
    };

    private static void Put(RgbImage image, int x, int y, (int R, int G, int B) c)
    {
        var p = image.Pixel(x, y);
        p[0] = (byte)Math.Clamp(c.R, 0, 255);
        p[1] = (byte)Math.Clamp(c.G, 0, 255);
        p[2] = (byte)Math.Clamp(c.B, 0, 255);
    }
}
