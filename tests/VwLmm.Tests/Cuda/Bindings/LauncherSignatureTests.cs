using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cuda;
using static VwLmm.Tests.Ops.OpHarness;

namespace VwLmm.Tests.Cuda.Bindings;

/// <summary>
/// Every kernel of the embedded PTX against what its C# launcher packs: one small call of every IBackend op on the
/// emulated backend records the packed argument kinds (<see cref="CudaBackend.LaunchedSignatures"/>), which must match
/// the PTX entry's parameter list (count, size class) and the kernel's C parameter types as g++ saw them (the emulator's
/// registry, which tells a pointer from a 64-bit integer where PTX cannot). The expectations come from the compilers,
/// never from the launchers.
/// </summary>
public sealed class LauncherSignatureTests
{
    /// <summary>Every difference between a launcher's packed kinds, the kernel's C signature (one letter per parameter,
    /// see kernels/emu/cuda_emu.h param_kind) and its PTX entry.</summary>
    private static List<string> Mismatches(PtxEntry entry, IReadOnlyList<KernelArgKind> packed, string cSignature)
    {
        var errors = new List<string>();
        if (packed.Count != entry.Params.Count)
            errors.Add($"{entry.Name}: the launcher packs {packed.Count} arguments, the PTX entry has {entry.Params.Count}");
        if (cSignature.Length != entry.Params.Count)
            errors.Add($"{entry.Name}: the C signature '{cSignature}' has {cSignature.Length} parameters, the PTX entry {entry.Params.Count}");
        for (int i = 0; i < Math.Min(packed.Count, entry.Params.Count); i++)
        {
            var (letter, ptxKind) = packed[i] switch
            {
                KernelArgKind.Pointer => ('p', PtxParamKind.Int64OrPointer),
                KernelArgKind.Int64 => ('l', PtxParamKind.Int64OrPointer),
                KernelArgKind.Int32 => ('i', PtxParamKind.Int32),
                KernelArgKind.Float32 => ('f', PtxParamKind.Float32),
                _ => throw new ArgumentOutOfRangeException(nameof(packed), packed[i], null),
            };
            if (entry.Params[i].Kind != ptxKind)
                errors.Add($"{entry.Name} argument {i}: the launcher packs {packed[i]}, PTX declares '{entry.Params[i].Declaration}'");
            if (i < cSignature.Length && cSignature[i] != letter)
                errors.Add($"{entry.Name} argument {i}: the launcher packs {packed[i]}, the kernel's C type is '{cSignature[i]}' (p pointer, i int, l long long, f float)");
        }
        return errors;
    }

    private static readonly PtxEntry PointerKernel =
        new("k", [new PtxParam("k_param_0", PtxParamKind.Int64OrPointer, 8, 8, ".param .u64 k_param_0")]);

    [Test]
    public void CheckCatchesAnIntPackedForAPointer() =>
        Assert.That(Mismatches(PointerKernel, [KernelArgKind.Int32], "p"), Has.Count.EqualTo(2).And.Some.Contains("argument 0"));

    [Test]
    public void CheckCatchesALongPackedForAPointer() =>
        Assert.That(Mismatches(PointerKernel, [KernelArgKind.Int64], "p"), Has.One.Contains("C type is 'p'"));

    [Test]
    public void CheckCatchesAMissingArgument() =>
        Assert.That(Mismatches(PointerKernel, [], "p"), Has.One.Contains("packs 0 arguments"));

    [Test]
    public void CheckAcceptsAMatch() => Assert.That(Mismatches(PointerKernel, [KernelArgKind.Pointer], "p"), Is.Empty);

    [Test]
    public void EveryEmbeddedKernelMatchesItsLauncher()
    {
        var runtime = new EmulatedRuntime();
        using var backend = new CudaBackend(runtime);
        var skipped = new List<string>();
        using (var s = new Scope(backend))
        {
            foreach (var (op, call) in ConformanceCalls(s))
            {
                try { call(); }
                catch (NotSupportedException) { skipped.Add(op); }
            }
            backend.Synchronize();
            s.CheckGuards();
        }

        var errors = new List<string>();
        foreach (var module in KernelModules.Names)
        foreach (var arch in new[] { KernelModules.Compute80, KernelModules.Compute90 })
        foreach (var entry in PtxInfo.Parse(KernelModules.GetPtx(module, arch)))
        {
            if (!backend.LaunchedSignatures.TryGetValue(entry.Name, out var packed))
            {
                errors.Add($"{module}.cu {entry.Name}: no conformance call launched it (ops not on CUDA: {string.Join(", ", skipped)})");
                continue;
            }
            errors.AddRange(Mismatches(entry, packed, runtime.KernelSignature(runtime.GetFunction(module, entry.Name))));
        }
        Assert.That(errors.Distinct(), Is.Empty);
    }

    /// <summary>One small call per IBackend op (several where a launcher picks among kernels), zero-filled inputs, so
    /// every launcher runs once. Ops still pending on CUDA throw NotSupportedException and are skipped.</summary>
    private static IEnumerable<(string Op, Action Call)> ConformanceCalls(Scope s)
    {
        var be = s.Backend;
        Tensor F(params int[] dims) => s.Zeros("t", dims);
        Tensor I(params int[] dims) => s.UploadInts("i", new int[dims.Aggregate(1, (a, b) => a * b)], dims);
        const int n = 64, N = 4, C = 16;

        yield return ("Fill", () => be.Fill(F(n), 1f));
        yield return ("Copy", () => be.Copy(F(n), F(n), n));
        yield return ("Add", () => be.Add(F(n), F(n), F(n), n));
        yield return ("Axpy", () => be.Axpy(F(n), F(n), n, 2f));
        yield return ("Scale", () => be.Scale(F(n), n, 2f));
        yield return ("BiasAdd", () => be.BiasAdd(F(N, C), F(2, C), N, C, 2));
        yield return ("BiasBackward", () => be.BiasBackward(F(2, C), F(N, C), N, C, 2));
        foreach (var act in Enum.GetValues<Activation>())
        {
            yield return ($"ActivationForward {act}", () => be.ActivationForward(F(n), F(n), n, act));
            yield return ($"ActivationBackward {act}", () => be.ActivationBackward(F(n), F(n), F(n), n, act, accumulate: false));
        }
        yield return ("SwiGluForward", () => be.SwiGluForward(F(n), F(n), F(n), n));
        yield return ("SwiGluBackward", () => be.SwiGluBackward(F(n), F(n), F(n), F(n), F(n), n, accumulate: false));
        yield return ("Dropout", () => be.Dropout(F(n), F(n), n, 0.5f, 3, accumulate: true));
        yield return ("LayerNormForward", () => be.LayerNormForward(F(N, C), F(N), F(N), F(N, C), F(C), F(C), N, C, 1e-5f));
        yield return ("LayerNormBackward", () => be.LayerNormBackward(F(N, C), F(C), F(C), F(N, C), F(N, C), F(C), F(N), F(N), N, C));
        yield return ("RmsNormForward", () => be.RmsNormForward(F(N, C), F(N), F(N, C), F(C), N, C, 1e-5f));
        yield return ("RmsNormBackward", () => be.RmsNormBackward(F(N, C), F(C), F(N, C), F(N, C), F(C), F(N), N, C));
        foreach (int d in new[] { 32, 64, 80, 128 })
        {
            const int B = 1, T = 3, H = 2, Hkv = 1;
            yield return ($"AttentionForward D={d}", () =>
                be.AttentionForward(F(B, T, H, d), F(B, H, T), F(B, T, H, d), F(B, T, Hkv, d), F(B, T, Hkv, d), I(B), B, T, T, T, H, Hkv, d, true, 0.125f));
            yield return ($"AttentionForward decode D={d}", () =>
                be.AttentionForward(F(B, 1, H, d), F(B, H, 1), F(B, 1, H, d), F(B, T, Hkv, d), F(B, T, Hkv, d), I(B), B, 1, T, T, H, Hkv, d, false, 0.125f));
            yield return ($"AttentionBackward D={d}", () =>
                be.AttentionBackward(F(B, T, H, d), F(B, T, Hkv, d), F(B, T, Hkv, d), F(B, T, H, d), F(B, T, H, d), F(B, T, Hkv, d),
                                     F(B, T, Hkv, d), F(B, T, H, d), F(B, H, T), null, B, T, T, T, H, Hkv, d, false, 0.125f, accumulate: false));
        }
        yield return ("RopeForward", () => be.RopeForward(F(1, 2, 2, 8), F(1, 2, 2, 8), I(1, 2), 1, 2, 2, 8, 10000f));
        yield return ("RopeBackward", () => be.RopeBackward(F(1, 2, 2, 8), F(1, 2, 2, 8), I(1, 2), 1, 2, 2, 8, 10000f, accumulate: false));
        yield return ("PatchEmbedForward", () => be.PatchEmbedForward(F(1, 4, C), F(1, 3, 4, 4), F(C, 3, 2, 2), 1, 3, 4, 4, 2, C));
        yield return ("PatchEmbedBackward", () => be.PatchEmbedBackward(F(C, 3, 2, 2), F(1, 4, C), F(1, 3, 4, 4), 1, 3, 4, 4, 2, C));
        yield return ("GatherRows", () => be.GatherRows(F(N, C), F(N, C), F(N, C), I(N), N, C));
        yield return ("GatherRowsBackward", () => be.GatherRowsBackward(F(N, C), F(N, C), F(N, C), I(N), N, C));
        yield return ("ScatterRows", () => be.ScatterRows(F(N, C), F(1, C), I(1), 1, C));
        yield return ("CrossEntropy", () => be.CrossEntropy(F(N), F(N, C), F(N, C), I(N), N, C, 1f, accumulate: false));
        foreach (bool reverse in new[] { false, true })
            yield return ($"VisualWordKl reverse={reverse}", () => be.VisualWordKl(F(N), F(N, C), F(N, C), F(N, C), F(N, C), I(N, 2), N, C, reverse, 1f));
        yield return ("SoftmaxForward", () => be.SoftmaxForward(F(N, C), F(N, C), N, C));
        yield return ("SoftmaxBackward", () => be.SoftmaxBackward(F(N, C), F(N, C), F(N, C), N, C));
        ParameterList List() => new([F(n), F(N)], [F(n), F(N)], [F(n), F(N)], [F(n), F(N)], [0.1f, 0f]);
        yield return ("ZeroGradients", () => { using var l = List(); be.ZeroGradients(l); });
        yield return ("GradientSumsOfSquares", () => { using var l = List(); be.GradientSumsOfSquares(F(2), l); });
        yield return ("AdamW over a list", () => { using var l = List(); be.AdamW(l, 1e-3f, 0.9f, 0.999f, 1e-8f, 1, 1f); });
        // Gemm with a bf16 weight matrix: gemv_bf16 for few rows, bf16_to_f32 then cuBLAS for more.
        foreach (int M in new[] { 1, 5 })
            yield return ($"Gemm bf16 M={M}", () =>
            {
                using var buffer = be.Allocate(2L * N * C);
                var w = Tensor.FromBuffer(be, buffer, new Shape(N, C), DType.BF16);
                be.Upload<ushort>(w, new ushort[N * C]);
                be.Gemm(false, true, M, N, C, 1f, F(M, C), C, 0, w, C, 0, 0f, F(M, N), N, 0, 1);
            });
        yield return ("SumSquares", () => be.SumSquares(F(2), 1, F(n), n));
        yield return ("AdamW", () => be.AdamW(F(n), F(n), F(n), F(n), n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 1f));
    }
}
