using System.Text.Json;

namespace VwLmm.Model;

/// <summary>Where a recorded JSON object and the one the current run would record part ways.</summary>
public static class JsonDifference
{
    /// <summary>
    /// The first key of <paramref name="was"/> whose value <paramref name="now"/> lacks or gives otherwise, with both
    /// values as compact JSON ("nothing" where <paramref name="now"/> lacks the key); null when there is none. Keys
    /// only <paramref name="now"/> has are not differences: they are what later versions add.
    /// </summary>
    public static (string Key, string Was, string Now)? First(JsonElement was, JsonElement now)
    {
        foreach (var p in was.EnumerateObject())
        {
            bool has = now.TryGetProperty(p.Name, out var v);
            if (!has || !JsonElement.DeepEquals(p.Value, v))
                return (p.Name, JsonSerializer.Serialize(p.Value), has ? JsonSerializer.Serialize(v) : "nothing");
        }
        return null;
    }
}
