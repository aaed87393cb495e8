using System.Collections.Concurrent;
using NUnit.Framework;

namespace VwLmm.Tests;

/// <summary>
/// Scratch directories for tests that cannot clean up after themselves one by one (a CLI run's output, a model a
/// fixture shares): created here and deleted when the whole run ends, so that repeated `./build.sh test` runs leave
/// nothing behind in the temp directory.
/// </summary>
[SetUpFixture]
public sealed class TempDirectories
{
    private static readonly ConcurrentBag<string> Created = [];

    /// <summary>A new empty directory under the temp path, named prefix + a GUID.</summary>
    public static string Create(string prefix)
    {
        string d = Path.Combine(Path.GetTempPath(), prefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        Created.Add(d);
        return d;
    }

    [OneTimeTearDown]
    public void DeleteAll()
    {
        foreach (string d in Created)
            if (Directory.Exists(d)) Directory.Delete(d, recursive: true);
    }
}
