using System.Text.Json;

namespace VwLmm.Model;

/// <summary>Repeated keys in the config files' JSON objects.</summary>
public static class JsonKeys
{
    /// <summary>
    /// The first key <paramref name="o"/> gives twice; null when none is. System.Text.Json keeps a repeated key, and
    /// which of its values a lookup returns would then decide silently.
    /// </summary>
    public static string? FirstRepeated(JsonElement o)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in o.EnumerateObject())
            if (!seen.Add(p.Name)) return p.Name;
        return null;
    }
}
