using System.Text.Json;

namespace VwLmm.Model;

/// <summary>Reading a JSON value as a 32-bit integer, for the config files' one-line errors.</summary>
public static class JsonInt
{
    /// <summary>The value as an int, or null with <paramref name="problem"/> saying why not ("must be …, got …").</summary>
    public static int? Read(JsonElement e, out string problem)
    {
        problem = "";
        if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v)) return v;
        // A whole number out of range is told apart from a fraction or a string: "an integer" alone would puzzle.
        bool whole = e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out double d) && Math.Floor(d) == d;
        problem = $"must be {(whole ? "an integer that fits 32 bits" : "an integer")}, got {e.GetRawText()}";
        return null;
    }
}
