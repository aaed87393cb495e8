namespace VwLmm.Cli;

/// <summary>
/// One process's exclusive hold on a run folder, for as long as it trains or evaluates there: two runs sharing a folder
/// would interleave their metrics.jsonl lines and overwrite each other's checkpoints.
/// </summary>
/// <remarks>FileShare.None is an flock on Unix and a share mode on Windows, so the OS drops it when the process dies.</remarks>
internal sealed class RunDirectoryLock : IDisposable
{
    public const string FileName = ".vwlmm.lock";

    private readonly FileStream _file;

    private RunDirectoryLock(FileStream file) => _file = file;

    /// <summary>
    /// Creates <paramref name="dir"/> (named by <paramref name="source"/>) if needed and locks it; a folder another process
    /// holds is a one-line error.
    /// </summary>
    public static RunDirectoryLock Acquire(string source, string dir)
    {
        CliArgs.CreateDirectory(source, dir);
        string path = Path.Combine(dir, FileName);
        try
        {
            return new RunDirectoryLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
        }
        catch (IOException)
        {
            throw new CliException($"{dir}: in use by another vwlmm run (it holds {path}); wait for it or choose another folder");
        }
    }

    public void Dispose() => _file.Dispose();
}
