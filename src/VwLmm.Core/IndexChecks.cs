namespace VwLmm.Core;

/// <summary>
/// Range checks of host-side index data that every layer applies the same way: the Ops layer before uploading, and
/// the backends' vocabulary ops, which read targets and pairs anyway and must never index outside a logits row.
/// </summary>
public static class IndexChecks
{
    public const int IgnoreIndex = -100;

    /// <summary>targets [N]: each in [0, V) or the ignore index.</summary>
    public static void Targets(string op, ReadOnlySpan<int> targets, int v)
    {
        for (int i = 0; i < targets.Length; i++)
            if (targets[i] != IgnoreIndex && (uint)targets[i] >= (uint)v)
                throw new ArgumentOutOfRangeException(nameof(targets), $"{op}: target {targets[i]} of row {i} is outside [0, {v}) and is not the ignore index {IgnoreIndex}");
    }

    /// <summary>pairs [N·2] of (LM row, VM row) within [0, lmRows) × [0, vmRows).</summary>
    public static void VisualWordPairs(string op, ReadOnlySpan<int> pairs, int lmRows, int vmRows)
    {
        for (int i = 0; i < pairs.Length / 2; i++)
        {
            if ((uint)pairs[2 * i] >= (uint)lmRows)
                throw new ArgumentOutOfRangeException(nameof(pairs), $"{op}: pair {i} names LM row {pairs[2 * i]}, outside [0, {lmRows})");
            if ((uint)pairs[2 * i + 1] >= (uint)vmRows)
                throw new ArgumentOutOfRangeException(nameof(pairs), $"{op}: pair {i} names VM row {pairs[2 * i + 1]}, outside [0, {vmRows})");
        }
    }
}
