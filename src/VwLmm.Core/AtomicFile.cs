using System.Runtime.InteropServices;

namespace VwLmm.Core;

/// <summary>
/// Write-to-temp-then-rename, so readers see either the old file (or directory) or the complete new one — never a torn one.
/// </summary>
public static unsafe partial class AtomicFile
{
    /// <summary>
    /// Runs <paramref name="write"/> on a temporary file beside <paramref name="path"/>, flushes it to disk and renames it
    /// over <paramref name="path"/>. A symbolic link is followed, so the file it names is replaced and the link kept; a
    /// path that names no regular file (/dev/stdout, a FIFO) is written in place, as nothing could be renamed over it
    /// without destroying it.
    /// </summary>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        if (IsSpecial(full))
        {
            using var target = new FileStream(full, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1 << 16);
            write(target);
            target.Flush();
            return;
        }
        if (new FileInfo(full).LinkTarget is not null && File.ResolveLinkTarget(full, returnFinalTarget: true) is { } linked) full = linked.FullName;
        string? dir = Path.GetDirectoryName(full);
        string temp = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        FileStream stream;
        try
        {
            if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
            stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot write {path}: {WhyNotCreated(full, e)}", e);
        }
        try
        {
            using (stream)
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
            SyncDirectory(Path.GetDirectoryName(full)!);
        }
        catch (Exception e)
        {
            File.Delete(temp);
            // A full disk is said of the file asked for: the temporary name is ours, and it is gone.
            if (e is IOException && e.Message.Contains(temp, StringComparison.Ordinal))
                throw new IOException($"cannot write {path}: {e.Message.Replace(temp, full, StringComparison.Ordinal)}", e);
            throw;
        }
    }

    /// <summary>
    /// Why <paramref name="path"/>, or the folder it goes in, could not be created, from the exception that stopped it:
    /// in .NET's own words a folder under a file is "Could not find a part of the path", and a folder that holds no new
    /// entries (/proc) "Could not find file".
    /// </summary>
    public static string WhyNotCreated(string path, Exception e)
    {
        string? above = Path.GetDirectoryName(Path.GetFullPath(path));
        while (above is not null && !Directory.Exists(above) && !File.Exists(above)) above = Path.GetDirectoryName(above);
        if (above is not null && File.Exists(above)) return $"{above} is a file, not a folder";
        return e switch
        {
            UnauthorizedAccessException => "permission denied",
            FileNotFoundException or DirectoryNotFoundException => "nothing can be created in that folder",
            _ => e.Message,
        };
    }

    /// <summary>
    /// Whether <paramref name="path"/> exists, links included, as something other than a regular file or a directory
    /// (a device, FIFO or socket). .NET reports these as ordinary files, so this asks stat(2), whose st_mode sits at a
    /// fixed offset per architecture; where that is unknown or stat is not exported (glibc before 2.33) it answers
    /// false, and the path is treated as a file.
    /// </summary>
    internal static bool IsSpecial(string path)
    {
        int offset = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => 24, // st_dev, st_ino, st_nlink (8 bytes each), then st_mode
            Architecture.Arm64 => 16, // st_dev, st_ino, then st_mode
            _ => -1,
        };
        if (offset < 0 || !OperatingSystem.IsLinux()) return false;
        byte* buffer = stackalloc byte[256];
        try
        {
            if (Stat(path, buffer) != 0) return false;
        }
        catch (EntryPointNotFoundException)
        {
            return false;
        }
        uint type = *(uint*)(buffer + offset) & 0xF000;
        return type is not (0x8000 or 0x4000); // S_IFREG, S_IFDIR
    }

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Stat(string path, byte* buffer);

    /// <summary>
    /// Flushes a directory's entries to disk (fsync(2) on the directory), so that a rename the caller reported done
    /// survives a power loss: fsync of the file alone makes its bytes durable, not its new name. Best effort: where the
    /// file system or platform cannot, the rename stands as the kernel has it.
    /// </summary>
    private static void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            int fd = Open(directory, 0); // O_RDONLY: fsync needs no write access, and a directory opens no other way
            if (fd < 0) return;
            FileSync(fd);
            Close(fd);
        }
        catch (EntryPointNotFoundException)
        {
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int FileSync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

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
    /// directories older runs left aside or half-built beside <paramref name="path"/> are superseded and deleted. A
    /// symbolic link is followed, as <see cref="Write"/> does: the directory it names is replaced and the link kept.
    /// </summary>
    public static void ReplaceDirectory(string path, Action<string> build)
    {
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        if (new DirectoryInfo(full).LinkTarget is not null && Directory.ResolveLinkTarget(full, returnFinalTarget: true) is { } linked)
            full = linked.FullName.TrimEnd(Path.DirectorySeparatorChar);
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
        // The new tree's files are flushed by whoever wrote them; its own entries and the two renames below are not.
        SyncDirectory(temp);
        if (Directory.Exists(full))
        {
            // A run that crashed while deleting its old copy, under the same process id (PID 1 in every container),
            // left one: superseded by the complete directory at path, which is about to take its place.
            if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
            Directory.Move(full, old);
        }
        Directory.Move(temp, full);
        SyncDirectory(parent);
        foreach (string stale in Directory.GetDirectories(parent, name + ".old-*").Concat(Directory.GetDirectories(parent, name + ".tmp-*")))
            Directory.Delete(stale, recursive: true);
    }
}
