using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>
/// The CUDA backend: kernels/*.cu launched through an <see cref="ICudaRuntime"/> (the driver on a GPU, the emulator on
/// the CPU) and cuBLAS for GEMM. One partial file per kernel family (CudaBackend.&lt;Family&gt;.cs mirrors
/// kernels/&lt;family&gt;.cu) packs the arguments and picks grid, block and shared sizes. Owns the runtime.
/// Captures steps as CUDA graphs (<see cref="IStepCapture"/>).
/// </summary>
public sealed unsafe partial class CudaBackend : IBackend, IStepCapture
{
    private sealed class RuntimeBuffer(ICudaRuntime runtime, nint ptr, long bytes) : DeviceBuffer(ptr, bytes)
    {
        protected override void Release(nint ptr) => runtime.Free(ptr);
    }

    private readonly Dictionary<string, nint> _functions = new();
    private readonly Dictionary<string, KernelArgKind[]> _launchedSignatures = new();
    private DeviceBuffer? _scratch;
    // Host staging for the launchers that read indices back (targets, pairs, the embedding map): grown, never shrunk,
    // so that steady-state steps allocate nothing.
    private int[] _hostInts = [];
    private long[] _hostKeys = [];
    private readonly HashSet<int> _seenRows = new();
    private bool _capturing;
    private int _liveGraphs;

    public CudaBackend(ICudaRuntime runtime) => Runtime = runtime;

    public ICudaRuntime Runtime { get; }
    public string Name => Runtime.IsEmulated ? "cuda-emu" : "cuda";

    public DeviceBuffer Allocate(long bytes)
    {
        if (bytes < 0) throw new ArgumentOutOfRangeException(nameof(bytes));
        return new RuntimeBuffer(Runtime, Runtime.Alloc(Math.Max(bytes, 1)), bytes);
    }

    public void Upload<T>(Tensor dst, ReadOnlySpan<T> src) where T : unmanaged
    {
        long bytes = (long)src.Length * sizeof(T);
        if (bytes > dst.Bytes) throw new ArgumentException($"Upload: {src.Length} elements do not fit tensor {dst.Shape} {dst.DType}");
        RefuseWhileCapturing(nameof(Upload));
        fixed (T* s = src) Runtime.CopyHostToDevice(dst.Ptr, (nint)s, bytes);
    }

    public void Download<T>(Tensor src, Span<T> dst) where T : unmanaged
    {
        long bytes = (long)dst.Length * sizeof(T);
        if (bytes > src.Bytes) throw new ArgumentException($"Download: {dst.Length} elements exceed tensor {src.Shape} {src.DType}");
        RefuseWhileCapturing(nameof(Download));
        fixed (T* d = dst) Runtime.CopyDeviceToHost((nint)d, src.Ptr, bytes);
    }

    public void Synchronize()
    {
        RefuseWhileCapturing(nameof(Synchronize));
        Runtime.Synchronize();
    }

    /// <summary>
    /// Records <paramref name="step"/> as a CUDA graph. Scratch buffers must already be large enough: one that grew
    /// during the capture, or while a graph lives, would leave the graph writing freed memory, so that throws.
    /// </summary>
    public ICapturedStep Capture(Action step)
    {
        if (_capturing) throw new InvalidOperationException("Capture: the backend is already capturing a step");
        Runtime.BeginCapture();
        _capturing = true;
        try
        {
            step();
        }
        catch
        {
            _capturing = false;
            try { Runtime.DestroyGraph(Runtime.EndCapture()); }
            catch (CudaException) { } // the step's own exception says what went wrong; the capture it broke adds nothing
            throw;
        }
        _capturing = false;
        var graph = new Graph(this, Runtime.EndCapture());
        _liveGraphs++;
        return graph;
    }

    private sealed class Graph(CudaBackend backend, nint handle) : ICapturedStep
    {
        private bool _disposed;

        public void Replay()
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            backend.RefuseWhileCapturing(nameof(Replay));
            backend.Runtime.LaunchGraph(handle);
            backend.GraphReplays++;
        }

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            backend._liveGraphs--;
            backend.Runtime.DestroyGraph(handle);
        }
    }

    /// <summary>How many times a captured step was replayed on this backend.</summary>
    public long GraphReplays { get; private set; }

    private void RefuseWhileCapturing(string op)
    {
        if (_capturing)
            throw new InvalidOperationException($"{op}: not permitted while a step is being captured (a graph replays device work only; copy to and from the host between replays)");
    }

    public void Dispose()
    {
        _scratch?.Dispose();
        _widened?.Dispose();
        Runtime.Dispose();
    }

    /// <summary>Launches kernel <paramref name="kernel"/> of kernels/<paramref name="module"/>.cu. The first launch of
    /// each kernel records the kinds of <paramref name="args"/> in <see cref="LaunchedSignatures"/>.</summary>
    private void Launch(string module, string kernel, (uint x, uint y, uint z) grid, (uint x, uint y, uint z) block,
                        uint sharedBytes, ReadOnlySpan<KernelArg> args)
    {
        if (!_functions.TryGetValue(kernel, out nint f))
        {
            f = Runtime.GetFunction(module, kernel);
            _functions[kernel] = f;
            var kinds = new KernelArgKind[args.Length];
            for (int i = 0; i < args.Length; i++) kinds[i] = args[i].Kind;
            _launchedSignatures[kernel] = kinds;
        }
        void** addresses = stackalloc void*[args.Length];
        for (int i = 0; i < args.Length; i++) addresses[i] = args[i].Address;
        Runtime.Launch(f, kernel, grid, block, sharedBytes, addresses);
    }

    /// <summary>Kernel name → the argument kinds its launcher packed, for every kernel this backend launched (recorded at
    /// the first launch; a launcher packs the same kinds every time). Tests compare them with the kernels' signatures.</summary>
    public IReadOnlyDictionary<string, KernelArgKind[]> LaunchedSignatures => _launchedSignatures;

    /// <summary>
    /// A device buffer of at least <paramref name="floats"/> floats for partial sums, reused by every op: launches are
    /// ordered on one stream, so an op may use it as soon as the previous op's kernels were queued.
    /// </summary>
    private nint Scratch(long floats) => Grow(ref _scratch, floats * sizeof(float));

    /// <summary><paramref name="buffer"/>, replaced by a larger one (1 MiB at least) when it holds fewer than
    /// <paramref name="bytes"/>: grown, never shrunk, so that steady-state steps allocate nothing.</summary>
    private nint Grow(ref DeviceBuffer? buffer, long bytes)
    {
        if (buffer is null || buffer.Bytes < bytes)
        {
            if (_capturing || _liveGraphs > 0)
                throw new InvalidOperationException($"a scratch buffer of {buffer?.Bytes ?? 0} bytes must grow to {bytes} while a captured step holds its address: run the step once before capturing it");
            buffer?.Dispose();
            buffer = Allocate(Math.Max(bytes, 1 << 20));
        }
        return buffer.Ptr;
    }

    private Span<int> HostInts(int n) => Staging(ref _hostInts, n);
    private Span<long> HostKeys(int n) => Staging(ref _hostKeys, n);

    private static Span<T> Staging<T>(ref T[] buffer, int n)
    {
        if (buffer.Length < n) buffer = new T[Math.Max(n, 2 * buffer.Length)];
        return buffer.AsSpan(0, n);
    }

    private static nint PtrOrNull(Tensor? t) => t?.Ptr ?? 0;
    private static uint CeilDiv(long a, long b) => checked((uint)((a + b - 1) / b));
}
