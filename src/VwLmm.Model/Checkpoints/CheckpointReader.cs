using System.Text.Json;
using VwLmm.Core;

namespace VwLmm.Model.Checkpoints;

/// <summary>
/// The tensors of a checkpoint: a single <c>model.safetensors</c>, or shards listed by <c>model.safetensors.index.json</c>
/// ({"metadata": {…}, "weight_map": {tensor: shard file}}). Shards are mapped on first use; only touched tensors are read.
/// </summary>
public sealed class CheckpointReader : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly string _directory;
    private readonly Dictionary<string, string> _shardOf;
    private readonly Dictionary<string, SafetensorsFile> _open = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private bool _disposed;

    private CheckpointReader(string path, string directory, Dictionary<string, string> shardOf, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        _directory = directory;
        _shardOf = shardOf;
        Metadata = metadata;
        Names = shardOf.Keys.Order(StringComparer.Ordinal).ToArray();
    }

    /// <summary>The index file or the single safetensors file this reader was opened from.</summary>
    public string Path { get; }

    /// <summary>All tensor names, sorted ordinally.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The index's "metadata" (values as JSON text unless strings) or the single file's "__metadata__".</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>
    /// Opens a checkpoint directory (index preferred over a single file), a <c>.safetensors</c> file, or an index file.
    /// </summary>
    public static CheckpointReader Open(string path)
    {
        if (Directory.Exists(path))
        {
            string index = System.IO.Path.Combine(path, IndexFileName), single = System.IO.Path.Combine(path, SingleFileName);
            if (File.Exists(index)) return OpenIndex(index);
            if (File.Exists(single)) return OpenSingle(single);
            throw new FileNotFoundException($"{path}: neither {IndexFileName} nor {SingleFileName} found", single);
        }
        InputFile.Existing(path, "checkpoint");
        return path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? OpenIndex(path) : OpenSingle(path);
    }

    public bool Contains(string name) => _shardOf.ContainsKey(name);

    /// <summary>Dtype, shape and location of <paramref name="name"/> (maps its shard if needed).</summary>
    public SafetensorsTensorInfo GetInfo(string name) => FileOf(name).GetInfo(name);

    /// <summary>Every tensor's info, in <see cref="Names"/> order (maps every shard; no tensor data is read).</summary>
    public IEnumerable<SafetensorsTensorInfo> Tensors => Names.Select(GetInfo);

    /// <summary>Reads float tensor <paramref name="name"/> into <paramref name="dst"/> [numel] as f32.</summary>
    public void ReadFloat(string name, Span<float> dst) => FileOf(name).ReadFloat(name, dst);

    /// <summary>Reads float tensor <paramref name="name"/> into <paramref name="dst"/> [numel] as bf16 bits.</summary>
    public void ReadBf16(string name, Span<ushort> dst) => FileOf(name).ReadBf16(name, dst);

    /// <summary>Reads float tensor <paramref name="name"/> into a new array [numel].</summary>
    public float[] ReadFloat(string name)
    {
        var dst = new float[GetInfo(name).Shape.Numel];
        ReadFloat(name, dst);
        return dst;
    }

    /// <summary>Reads integer tensor <paramref name="name"/> into <paramref name="dst"/> [numel] as i64.</summary>
    public void ReadInt64(string name, Span<long> dst) => FileOf(name).ReadInt64(name, dst);

    /// <summary>Raw little-endian bytes of <paramref name="name"/>, valid until Dispose.</summary>
    public ReadOnlySpan<byte> GetBytes(string name) => FileOf(name).GetBytes(name);

    /// <summary>Element counts per module (<see cref="HfNames.ModuleOf"/>), for <c>vwlmm inspect</c>; tensors <paramref name="skip"/> names are left out.</summary>
    public IReadOnlyDictionary<string, long> ParameterCountsByModule(Func<string, bool>? skip = null) =>
        Tensors.Where(t => skip?.Invoke(t.Name) != true).GroupBy(t => HfNames.ModuleOf(t.Name)).ToDictionary(g => g.Key, g => g.Sum(t => t.Shape.Numel));

    /// <summary>Element counts per stored dtype, for <c>vwlmm inspect</c>; tensors <paramref name="skip"/> names are left out.</summary>
    public IReadOnlyDictionary<SafetensorsDType, long> ParameterCountsByDType(Func<string, bool>? skip = null) =>
        Tensors.Where(t => skip?.Invoke(t.Name) != true).GroupBy(t => t.DType).ToDictionary(g => g.Key, g => g.Sum(t => t.Shape.Numel));

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var f in _open.Values) f.Dispose();
            _open.Clear();
            _disposed = true;
        }
    }

    private SafetensorsFile FileOf(string name)
    {
        if (!_shardOf.TryGetValue(name, out string? shard)) throw new ArgumentException($"{Path}: no tensor '{name}'");
        SafetensorsFile file;
        lock (_lock)
        {
            // A read after Dispose would map the shard again, and nothing would unmap it.
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_open.TryGetValue(shard, out file!))
            {
                file = SafetensorsFile.Open(System.IO.Path.Combine(_directory, shard));
                _open.Add(shard, file);
            }
        }
        if (!file.Contains(name))
            throw new InvalidDataException($"{Path}: weight_map puts '{name}' in {shard}, which has no such tensor");
        return file;
    }

    private static CheckpointReader OpenSingle(string path)
    {
        var file = SafetensorsFile.Open(path);
        string fileName = System.IO.Path.GetFileName(path);
        var reader = new CheckpointReader(path, System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!,
            file.Tensors.ToDictionary(t => t.Name, _ => fileName, StringComparer.Ordinal), file.Metadata);
        reader._open.Add(fileName, file);
        return reader;
    }

    private static CheckpointReader OpenIndex(string path)
    {
        JsonDocument doc;
        // Read as text, as config.json is: a byte-order mark (an index edited on Windows) is not JSON.
        try { doc = JsonDocument.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}"); }
        try
        {
            return FromIndex(path, doc);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidDataException($"{path}: a string is not valid Unicode: {e.Message}");
        }
        finally
        {
            doc.Dispose();
        }
    }

    private static CheckpointReader FromIndex(string path, JsonDocument doc)
    {
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: root is not an object");
        if (!root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{path}: missing object 'weight_map'");

        var shardOf = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in map.EnumerateObject())
        {
            string? shard = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() : null;
            // A shard must sit beside the index: a path in the map would let a checkpoint read arbitrary files.
            if (string.IsNullOrEmpty(shard) || shard != System.IO.Path.GetFileName(shard) || shard is "." or "..")
                throw new InvalidDataException($"{path}: weight_map entry '{p.Name}' is not a plain shard file name");
            if (!shardOf.TryAdd(p.Name, shard)) throw new InvalidDataException($"{path}: weight_map lists '{p.Name}' twice");
        }

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (root.TryGetProperty("metadata", out var meta) && meta.ValueKind == JsonValueKind.Object)
            foreach (var p in meta.EnumerateObject())
                metadata[p.Name] = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : p.Value.GetRawText();

        string directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        foreach (string shard in shardOf.Values.Distinct())
            if (!File.Exists(System.IO.Path.Combine(directory, shard)))
                throw new FileNotFoundException($"{path}: shard {shard} not found", System.IO.Path.Combine(directory, shard));
        return new CheckpointReader(path, directory, shardOf, metadata);
    }
}
