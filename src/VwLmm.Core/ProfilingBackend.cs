using System.Diagnostics;

namespace VwLmm.Core;
/// <summary>
/// Per-op timing on any backend: wraps an <see cref="IBackend"/>, forwards every call and accumulates count and
/// wall time per op (synchronising the device after each op so that asynchronous backends are timed truly — which is
/// why it is a decorator used only when profiling, never in the plain training path). Allocation-free per call once a
/// GEMM shape has been seen (its first call adds the shape's counter).
/// </summary>
public sealed class ProfilingBackend(IBackend inner) : IBackend
{
    /// <summary>
    /// The ops this wrapper times, in <see cref="IBackend"/> order (indexes into the counters), then the host↔device
    /// copies (on a GPU each is a driver call the host waits for, which a decoded token can be bound by).
    /// </summary>
    public static readonly string[] OpNames =
    [
        "Fill",
        "Copy",
        "Add",
        "Axpy",
        "Scale",
        "BiasAdd",
        "BiasBackward",
        "Gemm",
        "LayerNormForward",
        "LayerNormBackward",
        "RmsNormForward",
        "RmsNormBackward",
        "ActivationForward",
        "ActivationBackward",
        "SwiGluForward",
        "SwiGluBackward",
        "Dropout",
        "AttentionForward",
        "AttentionBackward",
        "RopeForward",
        "RopeBackward",
        "PatchEmbedForward",
        "PatchEmbedBackward",
        "GatherRows",
        "GatherRowsBackward",
        "ScatterRows",
        "CrossEntropy",
        "VisualWordKl",
        "SoftmaxForward",
        "SoftmaxBackward",
        "SumSquares",
        "AdamW",
        "ZeroGradients",
        "GradientSumsOfSquares",
        "Upload",
        "Download",
    ];

    private readonly long[] _ticks = new long[OpNames.Length];
    private readonly long[] _counts = new long[OpNames.Length];
    // GEMM is most of a step: its time split by layout and shape says which products fall short of the library's rate.
    private readonly Dictionary<GemmShape, (long Calls, long Ticks)> _gemms = [];

    public IBackend Inner { get; } = inner;
    public string Name => Inner.Name;

    /// <summary>(op, calls, total seconds) for every op called at least once, slowest first.</summary>
    public IReadOnlyList<(string Op, long Calls, double Seconds)> Table() =>
        Enumerable.Range(0, OpNames.Length).Where(i => _counts[i] > 0)
            .Select(i => (OpNames[i], _counts[i], _ticks[i] / (double)Stopwatch.Frequency))
            .OrderByDescending(r => r.Item3).ToList();

    /// <summary>(shape, calls, total seconds) of every GEMM layout and shape called at least once, slowest first.</summary>
    public IReadOnlyList<(GemmShape Shape, long Calls, double Seconds)> GemmTable() =>
        _gemms.Select(kv => (kv.Key, kv.Value.Calls, kv.Value.Ticks / (double)Stopwatch.Frequency))
              .OrderByDescending(r => r.Item3).ToList();

    public void ResetCounters()
    {
        Array.Clear(_ticks);
        Array.Clear(_counts);
        _gemms.Clear();
    }

    private long Begin() => Stopwatch.GetTimestamp();

    private void End(int op, long start)
    {
        Inner.Synchronize();
        _ticks[op] += Stopwatch.GetTimestamp() - start;
        _counts[op]++;
    }

    public DeviceBuffer Allocate(long bytes) => Inner.Allocate(bytes);
    public void Upload<T>(Tensor dst, ReadOnlySpan<T> src) where T : unmanaged
    {
        long t = Begin();
        Inner.Upload(dst, src);
        End(34, t);
    }

    public void Download<T>(Tensor src, Span<T> dst) where T : unmanaged
    {
        long t = Begin();
        Inner.Download(src, dst);
        End(35, t);
    }

    public void Synchronize() => Inner.Synchronize();
    public void Dispose() => Inner.Dispose();

    public void Fill(Tensor x, float value)
    {
        long t = Begin();
        Inner.Fill(x, value);
        End(0, t);
    }

    public void Copy(Tensor dst, Tensor src, long n)
    {
        long t = Begin();
        Inner.Copy(dst, src, n);
        End(1, t);
    }

    public void Add(Tensor y, Tensor a, Tensor b, long n)
    {
        long t = Begin();
        Inner.Add(y, a, b, n);
        End(2, t);
    }

    public void Axpy(Tensor y, Tensor x, long n, float alpha)
    {
        long t = Begin();
        Inner.Axpy(y, x, n, alpha);
        End(3, t);
    }

    public void Scale(Tensor x, long n, float alpha)
    {
        long t = Begin();
        Inner.Scale(x, n, alpha);
        End(4, t);
    }

    public void BiasAdd(Tensor x, Tensor bias, int N, int C, int P)
    {
        long t = Begin();
        Inner.BiasAdd(x, bias, N, C, P);
        End(5, t);
    }

    public void BiasBackward(Tensor dbias, Tensor dy, int N, int C, int P)
    {
        long t = Begin();
        Inner.BiasBackward(dbias, dy, N, C, P);
        End(6, t);
    }

    public void Gemm(bool transA, bool transB, int M, int N, int K, float alpha, Tensor A, int lda, long strideA, Tensor B, int ldb, long strideB,
                     float beta, Tensor C, int ldc, long strideC, int batch, Tensor? bias = null, long strideBias = 0, Tensor? addend = null)
    {
        long t = Begin();
        Inner.Gemm(transA, transB, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC, batch, bias, strideBias, addend);
        End(7, t);
        ref var entry = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_gemms, new GemmShape(transA, transB, M, N, K, batch), out _);
        entry = (entry.Calls + 1, entry.Ticks + Stopwatch.GetTimestamp() - t);
    }

    public void LayerNormForward(Tensor y, Tensor mean, Tensor rstd, Tensor x, Tensor gamma, Tensor beta, int N, int C, float eps)
    {
        long t = Begin();
        Inner.LayerNormForward(y, mean, rstd, x, gamma, beta, N, C, eps);
        End(8, t);
    }

    public void LayerNormBackward(Tensor? dx, Tensor? dgamma, Tensor? dbeta, Tensor dy, Tensor x, Tensor gamma, Tensor mean, Tensor rstd, int N, int C)
    {
        long t = Begin();
        Inner.LayerNormBackward(dx, dgamma, dbeta, dy, x, gamma, mean, rstd, N, C);
        End(9, t);
    }

    public void RmsNormForward(Tensor y, Tensor rstd, Tensor x, Tensor gamma, int N, int C, float eps)
    {
        long t = Begin();
        Inner.RmsNormForward(y, rstd, x, gamma, N, C, eps);
        End(10, t);
    }

    public void RmsNormBackward(Tensor? dx, Tensor? dgamma, Tensor dy, Tensor x, Tensor gamma, Tensor rstd, int N, int C)
    {
        long t = Begin();
        Inner.RmsNormBackward(dx, dgamma, dy, x, gamma, rstd, N, C);
        End(11, t);
    }

    public void ActivationForward(Tensor y, Tensor x, long n, Activation act)
    {
        long t = Begin();
        Inner.ActivationForward(y, x, n, act);
        End(12, t);
    }

    public void ActivationBackward(Tensor dx, Tensor dy, Tensor x, long n, Activation act, bool accumulate)
    {
        long t = Begin();
        Inner.ActivationBackward(dx, dy, x, n, act, accumulate);
        End(13, t);
    }

    public void SwiGluForward(Tensor y, Tensor gate, Tensor up, long n)
    {
        long t = Begin();
        Inner.SwiGluForward(y, gate, up, n);
        End(14, t);
    }

    public void SwiGluBackward(Tensor? dgate, Tensor? dup, Tensor dy, Tensor gate, Tensor up, long n, bool accumulate)
    {
        long t = Begin();
        Inner.SwiGluBackward(dgate, dup, dy, gate, up, n, accumulate);
        End(15, t);
    }

    public void Dropout(Tensor y, Tensor x, long n, float rate, ulong seed, bool accumulate)
    {
        long t = Begin();
        Inner.Dropout(y, x, n, rate, seed, accumulate);
        End(16, t);
    }

    public void AttentionForward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor? keyLengths, int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale)
    {
        long t = Begin();
        Inner.AttentionForward(o, lse, q, k, v, keyLengths, B, Tq, Tk, S, H, Hkv, D, causal, scale);
        End(17, t);
    }

    public void AttentionBackward(Tensor? dq, Tensor? dk, Tensor? dv, Tensor dO, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor? keyLengths, int B, int Tq, int Tk, int S, int H, int Hkv, int D, bool causal, float scale, bool accumulate)
    {
        long t = Begin();
        Inner.AttentionBackward(dq, dk, dv, dO, q, k, v, o, lse, keyLengths, B, Tq, Tk, S, H, Hkv, D, causal, scale, accumulate);
        End(18, t);
    }

    public void RopeForward(Tensor y, Tensor x, Tensor positions, int B, int T, int H, int D, float theta)
    {
        long t = Begin();
        Inner.RopeForward(y, x, positions, B, T, H, D, theta);
        End(19, t);
    }

    public void RopeBackward(Tensor dx, Tensor dy, Tensor positions, int B, int T, int H, int D, float theta, bool accumulate)
    {
        long t = Begin();
        Inner.RopeBackward(dx, dy, positions, B, T, H, D, theta, accumulate);
        End(20, t);
    }

    public void PatchEmbedForward(Tensor y, Tensor img, Tensor w, int B, int Cin, int Hi, int Wi, int P, int C)
    {
        long t = Begin();
        Inner.PatchEmbedForward(y, img, w, B, Cin, Hi, Wi, P, C);
        End(21, t);
    }

    public void PatchEmbedBackward(Tensor dw, Tensor dy, Tensor img, int B, int Cin, int Hi, int Wi, int P, int C)
    {
        long t = Begin();
        Inner.PatchEmbedBackward(dw, dy, img, B, Cin, Hi, Wi, P, C);
        End(22, t);
    }

    public void GatherRows(Tensor y, Tensor srcA, Tensor? srcB, Tensor map, int R, int C)
    {
        long t = Begin();
        Inner.GatherRows(y, srcA, srcB, map, R, C);
        End(23, t);
    }

    public void GatherRowsBackward(Tensor? dSrcA, Tensor? dSrcB, Tensor dy, Tensor map, int R, int C)
    {
        long t = Begin();
        Inner.GatherRowsBackward(dSrcA, dSrcB, dy, map, R, C);
        End(24, t);
    }

    public void ScatterRows(Tensor dst, Tensor src, Tensor rows, int R, int C)
    {
        long t = Begin();
        Inner.ScatterRows(dst, src, rows, R, C);
        End(25, t);
    }

    public void CrossEntropy(Tensor losses, Tensor? dlogits, Tensor logits, Tensor targets, int N, int V, float gradScale, bool accumulate)
    {
        long t = Begin();
        Inner.CrossEntropy(losses, dlogits, logits, targets, N, V, gradScale, accumulate);
        End(26, t);
    }

    public void VisualWordKl(Tensor losses, Tensor? dLm, Tensor? dVm, Tensor lmLogits, Tensor vmLogits, Tensor pairs, int N, int V, bool reverse, float gradScale)
    {
        long t = Begin();
        Inner.VisualWordKl(losses, dLm, dVm, lmLogits, vmLogits, pairs, N, V, reverse, gradScale);
        End(27, t);
    }

    public void SoftmaxForward(Tensor y, Tensor x, int N, int V)
    {
        long t = Begin();
        Inner.SoftmaxForward(y, x, N, V);
        End(28, t);
    }

    public void SoftmaxBackward(Tensor dx, Tensor dy, Tensor y, int N, int V)
    {
        long t = Begin();
        Inner.SoftmaxBackward(dx, dy, y, N, V);
        End(29, t);
    }

    public void SumSquares(Tensor result, int slot, Tensor x, long n)
    {
        long t = Begin();
        Inner.SumSquares(result, slot, x, n);
        End(30, t);
    }

    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, long n, float lr, float beta1, float beta2, float eps, float weightDecay, int step, float gradScale)
    {
        long t = Begin();
        Inner.AdamW(param, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, step, gradScale);
        End(31, t);
    }

    public void ZeroGradients(ParameterList list)
    {
        long t = Begin();
        Inner.ZeroGradients(list);
        End(32, t);
    }

    public void GradientSumsOfSquares(Tensor result, ParameterList list)
    {
        long t = Begin();
        Inner.GradientSumsOfSquares(result, list);
        End(33, t);
    }

    public void AdamW(ParameterList list, float lr, float beta1, float beta2, float eps, int step, float gradScale)
    {
        long t = Begin();
        Inner.AdamW(list, lr, beta1, beta2, eps, step, gradScale);
        End(31, t);
    }
}

/// <summary>One GEMM layout and shape: C [M,N] = op(A)·op(B) with inner dimension K, over Batch items.</summary>
public readonly record struct GemmShape(bool TransA, bool TransB, int M, int N, int K, int Batch)
{
    public double Flop => 2.0 * M * N * K * Batch;

    /// <summary>"NT 1024×256×768" (op(A) op(B), M×N×K), with "×8" for a batch of 8.</summary>
    public override string ToString() =>
        $"{(TransA ? 'T' : 'N')}{(TransB ? 'T' : 'N')} {M}×{N}×{K}{(Batch > 1 ? $" ×{Batch}" : "")}";
}
