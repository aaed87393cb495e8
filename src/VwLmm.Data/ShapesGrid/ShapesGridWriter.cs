using System.Text.Json;
using VwLmm.Core;
using VwLmm.Data.Conversations;
using VwLmm.Data.Images;

namespace VwLmm.Data.ShapesGrid;

/// <summary>Per-patch ground truth read back from patch_labels.json: image path → [Grid·Grid] words, row-major.</summary>
public sealed record PatchLabelFile(int Grid, int PatchSize, IReadOnlyList<string> HeldOut, IReadOnlyDictionary<string, string[]> Patches);

/// <summary>
/// Writes a ShapesGrid dataset folder readable by <see cref="LlavaDataset"/> (image folder = the folder itself):
/// images/NNNN.png, data.json (stage-2 QA, text-only entries included), captions.json (stage-1 plain captions of the
/// image entries) and patch_labels.json (per-patch words, held-out combinations). JSON files are written atomically, and
/// images/ is built aside and swapped in whole, so that a smaller set written over a larger one leaves no image of it.
/// </summary>
public static class ShapesGridWriter
{
    public const string DataFile = "data.json", CaptionsFile = "captions.json", PatchLabelsFile = "patch_labels.json";

    /// <summary>Writes instruction samples 0 … n − 1 of <paramref name="split"/>; images go through <paramref name="savePng"/>(image, full path).</summary>
    public static void Write(string dir, int n, ulong seed, Action<RgbImage, string> savePng, Split split = Split.Train,
                             ShapesGridOptions? options = null)
    {
        if (n < 0) throw new ArgumentException($"sample count {n} must be ≥ 0", nameof(n));
        var world = new ShapesGridWorld(seed, options);
        Directory.CreateDirectory(dir);
        string format = "D" + Math.Max(4, (n - 1).ToString(System.Globalization.CultureInfo.InvariantCulture).Length);
        var data = new List<ConversationSample>(n);
        var captions = new List<ConversationSample>(n);
        var patches = new List<(string Image, string[] Words)>(n);
        AtomicFile.ReplaceDirectory(Path.Combine(dir, "images"), images =>
        {
            for (int i = 0; i < n; i++)
            {
                if (world.IsTextOnly(split, i))
                {
                    data.Add(world.TextOnlyConversation(split, i));
                    continue;
                }
                var sample = world.Sample(split, i);
                string file = i.ToString(format, System.Globalization.CultureInfo.InvariantCulture) + ".png";
                savePng(sample.Image, Path.Combine(images, file));
                string imageRef = "images/" + file;
                data.Add(sample.QaConversation(imageRef));
                captions.Add(sample.CaptionConversation(imageRef));
                patches.Add((imageRef, sample.Scene.PatchWords()));
            }
        });
        LlavaDataset.Write(Path.Combine(dir, DataFile), data);
        LlavaDataset.Write(Path.Combine(dir, CaptionsFile), captions);
        AtomicFile.Write(Path.Combine(dir, PatchLabelsFile), stream =>
        {
            using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            w.WriteStartObject();
            w.WriteNumber("seed", seed);
            w.WriteString("split", split.ToString().ToLowerInvariant());
            w.WriteNumber("grid", world.Options.Grid);
            w.WriteNumber("patch", world.Options.PatchSize);
            w.WriteStartArray("held_out");
            foreach (var c in world.HeldOut) w.WriteStringValue(c.ToString());
            w.WriteEndArray();
            w.WriteStartArray("images");
            foreach (var (image, words) in patches)
            {
                w.WriteStartObject();
                w.WriteString("image", image);
                w.WriteStartArray("patches");
                foreach (var word in words) w.WriteStringValue(word);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    /// <summary>Reads patch_labels.json; InvalidDataException naming the file and field on bad contents.</summary>
    public static PatchLabelFile ReadPatchLabels(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(InputFile.Existing(path, "patch label file")));
            var root = doc.RootElement;
            int grid = Field(root, "grid", path).GetInt32(), patch = Field(root, "patch", path).GetInt32();
            var heldOut = Field(root, "held_out", path).EnumerateArray().Select(e => e.GetString()!).ToArray();
            var patches = new Dictionary<string, string[]>();
            int index = 0;
            foreach (var entry in Field(root, "images", path).EnumerateArray())
            {
                string image = Field(entry, "image", path).GetString()!;
                var words = Field(entry, "patches", path).EnumerateArray().Select(e => e.GetString()!).ToArray();
                if (words.Length != grid * grid)
                    throw new InvalidDataException($"{path}: images[{index}] has {words.Length} patches, expected {grid * grid}");
                patches[image] = words;
                index++;
            }
            return new PatchLabelFile(grid, patch, heldOut, patches);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: malformed JSON at line {e.LineNumber + 1}, position {e.BytePositionInLine + 1}", e);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: field of the wrong JSON type or range ({e.Message})", e);
        }
    }

    private static JsonElement Field(JsonElement obj, string name, string path) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var value)
            ? value
            : throw new InvalidDataException($"{path}: missing field \"{name}\"");
}
