using System.Text.Json;
using VwLmm.Core;

namespace VwLmm.Data.Conversations;

/// <summary>
/// A LLaVA instruction-tuning JSON file: [{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}, …]}, …],
/// image paths relative to <see cref="ImageFolder"/>. Entries without "image" are text-only samples. An entry with an
/// image but no "&lt;image&gt;" placeholder is accepted; the templates prepend it (<see cref="ConversationRules.NormalizeImagePlaceholder"/>).
/// </summary>
public sealed class LlavaDataset
{
    private LlavaDataset(string jsonPath, string imageFolder, IReadOnlyList<ConversationSample> samples)
    {
        JsonPath = jsonPath;
        ImageFolder = imageFolder;
        Samples = samples;
    }

    public string JsonPath { get; }
    public string ImageFolder { get; }
    public IReadOnlyList<ConversationSample> Samples { get; }

    /// <summary>Full path of a sample's image file; ArgumentException for text-only samples.</summary>
    public string ImagePath(ConversationSample sample) =>
        Path.Combine(ImageFolder, sample.Image ?? throw new ArgumentException($"sample {sample.Id} has no image", nameof(sample)));

    /// <summary>
    /// Reads and validates every entry (role order, placeholder rules of <see cref="ConversationRules"/>, image files exist).
    /// InvalidDataException / FileNotFoundException name the file, the entry index and the field.
    /// </summary>
    public static LlavaDataset Load(string jsonPath, string imageFolder)
    {
        JsonDocument doc;
        using (var stream = File.OpenRead(InputFile.Existing(jsonPath, "dataset file")))
        {
            try { doc = JsonDocument.Parse(stream); }
            catch (JsonException e)
            {
                throw new InvalidDataException(
                    $"{jsonPath}: malformed JSON at line {e.LineNumber + 1}, position {e.BytePositionInLine + 1}", e);
            }
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"{jsonPath}: top level must be an array of samples, got {doc.RootElement.ValueKind}");
            var samples = new List<ConversationSample>(doc.RootElement.GetArrayLength());
            int index = 0;
            foreach (var entry in doc.RootElement.EnumerateArray())
            {
                // An escaped lone surrogate, or bytes that are not UTF-8, parse; reading the string fails.
                try { samples.Add(ReadEntry(jsonPath, imageFolder, index, entry)); }
                catch (InvalidOperationException e)
                {
                    throw new InvalidDataException($"{jsonPath}: entry {index}: a string is not valid text ({e.Message})", e);
                }
                index++;
            }
            return new LlavaDataset(jsonPath, imageFolder, samples);
        }
    }

    /// <summary>Writes samples in LLaVA JSON (atomically: temp file + rename).</summary>
    public static void Write(string jsonPath, IEnumerable<ConversationSample> samples) =>
        AtomicFile.Write(jsonPath, stream =>
        {
            using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            w.WriteStartArray();
            foreach (var s in samples)
            {
                w.WriteStartObject();
                w.WriteString("id", s.Id);
                if (s.Image is not null) w.WriteString("image", s.Image);
                w.WriteStartArray("conversations");
                foreach (var t in s.Turns)
                {
                    w.WriteStartObject();
                    w.WriteString("from", ConversationRules.Name(t.From));
                    w.WriteString("value", t.Value);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });

    private static ConversationSample ReadEntry(string file, string imageFolder, int index, JsonElement entry)
    {
        string where = $"{file}: entry {index}";
        if (entry.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}: must be an object, got {entry.ValueKind}");

        string id = index.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (entry.TryGetProperty("id", out var idElement))
            id = idElement.ValueKind switch
            {
                JsonValueKind.String => idElement.GetString()!,
                JsonValueKind.Number => idElement.GetRawText(),
                _ => throw new InvalidDataException($"{where}: field \"id\" must be a string or number, got {idElement.ValueKind}"),
            };
        where = $"{file}: entry {index} (id {id})";

        string? image = null;
        if (entry.TryGetProperty("image", out var imageElement))
        {
            if (imageElement.ValueKind != JsonValueKind.String || imageElement.GetString()!.Length == 0)
                throw new InvalidDataException($"{where}: field \"image\" must be a non-empty string");
            image = imageElement.GetString()!;
            string path = Path.Combine(imageFolder, image);
            if (!File.Exists(path)) throw new FileNotFoundException($"{where}: image file {path} not found", path);
        }

        if (!entry.TryGetProperty("conversations", out var convs))
            throw new InvalidDataException($"{where}: missing field \"conversations\"");
        if (convs.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{where}: field \"conversations\" must be an array, got {convs.ValueKind}");
        var turns = new List<Turn>(convs.GetArrayLength());
        foreach (var turn in convs.EnumerateArray())
        {
            string at = $"{where}: conversations[{turns.Count}]";
            if (turn.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{at}: must be an object");
            if (!turn.TryGetProperty("from", out var from) || from.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{at}: missing string field \"from\"");
            var speaker = from.GetString() switch
            {
                "human" => Speaker.Human,
                "gpt" => Speaker.Gpt,
                var other => throw new InvalidDataException($"{at}: field \"from\" is '{other}', expected 'human' or 'gpt'"),
            };
            if (!turn.TryGetProperty("value", out var value) || value.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{at}: missing string field \"value\"");
            turns.Add(new Turn(speaker, value.GetString()!));
        }
        if (ConversationRules.Problem(turns, image is not null, endsWithAnswer: true) is { } problem)
            throw new InvalidDataException($"{where}: conversations: {problem}");
        return new ConversationSample(id, image, turns);
    }
}
