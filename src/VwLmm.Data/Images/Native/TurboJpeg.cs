using System.Runtime.InteropServices;
using VwLmm.Core;

namespace VwLmm.Data.Images.Native;

/// <summary>Our binding to the libjpeg-turbo 2.x TurboJPEG API (Debian libturbojpeg0). Errors come back as -1 plus
/// tjGetErrorStr2; TurboJPEG's own setjmp keeps libjpeg's longjmp out of managed frames.</summary>
internal static unsafe partial class TurboJpeg
{
    private const string Lib = "turbojpeg";
    public const int PixelFormatRgb = 0, PixelFormatCmyk = 11;   // TJPF_RGB, TJPF_CMYK
    public const int ColorspaceCmyk = 3, ColorspaceYcck = 4;      // TJCS_CMYK, TJCS_YCCK

    static TurboJpeg() => NativeLibraries.Register(typeof(TurboJpeg).Assembly, Lib, "libturbojpeg.so.0", "libturbojpeg.so", "turbojpeg.dll", "libturbojpeg");

    [LibraryImport(Lib, EntryPoint = "tjInitDecompress")]
    public static partial nint InitDecompress();

    [LibraryImport(Lib, EntryPoint = "tjDecompressHeader3")]
    public static partial int DecompressHeader3(nint handle, byte* jpegBuf, CULong jpegSize, int* width, int* height,
                                                int* subsampling, int* colorspace);

    [LibraryImport(Lib, EntryPoint = "tjDecompress2")]
    public static partial int Decompress2(nint handle, byte* jpegBuf, CULong jpegSize, byte* dstBuf, int width, int pitch,
                                          int height, int pixelFormat, int flags);

    [LibraryImport(Lib, EntryPoint = "tjGetErrorStr2")]
    public static partial nint GetErrorStr2(nint handle);

    /// <summary>What the last error of the handle was: <see cref="ErrorWarning"/> (libjpeg decoded on) or fatal.</summary>
    [LibraryImport(Lib, EntryPoint = "tjGetErrorCode")]
    public static partial int GetErrorCode(nint handle);

    public const int ErrorWarning = 0;   // TJERR_WARNING

    [LibraryImport(Lib, EntryPoint = "tjDestroy")]
    public static partial int Destroy(nint handle);
}
