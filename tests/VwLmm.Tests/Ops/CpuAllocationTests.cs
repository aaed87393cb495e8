using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using static VwLmm.Tests.Ops.OpHarness;

namespace VwLmm.Tests.Ops;

/// <summary>
/// Warm CPU op calls allocate no managed memory, on the calling thread or on the pool's workers. Shapes are large
/// enough for every op to split across both threads.
/// </summary>
public sealed class CpuAllocationTests
{
    private CpuBackend _backend = null!;

    [OneTimeSetUp] public void CreateBackend() => _backend = new CpuBackend(2);
    [OneTimeTearDown] public void DisposeBackend() => _backend.Dispose();

    [Test]
    public void ElementwiseOps()
    {
        const int N = 256, C = 256, n = N * C;
        using var s = new Scope(_backend);
        var a = s.Upload("a", Random(1, n), n);
        var b = s.Upload("b", Random(2, n), n);
        var y = s.New("y", n);
        var bias = s.Upload("bias", Random(3, 4 * C), 4, C);
        AssertAllocationFree("Fill", () => _backend.Fill(y, 0.5f));
        AssertAllocationFree("Copy", () => _backend.Copy(y, a, n));
        AssertAllocationFree("Add", () => _backend.Add(y, a, b, n));
        AssertAllocationFree("Axpy", () => _backend.Axpy(y, a, n, 0.5f));
        AssertAllocationFree("Scale", () => _backend.Scale(y, n, 0.5f));
        AssertAllocationFree("BiasAdd", () => _backend.BiasAdd(y, bias, N, C, 4));
        AssertAllocationFree("BiasBackward", () => _backend.BiasBackward(bias, a, N, C, 4));
        foreach (var act in new[] { Activation.Gelu, Activation.QuickGelu, Activation.Silu })
        {
            AssertAllocationFree($"{act} forward", () => _backend.ActivationForward(y, a, n, act));
            AssertAllocationFree($"{act} backward", () => _backend.ActivationBackward(y, b, a, n, act, accumulate: false));
        }
        AssertAllocationFree("SwiGluForward", () => _backend.SwiGluForward(y, a, b, n));
        AssertAllocationFree("SwiGluBackward", () => _backend.SwiGluBackward(y, y, b, a, b, n, accumulate: true));
        AssertAllocationFree("Dropout", () => _backend.Dropout(y, a, n, 0.1f, 9, accumulate: true));
    }

    [Test]
    public void Gemm()
    {
        const int M = 64;
        using var s = new Scope(_backend);
        var a = s.Upload("a", Random(1, 2 * M * M), 2, M, M);
        var c = s.New("c", 2, M, M);
        AssertAllocationFree("Gemm", () => _backend.Gemm(false, true, M, M, M, 1f, a, M, M * M, a, M, M * M, 0f, c, M, M * M, 2));
    }

    [Test]
    public void Bf16Gemm()
    {
        const int M = 8, N = 2048, K = 1100;
        Assert.That(CpuBackend.WidenedBlockRows(N, K), Is.LessThan(N), "under OpenBLAS the weights are widened in more than one block");
        using var s = new Scope(_backend);
        var x = s.Upload("x", Random(1, M * K), M, K);
        var w = s.UploadBf16("w", new ushort[N * K], N, K);
        var y = s.New("y", M, N);
        AssertAllocationFree("bf16 Gemm, few rows", () => _backend.Gemm(false, true, 4, N, K, 1f, x, K, 0, w, K, 0, 0f, y, N, 0, 1));
        AssertAllocationFree("bf16 Gemm, many rows", () => _backend.Gemm(false, true, M, N, K, 1f, x, K, 0, w, K, 0, 0f, y, N, 0, 1));
    }

    [Test]
    public void NormOps()
    {
        const int N = 512, C = 128;
        using var s = new Scope(_backend);
        var x = s.Upload("x", Random(1, N * C), N, C);
        var dy = s.Upload("dy", Random(2, N * C), N, C);
        var gamma = s.Upload("gamma", Random(3, C), C);
        var beta = s.Upload("beta", Random(4, C), C);
        var y = s.New("y", N, C);
        var mean = s.New("mean", N);
        var rstd = s.New("rstd", N);
        var dg = s.Zeros("dg", C);
        var db = s.Zeros("db", C);
        AssertAllocationFree("LayerNormForward", () => _backend.LayerNormForward(y, mean, rstd, x, gamma, beta, N, C, 1e-5f));
        AssertAllocationFree("LayerNormBackward", () => _backend.LayerNormBackward(y, dg, db, dy, x, gamma, mean, rstd, N, C));
        AssertAllocationFree("RmsNormForward", () => _backend.RmsNormForward(y, rstd, x, gamma, N, C, 1e-5f));
        AssertAllocationFree("RmsNormBackward", () => _backend.RmsNormBackward(y, dg, dy, x, gamma, rstd, N, C));
    }

    [Test]
    public void Attention()
    {
        const int B = 2, T = 65, H = 2, D = 32;
        using var s = new Scope(_backend);
        var q = s.Upload("q", Random(1, B * T * H * D), B, T, H, D);
        var k = s.Upload("k", Random(2, B * T * H * D), B, T, H, D);
        var v = s.Upload("v", Random(3, B * T * H * D), B, T, H, D);
        var o = s.New("o", B, T, H, D);
        var lse = s.New("lse", B, H, T);
        var grad = s.Zeros("grad", B, T, H, D);
        AssertAllocationFree("AttentionForward", () => _backend.AttentionForward(o, lse, q, k, v, null, B, T, T, T, H, H, D, true, 0.125f));
        AssertAllocationFree("AttentionBackward", () =>
            _backend.AttentionBackward(grad, grad, grad, q, q, k, v, o, lse, null, B, T, T, T, H, H, D, true, 0.125f, accumulate: true));
    }

    [Test]
    public void Rope()
    {
        const int B = 2, T = 64, H = 4, D = 64;
        using var s = new Scope(_backend);
        var x = s.Upload("x", Random(1, B * T * H * D), B, T, H, D);
        var y = s.New("y", B, T, H, D);
        var pos = s.UploadInts("positions", Enumerable.Range(0, B * T).ToArray(), B, T);
        AssertAllocationFree("RopeForward", () => _backend.RopeForward(y, x, pos, B, T, H, D, 10000f));
        AssertAllocationFree("RopeBackward", () => _backend.RopeBackward(y, x, pos, B, T, H, D, 10000f, accumulate: false));
    }

    [Test]
    public void PatchEmbed()
    {
        const int B = 8, Cin = 3, Hi = 64, P = 8, C = 16;
        using var s = new Scope(_backend);
        var img = s.Upload("img", Random(1, B * Cin * Hi * Hi), B, Cin, Hi, Hi);
        var w = s.Upload("w", Random(2, C * Cin * P * P), C, Cin, P, P);
        var y = s.New("y", B, (Hi / P) * (Hi / P), C);
        AssertAllocationFree("PatchEmbedForward", () => _backend.PatchEmbedForward(y, img, w, B, Cin, Hi, Hi, P, C));
        AssertAllocationFree("PatchEmbedBackward", () => _backend.PatchEmbedBackward(w, y, img, B, Cin, Hi, Hi, P, C));
    }

    [Test]
    public void Embedding()
    {
        const int R = 512, C = 128, Rows = 100;
        using var s = new Scope(_backend);
        var table = s.Upload("table", Random(1, Rows * C), Rows, C);
        var extra = s.Upload("extra", Random(2, Rows * C), Rows, C);
        var map = s.UploadInts("map", Enumerable.Range(0, R).Select(r => r % 3 == 0 ? -2 - r % Rows : r % Rows).ToArray(), R);
        var y = s.New("y", R, C);
        AssertAllocationFree("GatherRows", () => _backend.GatherRows(y, table, extra, map, R, C));
        AssertAllocationFree("GatherRowsBackward", () => _backend.GatherRowsBackward(table, extra, y, map, R, C));
        var slots = s.UploadInts("slots", Enumerable.Range(0, Rows).Select(r => (r * 7 + 3) % Rows).ToArray(), Rows);
        AssertAllocationFree("ScatterRows", () => _backend.ScatterRows(y, table, slots, Rows, C));
    }

    [Test]
    public void VocabOps()
    {
        const int N = 64, V = 512;
        using var s = new Scope(_backend);
        var lm = s.Upload("lm", Random(1, N * V, 5f), N, V);
        var vm = s.Upload("vm", Random(2, N * V, 5f), N, V);
        var dLm = s.Zeros("dLm", N, V);
        var dVm = s.Zeros("dVm", N, V);
        var losses = s.New("losses", N);
        var targets = s.UploadInts("targets", Enumerable.Range(0, N).Select(i => i % 7 == 0 ? -100 : i * 5 % V).ToArray(), N);
        var pairs = s.UploadInts("pairs", Enumerable.Range(0, N).SelectMany(i => new[] { i, N - 1 - i }).ToArray(), N, 2);
        AssertAllocationFree("CrossEntropy", () => _backend.CrossEntropy(losses, dLm, lm, targets, N, V, 0.5f, accumulate: false));
        AssertAllocationFree("VisualWordKl", () => _backend.VisualWordKl(losses, dLm, dVm, lm, vm, pairs, N, V, false, 0.5f));
        AssertAllocationFree("SoftmaxForward", () => _backend.SoftmaxForward(dVm, vm, N, V));
        AssertAllocationFree("SoftmaxBackward", () => _backend.SoftmaxBackward(dLm, lm, dVm, N, V));
    }

    [Test]
    public void OptimizerOps()
    {
        const int n = 1 << 16;
        using var s = new Scope(_backend);
        var p = s.Upload("p", Random(1, n), n);
        var g = s.Upload("g", Random(2, n), n);
        var m = s.Zeros("m", n);
        var v = s.Zeros("v", n);
        var result = s.New("result", 2);
        AssertAllocationFree("SumSquares", () => _backend.SumSquares(result, 1, g, n));
        AssertAllocationFree("AdamW", () => _backend.AdamW(p, g, m, v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 3, 1f));
    }
}
