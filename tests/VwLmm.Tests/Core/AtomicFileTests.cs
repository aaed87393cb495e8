using NUnit.Framework;
using VwLmm.Core;

namespace VwLmm.Tests.Core;

/// <summary>
/// <see cref="AtomicFile"/>: a replaced directory stays whole until the new one is complete; a file written through a
/// symbolic link keeps the link, and a FIFO (like /dev/stdout, which renaming over would destroy) is written in place.
/// </summary>
public class AtomicFileTests
{
    private string _dir = "";

    [SetUp]
    public void Create() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "vwlmm-atomic-" + Guid.NewGuid().ToString("N")));

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
        // One left by an earlier process with this one's id (containers reuse PID 1), not empty.
        Directory.CreateDirectory(path + $".old-{Environment.ProcessId}");
        File.WriteAllText(Path.Combine(path + $".old-{Environment.ProcessId}", "older.txt"), "older");
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

    [Test]
    public void ALinkKeepsPointingAtTheDirectoryItReplaces()
    {
        string real = Path.Combine(_dir, "disk", "model"), link = Path.Combine(_dir, "model");
        Directory.CreateDirectory(real);
        File.WriteAllText(Path.Combine(real, "old.txt"), "old");
        Directory.CreateSymbolicLink(link, real);
        AtomicFile.ReplaceDirectory(link, temp => File.WriteAllText(Path.Combine(temp, "new.txt"), "new"));
        Assert.That(new DirectoryInfo(link).LinkTarget, Is.EqualTo(real));
        Assert.That(Directory.GetFiles(real).Select(Path.GetFileName), Is.EquivalentTo(new[] { "new.txt" }));
        Assert.That(Directory.GetFileSystemEntries(Path.Combine(_dir, "disk")), Is.EquivalentTo(new[] { real }), "nothing left beside it");
    }

    [Test]
    public void ALinkKeepsPointingAtTheFileItReplaces()
    {
        string real = Path.Combine(_dir, "real.txt"), link = Path.Combine(_dir, "link.txt");
        File.WriteAllText(real, "old");
        File.CreateSymbolicLink(link, real);
        AtomicFile.WriteAllText(link, "new");
        Assert.That(new FileInfo(link).LinkTarget, Is.EqualTo(real));
        Assert.That(File.ReadAllText(real), Is.EqualTo("new"));
        Assert.That(Directory.GetFiles(_dir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "real.txt", "link.txt" }), "no temporary left");
        string dangling = Path.Combine(_dir, "dangling.txt"), later = Path.Combine(_dir, "later.txt");
        File.CreateSymbolicLink(dangling, later);
        AtomicFile.WriteAllText(dangling, "made");
        Assert.That(File.ReadAllText(later), Is.EqualTo("made"), "a dangling link's file is created");
        Assert.That(new FileInfo(dangling).LinkTarget, Is.EqualTo(later));
    }

    [Test]
    public void AFifoIsWrittenInPlace()
    {
        string fifo = Fifo.Make(Path.Combine(_dir, "out.npy"));
        Assert.That(AtomicFile.IsSpecial(fifo), Is.True);
        var reader = Task.Run(() => File.ReadAllText(fifo));
        AtomicFile.WriteAllText(fifo, "through the pipe");
        Assert.That(reader.Wait(TimeSpan.FromSeconds(30)), "the reader got the end of the data");
        Assert.That(reader.Result, Is.EqualTo("through the pipe"));
        Assert.That(AtomicFile.IsSpecial(fifo), Is.True, "still a FIFO, not a file renamed over it");
        Assert.That(Directory.GetFileSystemEntries(_dir), Has.Length.EqualTo(1));
    }

    [Test]
    public void AFailedWriteNamesThePathAskedForNotTheTemporary()
    {
        string file = Path.Combine(_dir, "plain.txt"), under = Path.Combine(file, "x.npy"), full = Path.Combine(_dir, "full.npy");
        File.WriteAllText(file, "kept");
        string Message(string path, Action<Stream> write) => Assert.Throws<IOException>(() => AtomicFile.Write(path, write))!.Message;
        Assert.That(Message(under, _ => { }), Is.EqualTo($"cannot write {under}: {file} is a file, not a folder"));
        Assert.That(Message(Path.Combine(under, "deeper", "x.npy"), _ => { }), Does.EndWith($": {file} is a file, not a folder"));
        if (OperatingSystem.IsLinux())
            Assert.That(Message("/proc/vwlmm-out.npy", _ => { }), Is.EqualTo("cannot write /proc/vwlmm-out.npy: nothing can be created in that folder"));
        // .NET's words for ENOSPC, which name the file the bytes were going to: our temporary.
        Assert.That(Message(full, s => throw new IOException($"No space left on device : '{((FileStream)s).Name}'")),
                    Is.EqualTo($"cannot write {full}: No space left on device : '{full}'"));
        Assert.That(Directory.GetFileSystemEntries(_dir), Is.EquivalentTo(new[] { file }), "no temporary left");
        Assert.That(File.ReadAllText(file), Is.EqualTo("kept"));
    }

    [Test]
    public void OnlyDevicesFifosAndSocketsAreSpecial()
    {
        string file = Path.Combine(_dir, "plain.txt"), link = Path.Combine(_dir, "null-link");
        File.WriteAllText(file, "x");
        File.CreateSymbolicLink(link, "/dev/null");
        Assert.That(AtomicFile.IsSpecial("/dev/null"), Is.True);
        Assert.That(AtomicFile.IsSpecial(link), Is.True, "a link is followed");
        Assert.That(AtomicFile.IsSpecial(file), Is.False);
        Assert.That(AtomicFile.IsSpecial(_dir), Is.False);
        Assert.That(AtomicFile.IsSpecial(Path.Combine(_dir, "absent")), Is.False);
    }
}
