using NUnit.Framework;
using VwLmm.Cuda;

namespace VwLmm.Tests.Cuda.Bindings;

public class PtxInfoTests
{
    private const PtxParamKind Ptr = PtxParamKind.Int64OrPointer;

    // Written from sample.cu's C signatures: (kind, size, align) per parameter.
    private static readonly Dictionary<string, (PtxParamKind Kind, int Size, int Align)[]> SampleSignatures = new()
    {
        // (float* y, const float* x, float alpha, int n)
        ["axpy_f32"] = [(Ptr, 8, 8), (Ptr, 8, 8), (PtxParamKind.Float32, 4, 4), (PtxParamKind.Int32, 4, 4)],
        // (float* out, const float* table, const long long* ids, SampleDims dims, double scale, unsigned int bias,
        //  long long row_offset, unsigned char negate); SampleDims is three ints
        ["gather_row_sums_f32"] =
        [
            (Ptr, 8, 8), (Ptr, 8, 8), (Ptr, 8, 8), (PtxParamKind.Struct, 12, 4), (PtxParamKind.Float64, 8, 8),
            (PtxParamKind.Int32, 4, 4), (PtxParamKind.Int64OrPointer, 8, 8), (PtxParamKind.Int8, 1, 1),
        ],
        // (float* out, const float* x, int n)
        ["block_sum_f32"] = [(Ptr, 8, 8), (Ptr, 8, 8), (PtxParamKind.Int32, 4, 4)],
    };

    [TestCase("compute_80")]
    [TestCase("compute_90")]
    public void SampleEntriesMatchTheirCSignatures(string arch)
    {
        CudaFixtures.RequireNvrtc();
        var ptx = PtxCompiler.Compile(CudaFixtures.SampleSource, "sample.cu", arch, CudaFixtures.SampleHeaders).Ptx;
        var entries = PtxInfo.Parse(ptx);
        Assert.That(entries.Select(e => e.Name), Is.EquivalentTo(SampleSignatures.Keys));
        foreach (var entry in entries)
            Assert.That(entry.Params.Select(p => (p.Kind, p.Size, p.Align)), Is.EqualTo(SampleSignatures[entry.Name]), entry.Name);
        Assert.That(entries.Single(e => e.Name == "axpy_f32").Params[2].Name, Is.EqualTo("axpy_f32_param_2"));
    }

    [Test]
    public void HandWrittenPtxVariants()
    {
        const string ptx = """
            // .visible .entry commented_out(.param .u32 x)
            .func (.param .b32 func_retval0) helper(.param .b32 helper_param_0)
            { ret; }
            .visible .entry no_params()
            { ret; }
            .entry local_entry(
            	.param .u64 .ptr .global .align 4 local_entry_param_0,
            	.param .align 16 .b8 local_entry_param_1[32],
            	.param .s32 local_entry_param_2,
            	.param .b16 local_entry_param_3
            )
            .maxntid 256, 1, 1
            { ret; }
            """;
        var entries = PtxInfo.Parse(ptx);
        Assert.That(entries.Select(e => e.Name), Is.EqualTo(new[] { "no_params", "local_entry" }));
        Assert.That(entries[0].Params, Is.Empty);
        Assert.That(entries[1].Params.Select(p => (p.Name, p.Kind, p.Size, p.Align)), Is.EqualTo(new[]
        {
            ("local_entry_param_0", PtxParamKind.Int64OrPointer, 8, 4),
            ("local_entry_param_1", PtxParamKind.Struct, 32, 16),
            ("local_entry_param_2", PtxParamKind.Int32, 4, 4),
            ("local_entry_param_3", PtxParamKind.Int16, 2, 2),
        }));
    }

    [TestCase(".param .align x .b8 k_param_0[4]")]
    [TestCase(".param .b8 k_param_0[4")]
    [TestCase("k_param_0")]
    public void MalformedParameterIsAnError(string declaration)
    {
        var e = Assert.Throws<InvalidDataException>(() => PtxInfo.Parse($".visible .entry k(\n{declaration}\n)\n{{ ret; }}"))!;
        Assert.That(e.Message, Does.StartWith("PTX entry k: "));
    }

    [Test]
    public void UnknownParameterTypeIsAnError()
    {
        var e = Assert.Throws<InvalidDataException>(() => PtxInfo.Parse(".visible .entry k(\n.param .pred k_param_0\n)\n{ ret; }"))!;
        Assert.That(e.Message, Does.Contain("PTX entry k"));
    }
}
