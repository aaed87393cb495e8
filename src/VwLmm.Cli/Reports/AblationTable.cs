using System.Globalization;
using System.Text.Json;

namespace VwLmm.Cli.Reports;

/// <summary>A column of the ablation table: the metric's key in each variant's values, and its heading.</summary>
public sealed record AblationMetric(string Key, string Label);

/// <summary>One metric of one variant over its seeds: mean and sample standard deviation (none from one seed) of
/// fractions in [0, 1], and how many seeds had the metric.</summary>
public sealed record AblationCell(double Mean, double? Std, int N);

/// <summary>A variant's row: the seeds it ran and its metrics; a metric none of its runs recorded is absent.</summary>
public sealed record AblationVariant(string Name, IReadOnlyList<long> Seeds, IReadOnlyDictionary<string, AblationCell> Values);

/// <summary>
/// The ablation summary scripts/ablations.py writes (its ablations.json), read for the report's variant × metric table.
/// The file names its own columns, so a metric added to the script needs no change here.
/// </summary>
public sealed record AblationTable(string? Description, IReadOnlyList<AblationMetric> Metrics, IReadOnlyList<AblationVariant> Variants)
{
    /// <summary>Reads and checks <paramref name="path"/>; every problem is one InvalidDataException naming the file and field.</summary>
    public static AblationTable Load(string path)
    {
        if (!File.Exists(path)) throw new CliException($"--ablations: '{path}' does not exist");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON at line {e.LineNumber + 1} ({e.Message.Split('.')[0]})");
        }
        using (doc)
            return Parse(doc.RootElement, m => new InvalidDataException($"{path}: {m}"));
    }

    private static AblationTable Parse(JsonElement root, Func<string, Exception> bad)
    {
        if (root.ValueKind != JsonValueKind.Object) throw bad("the top level must be an object");
        string? description = root.TryGetProperty("description", out var d) && d.ValueKind != JsonValueKind.Null
            ? d.ValueKind == JsonValueKind.String ? d.GetString() : throw bad("description must be a string")
            : null;

        var metrics = new List<AblationMetric>();
        foreach (var (m, i) in NonEmptyArray(root, "metrics", "metrics", bad))
        {
            string at = $"metrics[{i}]";
            var metric = new AblationMetric(RequiredString(m, "key", at, bad), RequiredString(m, "label", at, bad));
            if (metrics.Any(x => x.Key == metric.Key)) throw bad($"{at}.key '{metric.Key}' appears twice");
            metrics.Add(metric);
        }

        var variants = new List<AblationVariant>();
        foreach (var (v, i) in NonEmptyArray(root, "variants", "variants", bad))
        {
            string at = $"variants[{i}]";
            string name = RequiredString(v, "name", at, bad);
            var seeds = NonEmptyArray(v, "seeds", at + ".seeds", bad)
                .Select(s => s.Element.ValueKind == JsonValueKind.Number && s.Element.TryGetInt64(out long seed) && seed >= 0 ? seed : throw bad($"{at}.seeds[{s.Index}] must be a non-negative integer"))
                .ToList();
            if (!v.TryGetProperty("values", out var values) || values.ValueKind != JsonValueKind.Object)
                throw bad($"{at}.values must be an object");
            var cells = new Dictionary<string, AblationCell>();
            foreach (var p in values.EnumerateObject())
            {
                string field = $"{at}.values.{p.Name}";
                if (metrics.All(m => m.Key != p.Name)) throw bad($"{field} is not one of the metrics");
                cells[p.Name] = Cell(p.Value, field, seeds.Count, bad);
            }
            variants.Add(new AblationVariant(name, seeds, cells));
        }
        return new AblationTable(description, metrics, variants);
    }

    private static AblationCell Cell(JsonElement e, string at, int seeds, Func<string, Exception> bad)
    {
        if (e.ValueKind != JsonValueKind.Object) throw bad($"{at} must be an object with mean, std and n");
        // Fractions, as results.json has them: a percentage here would render as thousands.
        double mean = e.TryGetProperty("mean", out var m) && m.ValueKind == JsonValueKind.Number && m.GetDouble() is >= 0 and <= 1
            ? m.GetDouble() : throw bad($"{at}.mean must be a number in [0, 1]");
        int n = e.TryGetProperty("n", out var c) && c.ValueKind == JsonValueKind.Number && c.TryGetInt32(out int k) && k >= 1 && k <= seeds
            ? k : throw bad($"{at}.n must be an integer from 1 to the variant's {seeds} seeds");
        double? std = !e.TryGetProperty("std", out var s) || s.ValueKind == JsonValueKind.Null ? null
            : s.ValueKind == JsonValueKind.Number && s.GetDouble() >= 0 ? s.GetDouble()
            : throw bad($"{at}.std must be a non-negative number or null");
        return new AblationCell(mean, std, n);
    }

    private static string RequiredString(JsonElement e, string name, string at, Func<string, Exception> bad) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && v.GetString() is { Length: > 0 } s
            ? s : throw bad($"{at}.{name} must be a non-empty string");

    private static IEnumerable<(JsonElement Element, int Index)> NonEmptyArray(JsonElement e, string name, string at, Func<string, Exception> bad) =>
        e.TryGetProperty(name, out var a) && a.ValueKind == JsonValueKind.Array && a.GetArrayLength() > 0
            ? a.EnumerateArray().Select((x, i) => (x, i)).ToList()
            : throw bad($"{at} must be a non-empty array");

    /// <summary>The table as rows, header first: one row per variant (its seeds beside its name), one column per
    /// metric as a percentage, mean ± std; "(n = k)" where fewer of its seeds had the metric, "–" where none did.</summary>
    public IReadOnlyList<IReadOnlyList<string>> Rows()
    {
        var ci = CultureInfo.InvariantCulture;
        string Format(AblationCell? c, int seeds) => c is null ? "–"
            : string.Create(ci, $"{100 * c.Mean:0.0}") + (c.Std is { } s ? string.Create(ci, $" ± {100 * s:0.0}") : "") + (c.N < seeds ? $" (n = {c.N})" : "");
        return
        [
            ["variant (seeds)", .. Metrics.Select(m => m.Label)],
            .. Variants.Select(v => (IReadOnlyList<string>)[
                $"{v.Name} ({string.Join(", ", v.Seeds)})",
                .. Metrics.Select(m => Format(v.Values.GetValueOrDefault(m.Key), v.Seeds.Count))]),
        ];
    }
}
