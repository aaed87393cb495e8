using System.Buffers.Binary;
using NUnit.Framework;
using VwLmm.Cuda;

namespace VwLmm.Tests.Cuda.Bindings;

public class NvrtcTests
{
    private const ushort EmCuda = 190; // ELF e_machine of NVIDIA CUBINs

    [SetUp]
    public void RequireNvrtc() => CudaFixtures.RequireNvrtc();

    [Test]
    public void VersionIsReported() => Assert.That(PtxCompiler.Version, Does.Match(@"^\d+\.\d+$"));

    [TestCase("compute_80", "sm_80")]
    [TestCase("compute_90", "sm_90")]
    public void SampleCompilesToPtxForVirtualArch(string arch, string target)
    {
        var result = PtxCompiler.Compile(CudaFixtures.SampleSource, "sample.cu", arch, CudaFixtures.SampleHeaders);
        Assert.That(result.IsCubin, Is.False);
        Assert.That(result.Ptx, Does.Contain($".target {target}\n"));
        Assert.That(result.Ptx, Does.Contain(".visible .entry axpy_f32("));
        Assert.That(result.Ptx, Does.Contain(".visible .entry gather_row_sums_f32("));
        Assert.That(result.Ptx, Does.Contain(".visible .entry block_sum_f32("));
        Assert.That(result.Ptx, Does.Not.Contain("\0"));
    }

    [TestCase("sm_80")]
    [TestCase("sm_90")]
    public void SampleCompilesToCubinWithResourceFigures(string arch)
    {
        var result = PtxCompiler.Compile(CudaFixtures.SampleSource, "sample.cu", arch, CudaFixtures.SampleHeaders);
        Assert.That(result.IsCubin, Is.True);
        Assert.That(result.Output.AsSpan(0, 4).ToArray(), Is.EqualTo(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }));
        Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(result.Output.AsSpan(18)), Is.EqualTo(EmCuda));

        var resources = KernelResources.ParsePtxasLog("sample", arch, result.Log).ToDictionary(r => r.Kernel);
        Assert.That(resources.Keys, Is.EquivalentTo(new[] { "axpy_f32", "gather_row_sums_f32", "block_sum_f32" }));
        // block_sum_f32 declares float partial[256]; the others use no shared memory.
        Assert.That(resources["block_sum_f32"].SharedBytes, Is.EqualTo(256 * sizeof(float)));
        Assert.That(resources["axpy_f32"].SharedBytes, Is.Zero);
        Assert.That(resources["gather_row_sums_f32"].SharedBytes, Is.Zero);
        Assert.That(resources.Values.Select(r => r.Registers), Has.All.InRange(4, 255));
        Assert.That(resources.Values.Select(r => r.SpillStoreBytes), Has.All.Zero);
        Assert.That(resources.Values.Select(r => r.Arch), Has.All.EqualTo(arch));
    }

    [Test]
    public void ValidateCoversBothRealArchs()
    {
        var resources = PtxCompiler.Validate(CudaFixtures.SampleSource, "sample.cu", CudaFixtures.SampleHeaders);
        Assert.That(resources.Select(r => (r.Arch, r.Kernel)), Is.EquivalentTo(new[]
        {
            ("sm_80", "axpy_f32"), ("sm_80", "gather_row_sums_f32"), ("sm_80", "block_sum_f32"),
            ("sm_90", "axpy_f32"), ("sm_90", "gather_row_sums_f32"), ("sm_90", "block_sum_f32"),
        }));
        Assert.That(resources.Select(r => r.Module), Has.All.EqualTo("sample"));
    }

    [Test]
    public void HeaderFoundThroughIncludePath()
    {
        var result = PtxCompiler.Compile(CudaFixtures.SampleSource, "sample.cu", "compute_80", [], [CudaFixtures.FixtureDir]);
        Assert.That(result.Ptx, Does.Contain(".entry gather_row_sums_f32("));
    }

    [Test]
    public void CompileErrorCarriesTheNvrtcLogLine()
    {
        const string source = "extern \"C\" __global__ void broken(float* o)\n{\n    o[0] = undefined_thing;\n}\n";
        var e = Assert.Throws<CudaException>(() => PtxCompiler.Compile(source, "broken.cu", "compute_80", []))!;
        Assert.That(e.ErrorName, Is.EqualTo("NVRTC_ERROR_COMPILATION"));
        Assert.That(e.Message, Does.StartWith("nvrtcCompileProgram(broken.cu, compute_80): NVRTC_ERROR_COMPILATION: "));
        Assert.That(e.Message, Does.Contain("broken.cu(3): error: identifier \"undefined_thing\" is undefined"));
        Assert.That(e.Message, Does.Not.Contain("\n"));
        Assert.That(e.Log, Does.Contain("1 error detected"));
    }

    [Test]
    public void MissingHeaderIsACompileError()
    {
        var e = Assert.Throws<CudaException>(() => PtxCompiler.Compile(CudaFixtures.SampleSource, "sample.cu", "compute_80", []))!;
        Assert.That(e.Message, Does.Contain("sample.cuh"));
    }

    // 64 KiB of static shared memory is valid PTX; only ptxas knows the 48 KiB static limit, so only the CUBIN compile fails.
    [Test]
    public void StaticSharedMemoryOverLimitFailsOnlyTheCubinCompile()
    {
        const string source = """
            extern "C" __global__ void too_much_shared(float* out)
            {
                __shared__ float tile[16384];
                tile[threadIdx.x] = out[threadIdx.x];
                __syncthreads();
                out[threadIdx.x] = tile[16383 - threadIdx.x];
            }
            """;
        var ptx = PtxCompiler.Compile(source, "shared.cu", "compute_90", []);
        Assert.That(ptx.Ptx, Does.Contain(".shared .align 4 .b8"));

        var e = Assert.Throws<CudaException>(() => PtxCompiler.Compile(source, "shared.cu", "sm_90", []))!;
        Assert.That(e.Message, Does.StartWith("nvrtcCompileProgram(shared.cu, sm_90): NVRTC_ERROR_COMPILATION: "));
        Assert.That(e.Message, Does.Contain("ptxas error"));
        Assert.That(e.Message, Does.Contain("too_much_shared"));
        Assert.That(e.Message, Does.Contain("too much shared data"));
    }

    [Test]
    public void BadArchIsRejectedBeforeCompiling() =>
        Assert.Throws<ArgumentException>(() => PtxCompiler.Compile("", "x.cu", "sm90", []));
}
