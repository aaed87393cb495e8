using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cuda;
using VwLmm.Tests.Ops.Reference;

namespace VwLmm.Tests.Cuda;

/// <summary>
/// Steps recorded as CUDA graphs (<see cref="IStepCapture"/>): recording runs nothing, a replay runs the recorded
/// kernels, memsets, device copies and SGEMMs on whatever their buffers hold by then, and what would break a capture
/// on a GPU (host copies, synchronisation, a scratch buffer that must grow) is refused without leaving the backend
/// capturing. Subclassed once per CUDA runtime (emulator, real driver).
/// </summary>
public abstract class CudaCaptureTests
{
    protected abstract CudaBackend CreateCuda();

    private const int M = 5, N = 7, K = 3;

    private static float[] Values(int seed, int n)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    /// <summary>e = A·B + x and f = 2.5 everywhere, in double precision.</summary>
    private static (double[] E, double[] F) Reference(float[] a, float[] b, float[] x) =>
        (GemmReference.Gemm(false, false, M, N, K, 1, a, K, 0, b, N, 0, 1, x, N, 0, 1), Enumerable.Repeat(2.5, M * N).ToArray());

    [Test]
    public void ARecordedStepRunsWhenReplayedOnTheInputsOfThatTime()
    {
        using var be = CreateCuda();
        using var arena = new Arena(be, 1 << 20);
        Tensor a = arena.Allocate(M, K), b = arena.Allocate(K, N), x = arena.Allocate(M, N), c = arena.Allocate(M, N),
               d = arena.Allocate(M, N), e = arena.Allocate(M, N), f = arena.Allocate(M, N);
        var sentinel = Enumerable.Repeat(-7f, M * N).ToArray();
        foreach (var t in (Tensor[])[c, d, e, f]) be.Upload<float>(t, sentinel);
        float[] a1 = Values(1, M * K), b1 = Values(2, K * N), x1 = Values(3, M * N);
        be.Upload<float>(a, a1);
        be.Upload<float>(b, b1);
        be.Upload<float>(x, x1);

        using var step = be.Capture(() =>
        {
            be.Gemm(false, false, M, N, K, 1f, a, K, 0, b, N, 0, 0f, c, N, 0, 1);
            be.Copy(d, c, M * N);
            be.Add(e, d, x, M * N);
            be.Fill(f, 2.5f);
        });
        Assert.That(Download(be, e), Is.EqualTo(sentinel), "recording must not run the step");
        Assert.That(Download(be, f), Is.EqualTo(sentinel), "recording must not run the step");

        step.Replay();
        var (e1, f1) = Reference(a1, b1, x1);
        Assert.That(Download(be, e), Is.EqualTo(e1).Within(1e-5));
        Assert.That(Download(be, f), Is.EqualTo(f1));

        float[] a2 = Values(4, M * K), x2 = Values(5, M * N);
        be.Upload<float>(a, a2);
        be.Upload<float>(x, x2);
        step.Replay();
        Assert.That(Download(be, e), Is.EqualTo(Reference(a2, b1, x2).E).Within(1e-5), "a replay reads the inputs uploaded since");
        Assert.That(be.GraphReplays, Is.EqualTo(2));
    }

    [Test]
    public void HostCopiesAndSynchronisationAreRefusedAndTheBackendRecovers()
    {
        using var be = CreateCuda();
        using var arena = new Arena(be, 1 << 20);
        var t = arena.Allocate(4);
        var host = new float[4];
        foreach (var (name, step) in new (string, Action)[]
                 {
                     ("Download", () => be.Download<float>(t, host)),
                     ("Upload", () => be.Upload<float>(t, host)),
                     ("Synchronize", be.Synchronize),
                 })
        {
            var error = Assert.Throws<InvalidOperationException>(() => be.Capture(() => { be.Fill(t, 1f); step(); }))!;
            Assert.That(error.Message, Does.StartWith(name + ": not permitted while a step is being captured"));
        }
        be.Fill(t, 3f);
        Assert.That(Download(be, t), Is.EqualTo(new[] { 3f, 3f, 3f, 3f }), "the backend runs eagerly again");
        using var step2 = be.Capture(() => be.Fill(t, 4f));
        step2.Replay();
        Assert.That(Download(be, t), Is.EqualTo(new[] { 4f, 4f, 4f, 4f }));
    }

    /// <summary>A fresh backend's first SumSquares allocates its partial sums: refused while recording, fine once warm.</summary>
    [Test]
    public void AScratchBufferMustHaveGrownBeforeTheCapture()
    {
        using var be = CreateCuda();
        using var arena = new Arena(be, 1 << 20);
        var x = arena.Allocate(1000);
        var result = arena.Allocate(1);
        be.Upload<float>(x, Enumerable.Repeat(0.5f, 1000).ToArray());
        var error = Assert.Throws<InvalidOperationException>(() => be.Capture(() => be.SumSquares(result, 0, x, 1000)))!;
        Assert.That(error.Message, Does.Contain("while a captured step holds its address"));

        be.SumSquares(result, 0, x, 1000);
        be.Fill(result, 0f);
        using var step = be.Capture(() => be.SumSquares(result, 0, x, 1000));
        step.Replay();
        Assert.That(Download(be, result)[0], Is.EqualTo(250f).Within(1e-3));
    }

    [Test]
    public void ADisposedStepCannotBeReplayed()
    {
        using var be = CreateCuda();
        using var arena = new Arena(be, 1 << 20);
        var t = arena.Allocate(4);
        var step = be.Capture(() => be.Fill(t, 1f));
        step.Dispose();
        step.Dispose();
        Assert.Throws<ObjectDisposedException>(step.Replay);
    }

    private static float[] Download(IBackend be, Tensor t)
    {
        var host = new float[t.Numel];
        be.Download<float>(t, host);
        return host;
    }
}
