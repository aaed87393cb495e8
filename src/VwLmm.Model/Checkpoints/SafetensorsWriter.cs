using System.Runtime.InteropServices;
using System.Text.Json;
using VwLmm.Core;

namespace VwLmm.Model.Checkpoints;

/// <summary>One tensor to write: <paramref name="Data"/> holds <paramref name="Shape"/>.Numel row-major f32 values.</summary>
public readonly record struct SafetensorsEntry(string Name, Shape Shape, ReadOnlyMemory<float> Data);

/// <summary>
/// Writes safetensors files (F32, or BF16 rounded to nearest even) and sharded checkpoints with an HF index.
/// Every file goes to a temporary name first and is renamed into place, so a crash never leaves a torn file.
/// </summary>
public static class SafetensorsWriter
{
    private const int ChunkElements = 1 << 16;

    /// <summary>Writes <paramref name="tensors"/> (data in list order) to <paramref name="path"/>.</summary>
    public static void Write(string path, IReadOnlyList<SafetensorsEntry> tensors,
        IReadOnlyDictionary<string, string>? metadata = null, SafetensorsDType dtype = SafetensorsDType.F32)
    {
        CheckEntries(tensors, dtype);
        byte[] header = BuildHeader(tensors, metadata, dtype);
        AtomicFile.Write(path, stream =>
        {
            stream.Write(BitConverter.GetBytes((ulong)header.Length));
            stream.Write(header);
            foreach (var t in tensors) WriteData(stream, t.Data.Span, dtype);
        });
    }

    /// <summary>
    /// Writes a checkpoint into <paramref name="directory"/>: <c>model.safetensors</c> when everything fits in
    /// <paramref name="maxShardBytes"/>, otherwise <c>model-0000i-of-0000n.safetensors</c> shards filled greedily in list
    /// order (a tensor larger than the limit gets a shard of its own) plus <c>model.safetensors.index.json</c>, written
    /// last so that it only ever names complete shards. Over an earlier checkpoint, its index goes first (no reader can
    /// then take old and new shards for one model) and its files this one does not reuse go last; a caller that needs the
    /// earlier checkpoint readable until the new one is whole builds in a fresh directory
    /// (<see cref="AtomicFile.ReplaceDirectory"/>, as training does). Returns the files written.
    /// </summary>
    public static IReadOnlyList<string> WriteCheckpoint(string directory, IReadOnlyList<SafetensorsEntry> tensors,
        IReadOnlyDictionary<string, string>? metadata = null, SafetensorsDType dtype = SafetensorsDType.F32,
        long maxShardBytes = long.MaxValue)
    {
        if (maxShardBytes <= 0) throw new ArgumentException($"maxShardBytes must be positive, got {maxShardBytes}");
        CheckEntries(tensors, dtype);
        Directory.CreateDirectory(directory);
        string single = Path.Combine(directory, CheckpointReader.SingleFileName);
        string index = Path.Combine(directory, CheckpointReader.IndexFileName);
        var earlier = EarlierShards(index);
        File.Delete(index);

        var shards = new List<List<SafetensorsEntry>> { new() };
        long shardBytes = 0, totalBytes = 0;
        foreach (var t in tensors)
        {
            long bytes = t.Shape.Numel * dtype.Size();
            if (shards[^1].Count > 0 && shardBytes + bytes > maxShardBytes)
            {
                shards.Add([]);
                shardBytes = 0;
            }
            shards[^1].Add(t);
            shardBytes += bytes;
            totalBytes += bytes;
        }

        if (shards.Count == 1)
        {
            Write(single, tensors, metadata, dtype);
            DeleteAllBut(directory, earlier, [single]);
            return [single];
        }

        var written = new List<string>();
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < shards.Count; i++)
        {
            string name = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            string shardPath = Path.Combine(directory, name);
            Write(shardPath, shards[i], metadata, dtype);
            foreach (var t in shards[i]) weightMap[t.Name] = name;
            written.Add(shardPath);
        }
        AtomicFile.Write(index, stream =>
        {
            using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            w.WriteStartObject();
            w.WriteStartObject("metadata");
            w.WriteNumber("total_size", totalBytes);
            w.WriteEndObject();
            w.WriteStartObject("weight_map");
            foreach (var (tensor, file) in weightMap) w.WriteString(tensor, file);
            w.WriteEndObject();
            w.WriteEndObject();
        });
        written.Add(index);
        DeleteAllBut(directory, [.. earlier, CheckpointReader.SingleFileName], written);
        return written;
    }

    /// <summary>The shard files an existing index names (none when there is no index, or one that does not parse).</summary>
    private static IReadOnlyList<string> EarlierShards(string index)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            return doc.RootElement.GetProperty("weight_map").EnumerateObject()
                .Select(p => p.Value.GetString()!).Where(f => f == Path.GetFileName(f)).Distinct().ToList();
        }
        catch (Exception e) when (e is IOException or JsonException or InvalidOperationException or KeyNotFoundException)
        {
            return [];
        }
    }

    private static void DeleteAllBut(string directory, IEnumerable<string> names, IReadOnlyList<string> kept)
    {
        foreach (string name in names)
        {
            string path = Path.Combine(directory, name);
            if (!kept.Contains(path)) File.Delete(path);
        }
    }

    private static void CheckEntries(IReadOnlyList<SafetensorsEntry> tensors, SafetensorsDType dtype)
    {
        if (dtype is not (SafetensorsDType.F32 or SafetensorsDType.BF16))
            throw new ArgumentException($"safetensors writer: dtype {dtype} not supported (F32 or BF16)");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            if (string.IsNullOrEmpty(t.Name) || t.Name == "__metadata__")
                throw new ArgumentException($"safetensors writer: invalid tensor name '{t.Name}'");
            if (!names.Add(t.Name)) throw new ArgumentException($"safetensors writer: duplicate tensor '{t.Name}'");
            if (t.Data.Length != t.Shape.Numel)
                throw new ArgumentException($"safetensors writer: tensor '{t.Name}' {t.Shape} needs {t.Shape.Numel} values, got {t.Data.Length}");
        }
    }

    /// <summary>JSON header, space-padded so that the data buffer starts 8-byte aligned (as the reference writer does).</summary>
    private static byte[] BuildHeader(IReadOnlyList<SafetensorsEntry> tensors, IReadOnlyDictionary<string, string>? metadata, SafetensorsDType dtype)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in tensors)
            {
                long bytes = t.Shape.Numel * dtype.Size();
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", dtype.ToHeaderName());
                w.WriteStartArray("shape");
                foreach (int d in t.Shape.Dims) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        int padded = (int)((ms.Length + 7) / 8 * 8);
        var header = new byte[padded];
        ms.GetBuffer().AsSpan(0, (int)ms.Length).CopyTo(header);
        header.AsSpan((int)ms.Length).Fill((byte)' ');
        return header;
    }

    private static void WriteData(Stream stream, ReadOnlySpan<float> data, SafetensorsDType dtype)
    {
        if (dtype == SafetensorsDType.F32)
        {
            stream.Write(MemoryMarshal.AsBytes(data));
            return;
        }
        Span<ushort> chunk = new ushort[Math.Min(ChunkElements, data.Length)];
        for (int i = 0; i < data.Length; i += chunk.Length)
        {
            int n = Math.Min(chunk.Length, data.Length - i);
            FloatConversions.FloatToBf16(data.Slice(i, n), chunk[..n]);
            stream.Write(MemoryMarshal.AsBytes(chunk[..n]));
        }
    }
}
