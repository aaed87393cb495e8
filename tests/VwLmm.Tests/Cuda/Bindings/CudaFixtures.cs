using NUnit.Framework;
using VwLmm.Cuda.Native;

namespace VwLmm.Tests.Cuda.Bindings;

/// <summary>Paths and sources shared by the binding tests.</summary>
internal static class CudaFixtures
{
    public static string FixtureDir => Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", "cuda");

    public static string SampleSource => File.ReadAllText(Path.Combine(FixtureDir, "sample.cu"));

    /// <summary>sample.cu's one header, passed by content (NVRTC's headers/includeNames), not found through -I.</summary>
    public static (string Name, string Content)[] SampleHeaders => [("sample.cuh", File.ReadAllText(Path.Combine(FixtureDir, "sample.cuh")))];

    /// <summary>The checkout's root: the directory holding VwLmm.Native.sln above the test binaries.</summary>
    public static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir != null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "VwLmm.Native.sln"))) return dir.FullName;
            throw new DirectoryNotFoundException("VwLmm.Native.sln not found above " + TestContext.CurrentContext.TestDirectory);
        }
    }

    public static void RequireNvrtc()
    {
        if (!Nvrtc.IsLoadable) Assert.Ignore("libnvrtc not installed (./build.sh deps installs it)");
    }
}
