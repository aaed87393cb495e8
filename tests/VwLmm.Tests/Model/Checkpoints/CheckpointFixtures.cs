using NUnit.Framework;

namespace VwLmm.Tests.Model.Checkpoints;

/// <summary>Paths of the fixtures made by fixtures/checkpoints/make_fixtures.py, and per-test scratch directories.</summary>
internal static class CheckpointFixtures
{
    public static string Dir => Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", "checkpoints");

    public static string File(params string[] parts) => Path.Combine([Dir, .. parts]);

    public static T[] ReadBin<T>(string name) where T : unmanaged =>
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(System.IO.File.ReadAllBytes(File(name))).ToArray();

    /// <summary>A fresh empty directory, removed when <see cref="Scratch.Dispose"/> runs.</summary>
    public sealed class Scratch : IDisposable
    {
        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "vwlmm-ckpt-" + Guid.NewGuid().ToString("N"));
        public Scratch() => Directory.CreateDirectory(Path);
        public string this[string name] => System.IO.Path.Combine(Path, name);
        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
