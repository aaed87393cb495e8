using System.Diagnostics;
using NUnit.Framework;

namespace VwLmm.Tests;

/// <summary>Named pipes, for the tests of what a verb does when its input or output is a pipe rather than a file.</summary>
internal static class Fifo
{
    /// <summary>Creates a FIFO at <paramref name="path"/> (coreutils' mkfifo) and returns the path.</summary>
    public static string Make(string path)
    {
        using var mkfifo = Process.Start("mkfifo", [path]);
        mkfifo.WaitForExit();
        Assert.That(mkfifo.ExitCode, Is.Zero, $"mkfifo {path}");
        return path;
    }
}
