namespace VwLmm.Model.Checkpoints;

/// <summary>Checks a checkpoint's tensors against the list its config implies, reporting every problem in one line.</summary>
public static class CheckpointValidator
{
    /// <summary>
    /// Throws InvalidDataException (naming the checkpoint) listing all missing required tensors, all shape mismatches, all
    /// non-float dtypes and — unless <paramref name="allowUnused"/> — all tensors nobody expects. Tensors for which
    /// <paramref name="ignore"/> holds and old saved buffers (<see cref="HfNames.IsSavedBuffer"/>) are skipped.
    /// Returns the present tensors that will not be loaded (optional, ignored or, with allowUnused, unexpected), sorted.
    /// </summary>
    /// <param name="allowUnusedOption">The caller's option that allows unexpected tensors, named beside them; null: none does.</param>
    /// <param name="context">Said after the file's name, before the problems (what was being read).</param>
    public static IReadOnlyList<string> Validate(CheckpointReader reader, IReadOnlyList<ExpectedTensor> expected,
        bool allowUnused = false, Func<string, bool>? ignore = null, string? allowUnusedOption = "--allow-unused", string? context = null)
    {
        var byName = new Dictionary<string, ExpectedTensor>(StringComparer.Ordinal);
        foreach (var e in expected)
            if (!byName.TryAdd(e.Name, e)) throw new ArgumentException($"expected tensor list names '{e.Name}' twice");

        var missing = expected.Where(e => e.Required && !reader.Contains(e.Name)).Select(e => e.Name).ToList();
        var mismatched = new List<string>();
        var unexpected = new List<string>();
        var unused = new List<string>();
        foreach (var info in reader.Tensors)
        {
            if (!byName.TryGetValue(info.Name, out var e))
            {
                if (HfNames.IsSavedBuffer(info.Name) || ignore?.Invoke(info.Name) == true) unused.Add(info.Name);
                else unexpected.Add(info.Name);
                continue;
            }
            if (info.Shape != e.Shape) mismatched.Add($"{info.Name} expected {e.Shape} got {info.Shape}");
            else if (!info.DType.IsFloat()) mismatched.Add($"{info.Name} is {info.DType}, not a float dtype");
            if (!e.Required) unused.Add(info.Name);
        }

        var problems = new List<string>();
        if (missing.Count > 0) problems.Add($"{Count(missing.Count, "missing tensor")}: {string.Join(", ", missing)}");
        if (mismatched.Count > 0) problems.Add($"{Count(mismatched.Count, "mismatched tensor")} (vs config.json): {string.Join(", ", mismatched)}");
        if (unexpected.Count > 0 && !allowUnused)
        {
            string hint = allowUnusedOption is null ? "" : $" (skipped when unused tensors are allowed, {allowUnusedOption})";
            problems.Add($"{Count(unexpected.Count, "unexpected tensor")}{hint}: {string.Join(", ", unexpected)}");
        }
        if (problems.Count > 0) throw new InvalidDataException($"{reader.Path}: {(context is null ? "" : context + ": ")}{string.Join("; ", problems)}");

        if (allowUnused) unused.AddRange(unexpected);
        unused.Sort(StringComparer.Ordinal);
        return unused;
    }

    /// <summary>"1 noun" or "n nouns".</summary>
    public static string Count(int n, string noun) => n == 1 ? $"1 {noun}" : $"{n} {noun}s";
}
