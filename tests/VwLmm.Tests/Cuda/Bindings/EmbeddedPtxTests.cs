using NUnit.Framework;
using VwLmm.Cuda;

namespace VwLmm.Tests.Cuda.Bindings;

/// <summary>What cmake/ptx.cmake produced and VwLmm.Cuda embedded, against the kernels/*.cu files of this checkout.</summary>
public class EmbeddedPtxTests
{
    private static string[] KernelFiles()
    {
        var dir = Path.Combine(CudaFixtures.RepoRoot, "kernels");
        var files = Directory.Exists(dir) ? Directory.GetFiles(dir, "*.cu").Order(StringComparer.Ordinal).ToArray() : [];
        if (files.Length == 0) Assert.Ignore("no kernels/*.cu in this checkout yet");
        return files;
    }

    [Test]
    public void EveryKernelFileIsEmbeddedForBothArchsAndNothingElse()
    {
        var stems = KernelFiles().Select(f => Path.GetFileNameWithoutExtension(f)).ToArray();
        Assert.That(KernelModules.Names, Is.EqualTo(stems), "embedded modules vs kernels/*.cu (rerun ./build.sh build)");
        foreach (var module in stems)
            foreach (var arch in PtxCompiler.PtxArchs)
            {
                var ptx = KernelModules.GetPtx(module, arch);
                Assert.That(ptx, Does.Contain($".target sm_{arch[^2..]}"), $"{module} {arch}");
                Assert.That(PtxInfo.Parse(ptx), Is.Not.Empty, $"{module} {arch} has no .entry");
            }
    }

    [Test]
    public void ResourceReportCoversEveryEntryOnBothRealArchs()
    {
        KernelFiles();
        var report = KernelModules.Resources();
        foreach (var module in KernelModules.Names)
        {
            var entries = PtxInfo.Parse(KernelModules.GetPtx(module, KernelModules.Compute80)).Select(e => e.Name);
            foreach (var arch in PtxCompiler.ValidationArchs)
                Assert.That(report.Where(r => r.Module == module && r.Arch == arch).Select(r => r.Kernel),
                            Is.EquivalentTo(entries), $"{module} {arch}");
        }
    }

    // ptxgen.c (C, at build time) and PtxCompiler (C#, here) parse ptxas independently: their figures must agree.
    [Test]
    public void BuildReportAgreesWithPtxCompiler()
    {
        CudaFixtures.RequireNvrtc();
        var files = KernelFiles();
        if (!KernelModules.ResourceReport!.StartsWith("# compiler: NVRTC", StringComparison.Ordinal))
            Assert.Ignore("the build used nvcc, whose ptxas figures may differ from NVRTC's");
        var kernelsDir = Path.Combine(CudaFixtures.RepoRoot, "kernels");
        var report = KernelModules.Resources();
        foreach (var file in files)
        {
            var module = Path.GetFileNameWithoutExtension(file);
            var fresh = PtxCompiler.Validate(File.ReadAllText(file), file, [], [kernelsDir]);
            Assert.That(fresh, Is.EquivalentTo(report.Where(r => r.Module == module)), module);
        }
    }

    [Test]
    public void MissingModuleIsAClearError()
    {
        var e = Assert.Throws<ArgumentException>(() => KernelModules.GetPtx("no_such_module", KernelModules.Compute80))!;
        Assert.That(e.Message, Does.Contain("no_such_module"));
    }

    [TestCase(8, 0, "compute_80")]
    [TestCase(8, 9, "compute_80")]
    [TestCase(9, 0, "compute_90")]
    [TestCase(10, 0, "compute_90")]
    public void ArchForComputeCapability(int major, int minor, string arch) =>
        Assert.That(KernelModules.ArchFor(major, minor), Is.EqualTo(arch));

    [Test]
    public void PreAmpereIsNotSupported() => Assert.Throws<NotSupportedException>(() => KernelModules.ArchFor(7, 5));
}
