using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text.Json;
using VwLmm.Core;

namespace VwLmm.Model.Checkpoints;

/// <summary>
/// A read-only, memory-mapped safetensors file: 8-byte little-endian header length N, N bytes of JSON header, then the
/// data buffer. The header is validated exactly as strictly as the reference implementation (huggingface/safetensors):
/// header ≤ 100 MB and starting with '{', no duplicate keys, every tensor's byte range = numel·dtype size, and the
/// ranges tile the data buffer with no gap, no overlap and nothing left over. Tensor data is only touched when read.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>The reference implementation's limit; it keeps a hostile header from exhausting memory.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const string MetadataKey = "__metadata__";

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly Dictionary<string, SafetensorsTensorInfo> _byName;
    private byte* _data;

    private SafetensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* data,
        List<SafetensorsTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _data = data;
        Tensors = tensors;
        Metadata = metadata;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    public string Path { get; }

    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    /// <summary>The free-form string map stored under "__metadata__" (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Maps <paramref name="path"/> and validates its header; throws InvalidDataException naming the file (and tensor) on any defect.</summary>
    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: safetensors file not found", path);
        // The length of the file the path reaches: FileInfo's of a symbolic link (how the Hugging Face cache lays out a
        // model's files) is the link's own, the length of its target's name.
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long fileLength = stream.Length;
        if (fileLength < 8)
        {
            stream.Dispose();
            throw Bad(path, $"file is {fileLength} bytes, shorter than the 8-byte header length");
        }

        var map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        MemoryMappedViewAccessor? view = null;
        bool acquired = false;
        try
        {
            view = map.CreateViewAccessor(0, fileLength, MemoryMappedFileAccess.Read);
            byte* basePtr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
            acquired = true;
            basePtr += view.PointerOffset;

            ulong headerLength = BitConverter.ToUInt64(new ReadOnlySpan<byte>(basePtr, 8));
            if (headerLength > MaxHeaderBytes)
                throw Bad(path, $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
            if ((long)headerLength > fileLength - 8)
                throw Bad(path, $"header length {headerLength} runs past the end of the file ({fileLength} bytes)");

            var header = new ReadOnlySpan<byte>(basePtr + 8, (int)headerLength);
            long dataLength = fileLength - 8 - (long)headerLength;
            var (tensors, metadata) = ParseHeader(path, header, dataLength);
            return new SafetensorsFile(path, map, view, basePtr + 8 + (long)headerLength, tensors, metadata);
        }
        catch
        {
            if (acquired) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public bool TryGetInfo(string name, out SafetensorsTensorInfo info) => _byName.TryGetValue(name, out info!);

    public SafetensorsTensorInfo GetInfo(string name) =>
        _byName.TryGetValue(name, out var info) ? info : throw new ArgumentException($"{Path}: no tensor '{name}'");

    /// <summary>The tensor's raw little-endian bytes, straight from the mapping (valid until Dispose).</summary>
    public ReadOnlySpan<byte> GetBytes(string name) => GetBytes(GetInfo(name));

    /// <summary>Reads a float tensor (F32/F16/BF16) into <paramref name="dst"/> [numel] as f32.</summary>
    public void ReadFloat(string name, Span<float> dst)
    {
        var info = GetInfo(name);
        CheckDestination(info, dst.Length);
        var bytes = GetBytes(info);
        switch (info.DType)
        {
            case SafetensorsDType.F32: bytes.CopyTo(MemoryMarshal.AsBytes(dst)); break;
            case SafetensorsDType.BF16: FloatConversions.Bf16ToFloat(MemoryMarshal.Cast<byte, ushort>(bytes), dst); break;
            case SafetensorsDType.F16: FloatConversions.F16ToFloat(MemoryMarshal.Cast<byte, ushort>(bytes), dst); break;
            default: throw new InvalidDataException($"{Path}: tensor '{name}' is {info.DType}, not a float tensor");
        }
    }

    /// <summary>
    /// Reads a float tensor into <paramref name="dst"/> [numel] as bf16 bits: BF16 as stored; any other float dtype as
    /// <see cref="ReadFloat"/> reads it (exact for F16), then rounded to nearest even once.
    /// </summary>
    public void ReadBf16(string name, Span<ushort> dst)
    {
        var info = GetInfo(name);
        if (info.DType != SafetensorsDType.BF16)
        {
            var wide = new float[dst.Length];
            ReadFloat(name, wide);
            FloatConversions.FloatToBf16(wide, dst);
            return;
        }
        CheckDestination(info, dst.Length);
        GetBytes(info).CopyTo(MemoryMarshal.AsBytes(dst));
    }

    /// <summary>Reads an integer tensor (I32/I64) into <paramref name="dst"/> [numel] as i64.</summary>
    public void ReadInt64(string name, Span<long> dst)
    {
        var info = GetInfo(name);
        CheckDestination(info, dst.Length);
        var bytes = GetBytes(info);
        switch (info.DType)
        {
            case SafetensorsDType.I64: bytes.CopyTo(MemoryMarshal.AsBytes(dst)); break;
            case SafetensorsDType.I32:
                var src = MemoryMarshal.Cast<byte, int>(bytes);
                for (int i = 0; i < src.Length; i++) dst[i] = src[i];
                break;
            default: throw new InvalidDataException($"{Path}: tensor '{name}' is {info.DType}, not an integer tensor");
        }
    }

    public void Dispose()
    {
        if (_data == null) return;
        _data = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }

    private ReadOnlySpan<byte> GetBytes(SafetensorsTensorInfo info)
    {
        ObjectDisposedException.ThrowIf(_data == null, this);
        if (info.ByteLength > int.MaxValue)
            throw new NotSupportedException($"{Path}: tensor '{info.Name}' is {info.ByteLength} bytes, more than one span can address");
        return new ReadOnlySpan<byte>(_data + info.Offset, (int)info.ByteLength);
    }

    private void CheckDestination(SafetensorsTensorInfo info, int length)
    {
        if (length != info.Shape.Numel)
            throw new ArgumentException($"{Path}: tensor '{info.Name}' {info.Shape} has {info.Shape.Numel} elements, destination has {length}");
    }

    private static InvalidDataException Bad(string path, string what) => new($"{path}: {what}");

    private static (List<SafetensorsTensorInfo>, Dictionary<string, string>) ParseHeader(string path, ReadOnlySpan<byte> header, long dataLength)
    {
        if (header.Length == 0 || header[0] != (byte)'{') throw Bad(path, "header does not start with '{'");
        if (!System.Text.Unicode.Utf8.IsValid(header)) throw Bad(path, "header is not valid UTF-8");
        JsonDocument doc;
        try
        {
            var reader = new Utf8JsonReader(header);
            doc = JsonDocument.ParseValue(ref reader);
            if (reader.BytesConsumed != header.Length && header[(int)reader.BytesConsumed..].IndexOfAnyExcept(" \t\r\n"u8) >= 0)
                throw Bad(path, "header has bytes after the JSON object other than whitespace padding");
        }
        catch (JsonException e)
        {
            throw Bad(path, $"header is not valid JSON: {e.Message}");
        }

        // An escaped lone surrogate ("\ud800") parses, and fails only when the string is read.
        try
        {
            return ParseEntries(path, doc, dataLength);
        }
        catch (InvalidOperationException e)
        {
            throw Bad(path, $"header holds a string that is not valid Unicode: {e.Message}");
        }
        finally
        {
            doc.Dispose();
        }
    }

    private static (List<SafetensorsTensorInfo>, Dictionary<string, string>) ParseEntries(string path, JsonDocument doc, long dataLength)
    {
        var tensors = new List<SafetensorsTensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (!seen.Add(prop.Name)) throw Bad(path, $"duplicate key '{prop.Name}' in header");
            if (prop.Name == MetadataKey)
            {
                // The reference reads it as an optional map: null is no metadata.
                if (prop.Value.ValueKind == JsonValueKind.Null) continue;
                if (prop.Value.ValueKind != JsonValueKind.Object) throw Bad(path, "__metadata__ is not an object");
                foreach (var m in prop.Value.EnumerateObject())
                {
                    if (m.Value.ValueKind != JsonValueKind.String)
                        throw Bad(path, $"__metadata__ value of '{m.Name}' is not a string");
                    if (!metadata.TryAdd(m.Name, m.Value.GetString()!)) throw Bad(path, $"duplicate __metadata__ key '{m.Name}'");
                }
                continue;
            }
            tensors.Add(ParseTensor(path, prop.Name, prop.Value, dataLength));
        }
        CheckCoverage(path, tensors, dataLength);
        return (tensors, metadata);
    }

    private static SafetensorsTensorInfo ParseTensor(string path, string name, JsonElement e, long dataLength)
    {
        InvalidDataException BadTensor(string what) => Bad(path, $"tensor '{name}': {what}");
        if (e.ValueKind != JsonValueKind.Object) throw BadTensor("entry is not an object");
        // TryGetProperty would take one of two same-named fields; the reference refuses them.
        var fields = new HashSet<string>(StringComparer.Ordinal);
        foreach (var field in e.EnumerateObject())
            if (!fields.Add(field.Name)) throw BadTensor($"duplicate field '{field.Name}'");
        if (!e.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String)
            throw BadTensor("missing string field 'dtype'");
        string dtypeName = dtypeEl.GetString()!;
        if (!SafetensorsDTypeExtensions.TryParse(dtypeName, out var dtype))
            throw BadTensor($"unsupported dtype '{dtypeName}' (supported: F32, F16, BF16, I32, I64)");

        if (!e.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array)
            throw BadTensor("missing array field 'shape'");
        if (shapeEl.GetArrayLength() > Shape.MaxRank)
            throw BadTensor($"shape {shapeEl.GetRawText()} has rank {shapeEl.GetArrayLength()}, at most {Shape.MaxRank} is supported");
        var dims = new int[shapeEl.GetArrayLength()];
        int k = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw BadTensor($"shape {shapeEl.GetRawText()} has an entry that is not a non-negative integer");
            if (v > int.MaxValue) throw BadTensor($"shape dimension {v} is too large");
            dims[k++] = (int)v;
        }

        if (!e.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw BadTensor("missing field 'data_offsets' [begin, end]");
        long begin = ReadOffset(offEl[0]), end = ReadOffset(offEl[1]);
        if (begin < 0 || end < 0) throw BadTensor($"data_offsets {offEl.GetRawText()} are not non-negative integers");
        if (end < begin) throw BadTensor($"data_offsets [{begin},{end}] end before they begin");
        if (end > dataLength) throw BadTensor($"data_offsets [{begin},{end}] run past the end of the {dataLength}-byte data buffer");

        var shape = new Shape(dims);
        long expected;
        try { expected = checked(dims.Aggregate(1L, (n, d) => checked(n * d)) * dtype.Size()); }
        catch (OverflowException) { throw BadTensor($"shape {shape} overflows"); }
        if (end - begin != expected)
            throw BadTensor($"{end - begin} bytes at [{begin},{end}] but {dtype} {shape} needs {expected}");
        return new SafetensorsTensorInfo(name, dtype, shape, begin, end - begin);
    }

    private static long ReadOffset(JsonElement e) =>
        e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out long v) ? v : -1;

    /// <summary>The spec forbids holes and overlaps so that a file cannot hide data (polyglots) or alias tensors.</summary>
    private static void CheckCoverage(string path, List<SafetensorsTensorInfo> tensors, long dataLength)
    {
        var sorted = tensors.OrderBy(t => t.Offset).ThenBy(t => t.ByteLength).ToList();
        long position = 0;
        SafetensorsTensorInfo? previous = null;
        foreach (var t in sorted)
        {
            if (t.Offset < position)
                throw Bad(path, $"tensor '{t.Name}' at [{t.Offset},{t.Offset + t.ByteLength}] overlaps tensor '{previous!.Name}' ending at {position}");
            if (t.Offset > position)
                throw Bad(path, $"tensor '{t.Name}' starts at {t.Offset}, leaving a gap of {t.Offset - position} bytes in the data buffer");
            position = t.Offset + t.ByteLength;
            previous = t;
        }
        if (position != dataLength)
            throw Bad(path, $"tensors cover {position} bytes but the data buffer has {dataLength}");
    }
}
