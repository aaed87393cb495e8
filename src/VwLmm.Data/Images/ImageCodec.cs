using System.Buffers.Binary;
using System.Runtime.InteropServices;
using VwLmm.Core;
using VwLmm.Data.Images.Native;

namespace VwLmm.Data.Images;

/// <summary>
/// PNG (libpng simplified API) and JPEG (TurboJPEG) decoding to 8-bit RGB that reproduces PIL's
/// <c>Image.open(f).convert("RGB")</c>, which is how LLaVA loads training and evaluation images:
/// alpha is dropped, not composited; grey is replicated; palette entries are looked up; colour-space chunks
/// (gAMA, sRGB, iCCP, cHRM) are ignored; 16-bit samples keep their high byte; CMYK JPEGs use PIL's Adobe-inverted
/// CMYK→RGB formula. Two deliberate differences from PIL 9.4: 16-bit grey keeps the high byte (PIL clips values above
/// 255 to white), and 16-bit PNGs with alpha round v/257 instead of taking the high byte (at most 1 off).
/// JPEG warnings (truncated data, corrupt segments) are errors: libjpeg would otherwise pad the image with grey.
/// EXIF orientation is not applied, as PIL's open + convert does not apply it either. Stateless and thread-safe.
/// </summary>
public static unsafe class ImageCodec
{
    private static ReadOnlySpan<byte> PngSignature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
    private static ReadOnlySpan<byte> JpegSignature => [0xFF, 0xD8, 0xFF];
    private const long MaxPixels = int.MaxValue / 4;  // the largest decode buffer is 4 bytes per pixel

    /// <summary>Reads and decodes a PNG or JPEG file, format from its magic bytes. → [H,W,3] RGB8.</summary>
    public static RgbImage Decode(string path)
    {
        return Decode(File.ReadAllBytes(InputFile.Existing(path, "image file")), path);
    }

    /// <summary>Decodes PNG or JPEG bytes; <paramref name="nameForErrors"/> prefixes every error message. → [H,W,3] RGB8.</summary>
    public static RgbImage Decode(ReadOnlySpan<byte> data, string nameForErrors)
    {
        if (data.IsEmpty) throw Bad(nameForErrors, "empty file");
        if (data.StartsWith(PngSignature)) return DecodePng(data, nameForErrors);
        if (data.StartsWith(JpegSignature)) return DecodeJpeg(data, nameForErrors);
        // A file that ends inside a signature is a cut image, not one of another kind.
        if (CutInside(data, PngSignature)) throw Bad(nameForErrors, $"truncated PNG file ({data.Length} bytes)");
        if (CutInside(data, JpegSignature)) throw Bad(nameForErrors, $"truncated JPEG file ({data.Length} bytes)");
        throw Bad(nameForErrors, $"not a PNG or JPEG file (starts with {Convert.ToHexString(data[..Math.Min(8, data.Length)])})");
    }

    // From two bytes on: one alone is too likely the start of something else.
    private static bool CutInside(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature) =>
        data.Length >= 2 && data.Length < signature.Length && signature.StartsWith(data);

    /// <summary>Encodes [H,W,3] RGB8 as an 8-bit RGB PNG.</summary>
    public static byte[] EncodePng(RgbImage image)
    {
        var png = new LibPng.PngImage
        {
            Version = LibPng.ImageVersion, Width = (uint)image.Width, Height = (uint)image.Height, Format = LibPng.FormatRgb,
        };
        // PNG_IMAGE_PNG_SIZE_MAX from png.h: libpng guarantees the stream fits, so one pass suffices.
        long raw = (long)image.Height * (image.Width * 3L + 1);
        long zlibMax = raw + ((raw + 7) >> 3) + ((raw + 63) >> 6) + 11;
        long capacity = 8 + 25 + 16 + 44 + 12 + 12 + 12 * (zlibMax / 8192) + zlibMax;
        if (capacity > Array.MaxLength) throw new ArgumentException($"image {image.Width}x{image.Height} is too large to encode as one PNG");
        var buffer = new byte[capacity];
        nuint size = (nuint)buffer.Length;
        try
        {
            fixed (byte* pixels = image.Pixels)
            fixed (byte* output = buffer)
                if (LibPng.WriteToMemory(&png, output, &size, 0, pixels, 0, null) == 0)
                    throw new InvalidOperationException($"libpng could not encode a {image.Width}x{image.Height} image: {png.Message}");
        }
        finally
        {
            LibPng.Free(&png);
        }
        return buffer[..(int)size];
    }

    /// <summary>Writes [H,W,3] RGB8 to <paramref name="path"/> as PNG (temp file + rename).</summary>
    public static void SavePng(RgbImage image, string path)
    {
        byte[] png = EncodePng(image);
        AtomicFile.Write(path, s => s.Write(png));
    }

    private static RgbImage DecodePng(ReadOnlySpan<byte> data, string name)
    {
        ReadOnlySpan<byte> stream = WithoutColourChunks(data) ?? data;
        var png = new LibPng.PngImage { Version = LibPng.ImageVersion };
        try
        {
            fixed (byte* input = stream)  // libpng reads from this memory until png_image_free
            {
                if (LibPng.BeginReadFromMemory(&png, input, (nuint)stream.Length) == 0) throw Bad(name, png.Message);
                var image = NewImage(png.Width, png.Height, name);
                bool alpha = (png.Format & LibPng.FormatFlagAlpha) != 0, wide = (png.Format & LibPng.FormatFlagLinear) != 0;
                if (alpha)
                {
                    // 8-bit RGBA output keeps colour unassociated (PNG_ALPHA_PNG); RGB output would composite instead.
                    // Without 16BIT_sRGB libpng would treat 16-bit samples as linear light and gamma-encode them.
                    png.Format = LibPng.FormatRgba;
                    if (wide) png.Flags |= LibPng.Flag16BitSrgb;
                    var rgba = new byte[image.Width * image.Height * 4];
                    fixed (byte* output = rgba) Finish(&png, output, name);
                    for (int i = 0, j = 0; j < rgba.Length; i += 3, j += 4)
                    {
                        image.Pixels[i] = rgba[j];
                        image.Pixels[i + 1] = rgba[j + 1];
                        image.Pixels[i + 2] = rgba[j + 2];
                    }
                }
                else if (wide)
                {
                    // 16-bit data read as linear and written as linear passes through untouched; PIL keeps the high byte.
                    png.Format = LibPng.FormatLinearRgb;
                    var samples = new ushort[image.Pixels.Length];
                    fixed (ushort* output = samples) Finish(&png, output, name);
                    for (int i = 0; i < samples.Length; i++) image.Pixels[i] = (byte)(samples[i] >> 8);
                }
                else
                {
                    png.Format = LibPng.FormatRgb;
                    fixed (byte* output = image.Pixels) Finish(&png, output, name);
                }
                return image;
            }
        }
        finally
        {
            LibPng.Free(&png);
        }
    }

    private static void Finish(LibPng.PngImage* png, void* output, string name)
    {
        if (LibPng.FinishRead(png, null, output, 0, null) == 0 || png->Failed) throw Bad(name, png->Message);
    }

    /// <summary>PIL ignores colour-space chunks, but libpng's simplified API would gamma-convert to sRGB by them, so they
    /// are cut out of a copy of the stream. Null when there are none. A malformed chunk list is left to libpng.</summary>
    private static byte[]? WithoutColourChunks(ReadOnlySpan<byte> png)
    {
        var cuts = new List<(int Start, int Length)>();
        int pos = PngSignature.Length;
        while (pos + 12 <= png.Length)
        {
            uint length = BinaryPrimitives.ReadUInt32BigEndian(png[pos..]);
            var type = png.Slice(pos + 4, 4);
            if (length > (uint)(png.Length - pos - 12) || type.SequenceEqual("IDAT"u8)) break;  // colour chunks precede IDAT
            if (type.SequenceEqual("gAMA"u8) || type.SequenceEqual("sRGB"u8) || type.SequenceEqual("iCCP"u8) || type.SequenceEqual("cHRM"u8))
                cuts.Add((pos, 12 + (int)length));
            pos += 12 + (int)length;
        }
        if (cuts.Count == 0) return null;
        var kept = new byte[png.Length - cuts.Sum(c => c.Length)];
        int from = 0, to = 0;
        foreach (var (start, length) in cuts)
        {
            png[from..start].CopyTo(kept.AsSpan(to));
            to += start - from;
            from = start + length;
        }
        png[from..].CopyTo(kept.AsSpan(to));
        return kept;
    }

    private static RgbImage DecodeJpeg(ReadOnlySpan<byte> data, string name)
    {
        nint tj = TurboJpeg.InitDecompress();
        if (tj == 0) throw new InvalidOperationException("tjInitDecompress failed (out of memory?)");
        try
        {
            fixed (byte* input = data)
            {
                var size = new CULong((nuint)data.Length);
                int width, height, subsampling, colorspace;
                bool read = TurboJpeg.DecompressHeader3(tj, input, size, &width, &height, &subsampling, &colorspace) == 0;
                if (!read || width == 0 || height == 0)
                {
                    // libjpeg reads on past the end of a cut header as if an end-of-image marker followed: it then calls
                    // the segment it was in bogus ("Bogus DQT index 15"), or, ended before the scan, the file tables-only
                    // (TurboJPEG's size 0×0).
                    if (EndsInHeader(data)) throw Bad(name, "truncated JPEG file: it ends in its header, before the image data");
                    throw Bad(name, read ? "the JPEG file holds no image: no frame header (SOF), tables only" : JpegError(tj));
                }
                var image = NewImage((uint)width, (uint)height, name);
                if (colorspace is TurboJpeg.ColorspaceCmyk or TurboJpeg.ColorspaceYcck)
                {
                    // libjpeg cannot convert CMYK to RGB; TurboJPEG hands back the stored (Adobe-inverted) CMYK.
                    var cmyk = new byte[width * height * 4];
                    fixed (byte* output = cmyk)
                        Decompress(tj, input, size, output, width, height, TurboJpeg.PixelFormatCmyk, name);
                    InvertedCmykToRgb(cmyk, image.Pixels);
                }
                else
                {
                    fixed (byte* output = image.Pixels)
                        Decompress(tj, input, size, output, width, height, TurboJpeg.PixelFormatRgb, name);
                }
                return image;
            }
        }
        finally
        {
            TurboJpeg.Destroy(tj);
        }
    }

    /// <summary>Whether the marker segments after SOI run to the end of <paramref name="jpeg"/> without reaching the
    /// start of the scan (SOS) or the end of the image (EOI); false at anything that is not a marker where one belongs.</summary>
    private static bool EndsInHeader(ReadOnlySpan<byte> jpeg)
    {
        int pos = 2;
        while (pos + 1 < jpeg.Length)
        {
            if (jpeg[pos] != 0xFF) return false;
            byte marker = jpeg[pos + 1];
            if (marker is 0xDA or 0xD9) return false;
            // Fill bytes, and the markers without a length: TEM and RSTn.
            if (marker is 0xFF or 0x01 or (>= 0xD0 and <= 0xD7)) pos += marker == 0xFF ? 1 : 2;
            else if (pos + 3 >= jpeg.Length) return true;
            else pos += 2 + (jpeg[pos + 2] << 8 | jpeg[pos + 3]);
        }
        return true;
    }

    /// <summary>PIL reads JPEG CMYK as "CMYK;I" (c = 255 − stored) and converts with Convert.c cmyk2rgb:
    /// out = (255 − k) − MULDIV255(c, 255 − k), so in stored terms out = k' − MULDIV255(255 − c', k').</summary>
    private static void InvertedCmykToRgb(ReadOnlySpan<byte> stored, Span<byte> rgb)
    {
        for (int i = 0, j = 0; j < stored.Length; i += 3, j += 4)
        {
            int notK = stored[j + 3];
            for (int c = 0; c < 3; c++)
            {
                int t = (255 - stored[j + c]) * notK + 128;
                rgb[i + c] = (byte)(notK - (((t >> 8) + t) >> 8));
            }
        }
    }

    /// <summary>
    /// Decodes into output, or throws naming the file. libjpeg's warnings (stray bytes before a marker, a data segment
    /// that ends early) leave a whole image, and PIL ignores them, so they pass; running out of file is a warning to
    /// libjpeg, which pads the missing rows, and an error to PIL ("image file is truncated"), so it throws.
    /// </summary>
    private static void Decompress(nint tj, byte* input, CULong size, byte* output, int width, int height, int format, string name)
    {
        if (TurboJpeg.Decompress2(tj, input, size, output, width, 0, height, format, 0) == 0) return;
        string error = JpegError(tj);
        if (TurboJpeg.GetErrorCode(tj) != TurboJpeg.ErrorWarning || error.StartsWith("Premature end of JPEG file", StringComparison.Ordinal))
            throw Bad(name, error);
    }

    private static string JpegError(nint tj) => Marshal.PtrToStringUTF8(TurboJpeg.GetErrorStr2(tj)) ?? "unknown TurboJPEG error";

    private static RgbImage NewImage(uint width, uint height, string name)
    {
        if (width == 0 || height == 0 || (long)width * height > MaxPixels)
            throw Bad(name, $"image size {width}x{height} is out of range (at most {MaxPixels} pixels)");
        return new RgbImage((int)width, (int)height);
    }

    private static InvalidDataException Bad(string name, string what) => new($"{name}: {what}");
}
