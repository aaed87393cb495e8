using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using VwLmm.Core;

namespace VwLmm.Data;

/// <summary>The header of a .npy file: dtype string (e.g. "&lt;f4"), shape ([] for a 0-d array), byte offset of the data.</summary>
public sealed record NpyHeader(string Descr, int[] Shape, bool FortranOrder, int DataOffset)
{
    public long Count => Shape.Aggregate(1L, (n, d) => n * d);
}

/// <summary>
/// NumPy .npy arrays: reads format 1.x–3.x, writes 1.0 (temp file + rename). Little-endian C-order data of dtype
/// '&lt;f4' (float), '&lt;i4' (int) or '&lt;i8' (long). Anything else, or a header or size that does not add up, is an
/// <see cref="InvalidDataException"/> naming the file.
/// </summary>
public static class Npy
{
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>
    /// Reads an array whose dtype matches <typeparamref name="T"/>. → (data in C order, shape). The file is read once,
    /// front to back, so a pipe serves as well as a file (`--pixels <(…)`).
    /// </summary>
    public static (T[] Data, int[] Shape) Read<T>(string path) where T : unmanaged
    {
        string descr = Descr<T>();
        using var stream = Open(path);
        var header = ReadHeader(stream, path);
        if (header.Descr != descr) throw Bad(path, $"dtype '{header.Descr}' where {typeof(T).Name} ('{descr}') was expected");
        if (header.FortranOrder) throw Bad(path, "Fortran-order arrays are not supported");
        long needed = header.Count * Unsafe.SizeOf<T>();
        if (needed > Array.MaxLength) throw Bad(path, $"shape ({string.Join(", ", header.Shape)}) of '{descr}' needs {needed} bytes, more than one array holds");
        // A damaged header must not cost more memory than the file has: a file says its length before it is read.
        if (stream.CanSeek && stream.Length - stream.Position is var left && left < needed)
            throw Bad(path, $"shape ({string.Join(", ", header.Shape)}) of '{descr}' needs {needed} data bytes, the file has {left}");
        var data = new T[header.Count];
        var bytes = MemoryMarshal.AsBytes(data.AsSpan());
        long got = stream.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
        if (got == bytes.Length)
        {
            Span<byte> rest = stackalloc byte[4096];
            for (int n; (n = stream.Read(rest)) > 0;) got += n;
        }
        if (got != bytes.Length)
            throw Bad(path, $"shape ({string.Join(", ", header.Shape)}) of '{descr}' needs {bytes.Length} data bytes, the file has {got}");
        return (data, header.Shape);
    }

    /// <summary>Parses the magic, version and header dictionary of a .npy file.</summary>
    public static NpyHeader ReadHeader(string path)
    {
        using var stream = Open(path);
        return ReadHeader(stream, path);
    }

    private static FileStream Open(string path) =>
        File.OpenRead(InputFile.Existing(path, "npy file"));

    /// <summary>The header, read from the start of <paramref name="stream"/>, which is left at the first data byte.</summary>
    private static NpyHeader ReadHeader(Stream stream, string path)
    {
        Span<byte> prefix = stackalloc byte[10];
        int got = stream.ReadAtLeast(prefix[..8], 8, throwOnEndOfStream: false);
        if (got < 8 || !prefix.StartsWith(Magic)) throw Bad(path, "not a .npy file (no \\x93NUMPY magic)");
        int major = prefix[6];
        if (major is < 1 or > 3) throw Bad(path, $"unsupported .npy format version {major}.{prefix[7]}");
        int lengthBytes = major == 1 ? 2 : 4;
        if (stream.ReadAtLeast(prefix[..lengthBytes], lengthBytes, throwOnEndOfStream: false) < lengthBytes) throw Bad(path, "truncated .npy preamble");
        long headerLength = major == 1 ? BinaryPrimitives.ReadUInt16LittleEndian(prefix) : BinaryPrimitives.ReadUInt32LittleEndian(prefix);
        if (headerLength > int.MaxValue - 12) throw Bad(path, $"header of {headerLength} bytes runs past the end of the file");
        // Read in steps, so a header length that a damaged file overstates costs no more memory than the file has.
        var text = new List<byte>();
        Span<byte> chunk = stackalloc byte[4096];
        while (text.Count < headerLength)
        {
            int n = stream.Read(chunk[..(int)Math.Min(chunk.Length, headerLength - text.Count)]);
            if (n == 0) throw Bad(path, $"header of {headerLength} bytes runs past the end of the file");
            text.AddRange(chunk[..n]);
        }
        var (descr, fortran, shape) = new HeaderParser(Encoding.UTF8.GetString([.. text]), path).Parse();
        long count = 1;
        foreach (int d in shape)
            if (d != 0 && count > Array.MaxLength / d) throw Bad(path, $"shape ({string.Join(", ", shape)}) has too many elements");
            else count *= d;
        return new NpyHeader(descr, shape, fortran, 8 + lengthBytes + (int)headerLength);
    }

    /// <summary>Writes <paramref name="data"/> (C order, product(shape) elements) as a format 1.0 .npy.</summary>
    public static void Write<T>(string path, ReadOnlySpan<T> data, ReadOnlySpan<int> shape) where T : unmanaged
    {
        string descr = Descr<T>();
        long count = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException($"negative dimension in shape ({string.Join(", ", shape.ToArray())}) for {path}");
            count *= d;
        }
        if (count != data.Length) throw new ArgumentException($"shape ({string.Join(", ", shape.ToArray())}) needs {count} elements, got {data.Length} for {path}");
        string dims = shape.Length == 1 ? $"{shape[0]}," : string.Join(", ", shape.ToArray());
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}";
        int total = (10 + dict.Length + 1 + 63) / 64 * 64;  // numpy pads the header so the data is 64-byte aligned
        if (total - 10 > ushort.MaxValue) throw new ArgumentException($"shape of rank {shape.Length} is too long for a .npy 1.0 header ({path})");
        var header = new byte[total];
        Magic.CopyTo(header);
        header[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(8), (ushort)(total - 10));
        header.AsSpan(10).Fill((byte)' ');
        Encoding.ASCII.GetBytes(dict, header.AsSpan(10));
        header[^1] = (byte)'\n';
        byte[] payload = MemoryMarshal.AsBytes(data).ToArray();
        AtomicFile.Write(path, s =>
        {
            s.Write(header);
            s.Write(payload);
        });
    }

    private static string Descr<T>() => typeof(T) == typeof(float) ? "<f4"
                                      : typeof(T) == typeof(int) ? "<i4"
                                      : typeof(T) == typeof(long) ? "<i8"
                                      : throw new ArgumentException($".npy element type {typeof(T).Name} is not supported (float, int, long)");

    private static InvalidDataException Bad(string path, string what) => new($"{path}: {what}");

    /// <summary>The Python dict literal numpy writes: {'descr': '&lt;f4', 'fortran_order': False, 'shape': (2, 3), }.</summary>
    private ref struct HeaderParser(string text, string path)
    {
        private int _pos;

        public (string Descr, bool Fortran, int[] Shape) Parse()
        {
            string? descr = null;
            bool? fortran = null;
            int[]? shape = null;
            Expect('{');
            while (!Accept('}'))
            {
                string key = ReadString();
                Expect(':');
                switch (key)
                {
                    case "descr": descr = ReadString(); break;
                    case "fortran_order": fortran = ReadBool(); break;
                    case "shape": shape = ReadTuple(); break;
                    default: throw Fail($"unexpected key '{key}'");
                }
                if (!Accept(',')) { Expect('}'); break; }
            }
            SkipSpace();
            if (_pos != text.Length) throw Fail("trailing characters after the dictionary");
            return (descr ?? throw Fail("no 'descr'"), fortran ?? throw Fail("no 'fortran_order'"), shape ?? throw Fail("no 'shape'"));
        }

        private string ReadString()
        {
            SkipSpace();
            char quote = Peek();
            if (quote is not ('\'' or '"')) throw Fail("expected a quoted string");
            int end = text.IndexOf(quote, _pos + 1);
            if (end < 0) throw Fail("unterminated string");
            string s = text[(_pos + 1)..end];
            _pos = end + 1;
            return s;
        }

        private bool ReadBool()
        {
            SkipSpace();
            foreach (var (word, value) in new[] { ("True", true), ("False", false) })
                if (string.CompareOrdinal(text, _pos, word, 0, word.Length) == 0)
                {
                    _pos += word.Length;
                    return value;
                }
            throw Fail("expected True or False");
        }

        private int[] ReadTuple()
        {
            Expect('(');
            var dims = new List<int>();
            while (!Accept(')'))
            {
                SkipSpace();
                int start = _pos;
                while (_pos < text.Length && char.IsAsciiDigit(text[_pos])) _pos++;
                if (!int.TryParse(text.AsSpan(start, _pos - start), NumberStyles.None, CultureInfo.InvariantCulture, out int d))
                    throw Fail("bad dimension in 'shape'");
                dims.Add(d);
                if (!Accept(',')) { Expect(')'); break; }
            }
            return [.. dims];
        }

        private void SkipSpace()
        {
            while (_pos < text.Length && char.IsWhiteSpace(text[_pos])) _pos++;
        }

        private char Peek() => _pos < text.Length ? text[_pos] : '\0';

        private bool Accept(char c)
        {
            SkipSpace();
            if (Peek() != c) return false;
            _pos++;
            return true;
        }

        private void Expect(char c)
        {
            if (!Accept(c)) throw Fail($"expected '{c}' at offset {_pos}");
        }

        private readonly InvalidDataException Fail(string what) => Bad(path, $"bad .npy header ({what}): {text.TrimEnd()}");
    }
}
