using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using NUnit.Framework;
using VwLmm.Cuda;
using VwLmm.Cuda.Native;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>
/// The emulator against its own test kernels (kernels/emu/selftest.cu): barrier semantics with exited threads, both
/// kinds of shared memory, warp exchange incl. disjoint half-warp masks and poison, block reductions at odd sizes,
/// deadlock and launch-configuration errors, atomics across worker threads. Expected values are computed here by hand.
/// Emulated device memory is host memory, so the kernels write straight into pinned managed arrays.
/// </summary>
[TestFixture]
public sealed unsafe class EmulatorSelfTests
{
    private EmulatedRuntime _rt = null!;

    [OneTimeSetUp]
    public void SetUp() => _rt = new EmulatedRuntime();

    [OneTimeTearDown]
    public void TearDown() => _rt.Dispose();

    /// <summary>Launches with each argument in its own 8-byte slot (nint, int, float), as cuLaunchKernel reads them.</summary>
    private void Launch(string kernel, (uint, uint, uint) grid, (uint, uint, uint) block, uint shared, params object[] args)
    {
        long* slots = stackalloc long[args.Length];
        void** ptrs = stackalloc void*[args.Length];
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case nint p: *(nint*)(slots + i) = p; break;
                case int v: *(int*)(slots + i) = v; break;
                case float v: *(float*)(slots + i) = v; break;
                default: throw new ArgumentException($"argument {i}: unsupported type {args[i].GetType()}");
            }
            ptrs[i] = slots + i;
        }
        _rt.Launch(_rt.GetFunction("selftest", kernel), kernel, grid, block, shared, ptrs);
    }

    private static nint Addr<T>(T[] pinned) where T : unmanaged => (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));
    private static T[] Pinned<T>(int n) where T : unmanaged => GC.AllocateArray<T>(n, pinned: true);

    [TestCase(1, 1)]
    [TestCase(64, 64)]
    [TestCase(100, 37)]
    [TestCase(256, 1)]
    public void SyncthreadsCountsExitedThreadsAsArrived(int block, int active)
    {
        var o = Pinned<int>(4 * block);
        Launch("emu_selftest_sync_early_return", (1, 1, 1), ((uint)block, 1, 1), 0, Addr(o), active);
        int evens = (active + 1) / 2;
        for (int t = 0; t < active; t++)
        {
            Assert.That(o[t], Is.EqualTo(3 * ((t + 1) % active) + 1), $"neighbour value at {t}");
            Assert.That(o[block + t], Is.EqualTo(evens), $"__syncthreads_count at {t}");
            Assert.That(o[2 * block + t], Is.EqualTo(1), $"__syncthreads_and at {t}");
            Assert.That(o[3 * block + t], Is.EqualTo(1), $"__syncthreads_or at {t}");
        }
    }

    /// <summary>
    /// Fresh device memory is all 0xFF bytes (NaN as float, −1 as int), where the host's fresh pages would be zero: a
    /// launcher that reads scratch or output nothing wrote, expecting zeros, then fails its conformance test, as
    /// compute-sanitizer's initcheck would report it on a GPU.
    /// </summary>
    [Test]
    public void FreshDeviceMemoryReadsAsNaN()
    {
        foreach (long bytes in new long[] { 4, 1000, 64L << 20 })
        {
            nint p = _rt.Alloc(bytes);
            try
            {
                var host = new float[Math.Min(bytes / 4, 1024)];
                fixed (float* h = host) _rt.CopyDeviceToHost((nint)h, p + (nint)(bytes - host.Length * 4L), host.Length * 4L);
                Assert.That(host, Is.All.NaN, $"the last {host.Length} floats of {bytes} bytes");
                int first;
                _rt.CopyDeviceToHost((nint)(&first), p, 4);
                Assert.That(first, Is.EqualTo(-1), $"the first int of {bytes} bytes");
            }
            finally
            {
                _rt.Free(p);
            }
        }
    }

    [Test]
    public void SharedMemoryStaticAndDynamic()
    {
        const int grid = 5;
        var o = Pinned<float>(grid * 128);
        Launch("emu_selftest_shared", (grid, 1, 1), (64, 1, 1), 64 * sizeof(float), Addr(o));
        for (int b = 0; b < grid; b++)
            for (int t = 0; t < 64; t++)
            {
                Assert.That(float.IsNaN(o[b * 128 + t]), $"block {b}: unwritten dynamic shared memory must read as NaN, got {o[b * 128 + t]}");
                Assert.That(o[b * 128 + 64 + t], Is.EqualTo((63 - t + b) + 2f * (63 - t)), $"block {b} thread {t}");
            }
    }

    [Test]
    public void WarpShufflesAndVotes()
    {
        var f = Pinned<float>(8 * 32);
        var u = Pinned<uint>(4 * 32);
        Launch("emu_selftest_shuffle", (1, 1, 1), (32, 1, 1), 0, Addr(f), Addr(u));
        uint ballot3 = 0, odd = 0;
        for (int l = 0; l < 32; l++)
        {
            if (l % 3 == 0) ballot3 |= 1u << l;
            if ((l & 1) != 0) odd |= 1u << l;
        }
        for (int l = 0; l < 32; l++)
        {
            float V(int lane) => lane + 0.5f;
            Assert.That(f[0 * 32 + l], Is.EqualTo(V(l ^ 5)), $"xor 5, lane {l}");
            Assert.That(f[1 * 32 + l], Is.EqualTo(l + 3 < 32 ? V(l + 3) : V(l)), $"down 3, lane {l}");
            Assert.That(f[2 * 32 + l], Is.EqualTo(l >= 2 ? V(l - 2) : V(l)), $"up 2, lane {l}");
            Assert.That(f[3 * 32 + l], Is.EqualTo(V(7)), $"broadcast, lane {l}");
            Assert.That(f[4 * 32 + l], Is.EqualTo(V(l ^ 1)), $"half-warp xor 1, lane {l}");
            Assert.That(f[5 * 32 + l], Is.EqualTo(V(l & 16)), $"half-warp width-16 broadcast, lane {l}");
            Assert.That(f[6 * 32 + l], Is.EqualTo(l % 8 + 4 < 8 ? V(l + 4) : V(l)), $"down 4 width 8, lane {l}");
            Assert.That(float.IsNaN(f[7 * 32 + l]), $"lane {l}: reading a lane outside the mask must give NaN");
            Assert.That(u[0 * 32 + l], Is.EqualTo(ballot3), $"ballot, lane {l}");
            Assert.That(u[1 * 32 + l], Is.EqualTo(l < 16 ? 1u : 0u), $"any per half, lane {l}");
            Assert.That(u[2 * 32 + l], Is.EqualTo(1u), $"all, lane {l}");
            Assert.That(u[3 * 32 + l], Is.EqualTo(odd & (l < 16 ? 0x0000ffffu : 0xffff0000u)), $"ballot per half, lane {l}");
        }
    }

    [TestCase(1)]
    [TestCase(31)]
    [TestCase(33)]
    [TestCase(100)]
    [TestCase(256)]
    [TestCase(1024)]
    public void BlockReductionsAnySize(int block)
    {
        const int grid = 2;
        int n = grid * block;
        // All negative: a reduction that pads missing lanes with 0 would get the max wrong.
        var input = Pinned<float>(n);
        var rng = new Random(block);
        for (int i = 0; i < n; i++) input[i] = -1f - (float)rng.NextDouble();
        var sum = Pinned<float>(n);
        var max = Pinned<float>(n);
        var count = Pinned<float>(n);
        Launch("emu_selftest_block_reduce", (grid, 1, 1), ((uint)block, 1, 1), 0, Addr(sum), Addr(max), Addr(count), Addr(input));
        for (int b = 0; b < grid; b++)
        {
            double s = 0;
            float m = float.NegativeInfinity;
            for (int t = 0; t < block; t++)
            {
                s += input[b * block + t];
                m = Math.Max(m, input[b * block + t]);
            }
            for (int t = 0; t < block; t++)
            {
                int i = b * block + t;
                Assert.That(sum[i], Is.EqualTo(s).Within(1e-6 * block), $"sum, block {b} thread {t}");
                Assert.That(sum[i], Is.EqualTo(sum[b * block]), $"every thread gets the same sum, block {b} thread {t}");
                Assert.That(max[i], Is.EqualTo(m), $"max, block {b} thread {t}");
                Assert.That(count[i], Is.EqualTo((float)block), $"chained sum, block {b} thread {t}");
            }
        }
    }

    [Test]
    public void BarrierInDivergentBranchIsReportedAsDeadlock()
    {
        var o = Pinned<float>(32);
        var e = Assert.Throws<InvalidOperationException>(() => Launch("emu_selftest_deadlock", (1, 1, 1), (32, 1, 1), 0, Addr(o)))!;
        Assert.That(e.Message, Does.Contain("emu_selftest_deadlock").And.Contain("deadlock").And.Contain("block (0,0,0)").And.Contain("thread ("));
    }

    [Test]
    public void FullMaskSkipsExitedAndAbsentLanes()
    {
        var o = Pinned<float>(24);
        Array.Fill(o, -1f);
        var bits = Pinned<uint>(1);
        Launch("emu_selftest_partial_warp_full_mask", (1, 1, 1), (24, 1, 1), 0, Addr(o), Addr(bits));
        for (int t = 0; t < 20; t++)
        {
            int src = t ^ 16;
            if (src < 20) Assert.That(o[t], Is.EqualTo((float)src), $"lane {t}");
            else Assert.That(float.IsNaN(o[t]), $"lane {t} read exited or absent lane {src}: expected NaN, got {o[t]}");
        }
        Assert.That(o[20..], Is.All.EqualTo(-1f), "exited lanes wrote nothing");
        Assert.That(bits[0], Is.EqualTo(0xFFFFFu), "ballot over the live lanes");
    }

    [TestCase(2048u, 1u, 1u, 0u, "block dimensions")]
    [TestCase(64u, 32u, 1u, 0u, "2048 threads per block")]
    [TestCase(1u, 1u, 65u, 0u, "block dimensions")]
    [TestCase(32u, 1u, 1u, 300_000u, "shared memory")]
    [TestCase(0u, 1u, 1u, 0u, "is 0")]
    public void BadLaunchConfigurationIsRejected(uint bx, uint by, uint bz, uint shared, string expected)
    {
        var o = Pinned<float>(32);
        var e = Assert.Throws<InvalidOperationException>(() => Launch("emu_selftest_deadlock", (1, 1, 1), (bx, by, bz), shared, Addr(o)))!;
        Assert.That(e.Message, Does.Contain("emu_selftest_deadlock").And.Contain("CUresult 1").And.Contain(expected));
    }

    [Test]
    public void UnknownKernelIsNamed()
    {
        var e = Assert.Throws<InvalidOperationException>(() => _rt.GetFunction("selftest", "no_such_kernel_f32"))!;
        Assert.That(e.Message, Does.Contain("no_such_kernel_f32"));
    }

    [Test]
    public void AtomicsAcrossBlocksAndWorkers()
    {
        const int grid = 64, block = 64, n = grid * block;
        var ints = Pinned<int>(5);
        ints[1] = int.MinValue;
        ints[2] = int.MaxValue;
        ints[4] = -1;
        var floats = Pinned<float>(1);
        Launch("emu_selftest_atomics", (grid, 1, 1), (block, 1, 1), 0, Addr(ints), Addr(floats));
        Assert.That(ints[0], Is.EqualTo(n), "atomicAdd");
        Assert.That(ints[1], Is.EqualTo(n - 1), "atomicMax");
        Assert.That(ints[2], Is.EqualTo(-(n - 1)), "atomicMin");
        Assert.That(ints[3], Is.EqualTo(n), "atomicCAS loop");
        Assert.That(ints[4], Is.InRange(0, n - 1), "atomicExch");
        Assert.That(floats[0], Is.EqualTo(0.5f * n), "float atomicAdd");
    }

    [Test]
    public void ThreeDimensionalIndices()
    {
        (uint x, uint y, uint z) grid = (3, 2, 2), block = (4, 3, 2);
        int per = (int)(block.x * block.y * block.z);
        var o = Pinned<int>((int)(grid.x * grid.y * grid.z) * per);
        Launch("emu_selftest_indices", grid, block, 0, Addr(o));
        int i = 0;
        for (int gz = 0; gz < grid.z; gz++)
            for (int gy = 0; gy < grid.y; gy++)
                for (int gx = 0; gx < grid.x; gx++)
                    for (int tz = 0; tz < block.z; tz++)
                        for (int ty = 0; ty < block.y; ty++)
                            for (int tx = 0; tx < block.x; tx++, i++)
                                Assert.That(o[i], Is.EqualTo((tx + 10 * gx) | (ty + 10 * gy) << 8 | (tz + 10 * gz) << 16), $"element {i}");
    }

    /// <summary>The emulator refuses a launch the driver would: more threads than the kernel's registers allow on
    /// sm_80 or sm_90 (ptxas's figures from the build), or more shared memory than an A100's block may have. The
    /// check comes before the kernel runs, so no arguments are needed.</summary>
    [Test]
    public void LaunchesBeyondAKernelsResourcesAreRefused()
    {
        var heavy = KernelModules.Resources().MaxBy(r => r.Registers)!;
        Assert.That(heavy.MaxThreadsPerBlock, Is.LessThan(1024), "the kernel with the most registers");
        nint f = _rt.GetFunction(heavy.Module, heavy.Kernel);
        uint over = (uint)heavy.MaxThreadsPerBlock + 32;
        var e = Assert.Throws<CudaException>(() => _rt.Launch(f, heavy.Kernel, (1, 1, 1), (over, 1, 1), 0, null))!;
        Assert.That((e.Operation, e.ErrorName), Is.EqualTo(($"cuLaunchKernel({heavy.Kernel})", "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES")));
        Assert.That(e.Message, Does.Contain($"{over} threads per block"));
        e = Assert.Throws<CudaException>(() => _rt.Launch(f, heavy.Kernel, (1, 1, 1), (32, 1, 1), 164 << 10, null))!;
        Assert.That(e.ErrorName, Is.EqualTo("CUDA_ERROR_INVALID_VALUE"));
        Assert.That(e.Message, Does.Contain("sm_80"));
    }

    /// <summary>Every extern "C" __global__ kernel of kernels/**/*.cu must be registered (a VWLMM_KERNEL line).</summary>
    [Test]
    public void EveryKernelIsRegistered()
    {
        var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "VwLmm.Native.sln"))) dir = dir.Parent;
        Assert.That(dir, Is.Not.Null, "repository root (VwLmm.Native.sln) not found above the test directory");
        var kernels = Path.Combine(dir!.FullName, "kernels");
        var names = Directory.EnumerateFiles(kernels, "*.cu", SearchOption.AllDirectories)
            .SelectMany(f => Regex.Matches(File.ReadAllText(f), @"extern\s+""C""\s+__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)").Select(m => m.Groups[1].Value))
            .ToList();
        Assert.That(names, Has.Count.GreaterThan(10));
        foreach (var name in names)
            Assert.That(Emulator.ModuleGetFunction(out _, name), Is.Zero, $"{name}: {Emulator.LastError}");
    }
}
