namespace VwLmm.Core;

/// <summary>The check a reader makes of a file the user named, before it opens it.</summary>
public static class InputFile
{
    /// <summary>
    /// <paramref name="path"/>, when it names a file; otherwise a FileNotFoundException naming it, as
    /// <paramref name="what"/> ("dataset file") when nothing is there. A directory there is said to be one: "not found"
    /// would send the user looking for a path that exists.
    /// </summary>
    public static string Existing(string path, string what) =>
        File.Exists(path) ? path
        : throw new FileNotFoundException(Directory.Exists(path) ? $"{path}: is a directory, not a file" : $"{path}: {what} not found", path);
}
