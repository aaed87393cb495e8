using VwLmm.Core;

namespace VwLmm.Cuda;

/// <summary>Launchers for kernels/adamw.cu (fused AdamW over flat [n] buffers and over a parameter list, and the
/// list's gradient zeroing).</summary>
public sealed unsafe partial class CudaBackend
{
    // PARAM_LIST_CHUNK in kernels/common.cuh: elements per block of the list kernels; also the per-tensor sum of
    // squares' chunk, so that the list's partial sums are the per-tensor ones.
    private const int ParamListChunk = SumSquaresChunk;
    // sizeof(ParamEntry) in kernels/common.cuh: four pointers, n, the weight decay and padding.
    private const int ParamEntryBytes = 48;
    // adamw_list_f32 keeps four elements of each array in flight per thread; at 1024 threads a chunk of 8192 elements
    // is two passes. On an H100 that streamed at 74 % of bandwidth at the LLaVA-7B size (57 % at 256 threads and one
    // element per thread) and 59 % at bench-5m (41 %), where 721 chunks would not fill the GPU with 256 threads.
    private const uint ListAdamWThreads = 1024; // ADAMW_LIST_THREADS in kernels/adamw.cu, its launch bound

    /// <summary>A parameter list's device table: ParamEntry [count], then chunk_start [count + 1] (long long).</summary>
    private sealed class ParamTable(CudaBackend owner, DeviceBuffer buffer, int count, long chunks) : IDisposable
    {
        public CudaBackend Owner { get; } = owner;
        public nint Entries => buffer.Ptr;
        public nint ChunkStart => buffer.Ptr + Count * ParamEntryBytes;
        public int Count { get; } = count;
        public long Chunks { get; } = chunks;
        public void Dispose() => buffer.Dispose();
    }

    /// <summary>The list's table on this backend, written and uploaded on first use (the tensors of a list do not move).</summary>
    private ParamTable TableFor(ParameterList list)
    {
        if (list.BackendState is ParamTable { } table && table.Owner == this) return table;
        int count = list.Count;
        var host = new byte[count * ParamEntryBytes + (count + 1) * sizeof(long)];
        long chunks = 0;
        fixed (byte* b = host)
        {
            long* chunkStart = (long*)(b + count * ParamEntryBytes);
            for (int i = 0; i < count; i++)
            {
                byte* e = b + i * ParamEntryBytes;
                long n = list.Values[i].Numel;
                ((nint*)e)[0] = list.Values[i].Ptr;
                ((nint*)e)[1] = list.Grads[i].Ptr;
                ((nint*)e)[2] = list.M[i].Ptr;
                ((nint*)e)[3] = list.V[i].Ptr;
                *(long*)(e + 32) = n;
                *(float*)(e + 40) = list.WeightDecay[i];
                chunkStart[i] = chunks;
                chunks += (n + ParamListChunk - 1) / ParamListChunk;
            }
            chunkStart[count] = chunks;
            var buffer = Allocate(host.Length);
            Runtime.CopyHostToDevice(buffer.Ptr, (nint)b, host.Length);
            (list.BackendState as IDisposable)?.Dispose();
            table = new ParamTable(this, buffer, count, chunks);
        }
        list.BackendState = table;
        return table;
    }

    public void ZeroGradients(ParameterList list)
    {
        var t = TableFor(list);
        if (t.Chunks == 0) return;
        nint entries = t.Entries, chunkStart = t.ChunkStart;
        int count = t.Count;
        ReadOnlySpan<KernelArg> args = [&entries, &chunkStart, &count];
        Launch("adamw", "zero_gradients_f32", (checked((uint)t.Chunks), 1, 1), (PointwiseThreads, 1, 1), 0, args);
    }

    public void AdamW(ParameterList list, float lr, float beta1, float beta2, float eps, int step, float gradScale)
    {
        var t = TableFor(list);
        if (t.Chunks == 0) return;
        var (invCorrection1, invCorrection2) = Core.AdamW.BiasCorrections(beta1, beta2, step);
        nint entries = t.Entries, chunkStart = t.ChunkStart;
        int count = t.Count;
        ReadOnlySpan<KernelArg> args = [&entries, &chunkStart, &count, &lr, &beta1, &beta2, &eps, &invCorrection1, &invCorrection2, &gradScale];
        Launch("adamw", "adamw_list_f32", (checked((uint)t.Chunks), 1, 1), (ListAdamWThreads, 1, 1), 0, args);
    }

    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, long n, float lr, float beta1, float beta2, float eps,
                      float weightDecay, int step, float gradScale)
    {
        if (n <= 0) return;
        var (invCorrection1, invCorrection2) = Core.AdamW.BiasCorrections(beta1, beta2, step);
        nint pp = param.Ptr, pg = grad.Ptr, pm = m.Ptr, pv = v.Ptr;
        ReadOnlySpan<KernelArg> args = [&pp, &pg, &pm, &pv, &n, &lr, &beta1, &beta2, &eps, &weightDecay, &invCorrection1, &invCorrection2, &gradScale];
        uint blocks = (uint)Math.Min(CeilDiv(n, PointwiseThreads), MaxPointwiseBlocks);
        Launch("adamw", "adamw_f32", (blocks, 1, 1), (PointwiseThreads, 1, 1), 0, args);
    }
}
