namespace VwLmm.Core;

/// <summary>
/// Write-to-temp-then-rename, so readers see either the old file (or directory) or the complete new one — never a torn one.
/// </summary>
public static class AtomicFile
{
    /// <summary>Runs <paramref name="write"/> on a temporary file beside <paramref name="path"/>, flushes it to disk and renames it over <paramref name="path"/>.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        string temp = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>Atomically replaces <paramref name="path"/> with <paramref name="text"/> (UTF-8, no BOM).</summary>
    public static void WriteAllText(string path, string text) =>
        Write(path, s => s.Write(System.Text.Encoding.UTF8.GetBytes(text)));

    /// <summary>Atomically replaces <paramref name="path"/> with <paramref name="bytes"/>.</summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var copy = bytes.ToArray();
        Write(path, s => s.Write(copy));
    }

    /// <summary>
    /// Runs <paramref name="build"/> on a new, empty directory beside <paramref name="path"/> (path.tmp-PID), then swaps it in
    /// for <paramref name="path"/>. A directory cannot be renamed over another, so the old one is moved aside first
    /// (path.old-PID) and deleted after: a crash between the two moves leaves it whole there. Once the swap is done,
    /// directories older runs left aside or half-built beside <paramref name="path"/> are superseded and deleted.
    /// </summary>
    public static void ReplaceDirectory(string path, Action<string> build)
    {
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        string parent = Path.GetDirectoryName(full)!, name = Path.GetFileName(full);
        string temp = $"{full}.tmp-{Environment.ProcessId}", old = $"{full}.old-{Environment.ProcessId}";
        if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        Directory.CreateDirectory(temp);
        try
        {
            build(temp);
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            throw;
        }
        if (Directory.Exists(full)) Directory.Move(full, old);
        Directory.Move(temp, full);
        foreach (string stale in Directory.GetDirectories(parent, name + ".old-*").Concat(Directory.GetDirectories(parent, name + ".tmp-*")))
            Directory.Delete(stale, recursive: true);
    }
}
