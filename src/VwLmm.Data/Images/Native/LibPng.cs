using System.Runtime.InteropServices;
using VwLmm.Core;

namespace VwLmm.Data.Images.Native;

/// <summary>Our binding to libpng16's simplified API (png_image_*). Errors inside libpng are caught by libpng's own
/// setjmp in png_safe_execute and come back as a 0 return plus <see cref="PngImage.Message"/>, so no longjmp ever
/// crosses managed frames.</summary>
internal static unsafe partial class LibPng
{
    private const string Lib = "png16";
    public const uint ImageVersion = 1;                       // PNG_IMAGE_VERSION
    public const uint FormatFlagAlpha = 0x01, FormatFlagColor = 0x02, FormatFlagLinear = 0x04;
    public const uint FormatRgb = FormatFlagColor, FormatRgba = FormatFlagColor | FormatFlagAlpha;
    public const uint FormatLinearRgb = FormatFlagLinear | FormatFlagColor;
    public const uint Flag16BitSrgb = 0x04;                   // PNG_IMAGE_FLAG_16BIT_sRGB

    static LibPng() => NativeLibraries.Register(typeof(LibPng).Assembly, Lib, "libpng16.so.16", "libpng16.so", "libpng16.dll", "libpng16");

    /// <summary>png_image from png.h, field for field (104 bytes on LP64).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct PngImage
    {
        public nint Opaque;
        public uint Version, Width, Height, Format, Flags, ColormapEntries, WarningOrError;
        public fixed byte MessageBytes[64];

        public readonly bool Failed => (WarningOrError & 3) > 1;  // PNG_IMAGE_FAILED

        public readonly string Message
        {
            get
            {
                fixed (byte* m = MessageBytes)
                {
                    var text = new ReadOnlySpan<byte>(m, 64);
                    int end = text.IndexOf((byte)0);
                    return System.Text.Encoding.UTF8.GetString(end < 0 ? text : text[..end]);
                }
            }
        }
    }

    [LibraryImport(Lib, EntryPoint = "png_image_begin_read_from_memory")]
    public static partial int BeginReadFromMemory(PngImage* image, byte* memory, nuint size);

    [LibraryImport(Lib, EntryPoint = "png_image_finish_read")]
    public static partial int FinishRead(PngImage* image, byte* background, void* buffer, int rowStride, void* colormap);

    [LibraryImport(Lib, EntryPoint = "png_image_free")]
    public static partial void Free(PngImage* image);

    [LibraryImport(Lib, EntryPoint = "png_image_write_to_memory")]
    public static partial int WriteToMemory(PngImage* image, byte* memory, nuint* memoryBytes, int convertTo8Bit,
                                            byte* buffer, int rowStride, void* colormap);
}
