using NUnit.Framework;
using VwLmm.Core;

namespace VwLmm.Tests.Core;

/// <summary><see cref="AtomicFile.ReplaceDirectory"/>: the old directory stays whole until the new one is complete.</summary>
public class AtomicDirectoryTests
{
    private string _dir = "";

    [SetUp]
    public void Create() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "vwlmm-atomicdir-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void Remove() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void ReplacesTheOldDirectoryAndClearsWhatCrashedRunsLeftBeside()
    {
        string path = Path.Combine(_dir, "model");
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Combine(path, "stale.txt"), "old");
        Directory.CreateDirectory(path + ".old-1");
        Directory.CreateDirectory(path + ".tmp-2");
        Directory.CreateDirectory(Path.Combine(_dir, "modelling"));
        AtomicFile.ReplaceDirectory(path, temp => File.WriteAllText(Path.Combine(temp, "new.txt"), "new"));
        Assert.That(Directory.GetFiles(path).Select(Path.GetFileName), Is.EquivalentTo(new[] { "new.txt" }));
        Assert.That(Directory.GetDirectories(_dir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "model", "modelling" }));
    }

    [Test]
    public void AFailedBuildLeavesTheOldDirectoryAndNoTemporary()
    {
        string path = Path.Combine(_dir, "model");
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Combine(path, "kept.txt"), "old");
        Assert.Throws<IOException>(() => AtomicFile.ReplaceDirectory(path, temp =>
        {
            File.WriteAllText(Path.Combine(temp, "half.txt"), "…");
            throw new IOException("disk full");
        }));
        Assert.That(File.ReadAllText(Path.Combine(path, "kept.txt")), Is.EqualTo("old"));
        Assert.That(Directory.GetDirectories(_dir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "model" }));
    }
}
