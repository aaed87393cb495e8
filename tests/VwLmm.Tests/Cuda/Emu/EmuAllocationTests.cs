using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cuda;
using static VwLmm.Tests.Ops.OpHarness;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>
/// Warm calls of the CUDA launchers that read indices back to the host (targets, visual-word pairs, the embedding
/// map) or pick a kernel by name allocate no managed memory: they stage in buffers the backend keeps; nor does the KV
/// cache's row scatter, launched every decoded token, nor a replay of a recorded step. The launch path is the one a GPU
/// gets; only the runtime under it is the emulator.
/// </summary>
public sealed class EmuAllocationTests
{
    [Test]
    public void IndexReadingAndActivationLaunchers()
    {
        const int N = 8, V = 64, R = 24, C = 32, Rows = 5;
        using var backend = new CudaBackend(new EmulatedRuntime());
        using var s = new Scope(backend);
        var logits = s.Upload("logits", Random(1, N * V), N, V);
        var dlogits = s.New("dlogits", N, V);
        var losses = s.New("losses", N);
        var targets = s.UploadInts("targets", [3, -100, 7, 63, 0, 5, -100, 9], N);
        AssertAllocationFree("CrossEntropy", () => backend.CrossEntropy(losses, dlogits, logits, targets, N, V, 0.5f, accumulate: false));

        var vm = s.Upload("vm", Random(2, N * V), N, V);
        var dvm = s.New("dvm", N, V);
        var pairs = s.UploadInts("pairs", [0, 1, 1, 2, 2, 3, 3, 4], 4, 2);
        AssertAllocationFree("VisualWordKl", () => backend.VisualWordKl(losses, dlogits, dvm, logits, vm, pairs, 4, V, false, 0.25f));

        var map = new int[R];
        for (int r = 0; r < R; r++) map[r] = r % 3 == 0 ? -1 : r % Rows;
        var dsrc = s.New("dsrc", Rows, C);
        var dy = s.Upload("dy", Random(3, R * C), R, C);
        var tmap = s.UploadInts("map", map, R);
        AssertAllocationFree("GatherRowsBackward", () => backend.GatherRowsBackward(dsrc, null, dy, tmap, R, C));
        var slots = s.UploadInts("slots", [4, 0, 3], 3);
        AssertAllocationFree("ScatterRows", () => backend.ScatterRows(dsrc, dy, slots, 3, C));

        using (var step = backend.Capture(() => backend.ScatterRows(dsrc, dy, slots, 3, C)))
            AssertAllocationFree("Replay", step.Replay);

        var x = s.Upload("x", Random(4, R * C), R * C);
        var y = s.New("y", R * C);
        foreach (var act in new[] { Activation.Gelu, Activation.QuickGelu, Activation.Silu })
        {
            AssertAllocationFree($"{act} forward", () => backend.ActivationForward(y, x, R * C, act));
            AssertAllocationFree($"{act} backward", () => backend.ActivationBackward(y, x, x, R * C, act, accumulate: false));
        }
    }
}
