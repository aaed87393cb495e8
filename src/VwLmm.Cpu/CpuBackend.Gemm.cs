using VwLmm.Core;
using VwLmm.Cpu.Native;

namespace VwLmm.Cpu;

// GEMM: one row-major product per batch item, by PackedSgemm on the pool (where Vector512 is accelerated) or by
// cblas_sgemm, which OpenBLAS threads itself with this backend's thread count.
// A linear layer over a few rows (token-by-token decoding) is a matrix-vector product instead: sgemm would pack the
// whole weight matrix for one row of output and fork its threads for microseconds of work. A bf16 weight matrix is
// read as bf16 by the matrix-vector product (half the bytes a decoded token streams) and by PackedSgemm, which widens
// it as it packs; for OpenBLAS, which has no bf16 operand, it is widened a block of rows at a time.
public sealed unsafe partial class CpuBackend
{
    /// <summary>Rows of x·Wᵀ up to which the product runs as dot products against W's rows instead of sgemm.</summary>
    private const int GemvMaxRows = 4;

    /// <summary>Bytes of W a matrix-vector product with several rows of x reads per slice: half of a Zen 4 core's L2.</summary>
    private const long GemvSliceBytes = 512 << 10;

    /// <summary>
    /// Floats of widened bf16 weights one sgemm call gets at most (8 MiB): the scratch stays small beside a model kept in
    /// bf16 to save memory, and a 130×4096×4096 product in blocks this size, widening included, took 1–3% longer than
    /// the F32 one (2 threads and 1).
    /// </summary>
    private const int WidenedBlockFloats = 1 << 21;

    /// <summary>Rows a widened block holds at least however long they are, so that sgemm never gets a thin sliver.</summary>
    private const int MinWidenedRows = 256;

    public void Gemm(bool transA, bool transB, int M, int N, int K, float alpha,
                     Tensor A, int lda, long strideA, Tensor B, int ldb, long strideB,
                     float beta, Tensor C, int ldc, long strideC, int batch, Tensor? bias = null, long strideBias = 0, Tensor? addend = null)
    {
        GemmOperands.Check(transA, transB, A, B, C);
        GemmOperands.CheckEpilogue(bias, strideBias, addend, C, M, N, ldc, strideC, batch);
        if (M == 0 || N == 0) return;
        float* a = F(A), c = F(C);
        bool bf16 = B.DType == DType.BF16, gemv = !transA && transB && beta == 0 && M <= GemvMaxRows;
        if (GemmKernel == CpuGemm.Avx512 && !gemv)
        {
            // Our GEMM adds the bias and the addend as it stores the last block of sums.
            var o = new SgemmOperands(transA, transB, M, N, K, alpha, a, lda, bf16 ? null : F(B), ldb, beta, c, ldc)
            {
                B16 = bf16 ? (BF16*)B.Ptr : null,
                Bias = F(bias),
                Addend = F(addend),
            };
            // Items whose blocks of C are disjoint (a stack of linear layers on one input, per-item weight gradients)
            // share one fork; items summing into one C run in order, so that the sum's order does not depend on the
            // threads.
            if (Math.Abs(strideC) >= (long)(M - 1) * ldc + N) PackedSgemmBatch(o, strideA, strideB, strideC, strideBias, batch);
            else
                for (int i = 0; i < batch; i++)
                    PackedSgemmBatch(o.Offset(i * strideA, i * strideB, i * strideC, i * strideBias), 0, 0, 0, 0, 1);
            return;
        }
        if (gemv)
        {
            if (bf16) Gemv(M, N, K, alpha, a, lda, strideA, (BF16*)B.Ptr, ldb, strideB, c, ldc, strideC, batch);
            else Gemv(M, N, K, alpha, a, lda, strideA, (F32*)B.Ptr, ldb, strideB, c, ldc, strideC, batch);
        }
        else if (bf16) GemmWidened(M, N, K, alpha, a, lda, strideA, (BF16*)B.Ptr, ldb, strideB, beta, c, ldc, strideC, batch);
        else
            for (int i = 0; i < batch; i++)
                Sgemm(transA, transB, M, N, K, alpha, a + i * strideA, lda, F(B) + i * strideB, ldb, beta, c + i * strideC, ldc);
        for (int i = 0; i < batch; i++)
        {
            if (bias is not null) ParallelFor(M, new BiasAddJob { X = c + i * strideC, Bias = F(bias) + i * strideBias, C = N, P = 1 }, MinTasksPerChunk(N));
            if (addend is not null) Map(new AddOp(), c + i * strideC, (long)M * N, c + i * strideC, F(addend) + i * strideC);
        }
    }

    /// <summary>
    /// Row-major C [M,N] = alpha·op(A)·op(B) + beta·C on <see cref="Threads"/> threads: <see cref="PackedSgemm"/> when
    /// <see cref="GemmKernel"/> is <see cref="CpuGemm.Avx512"/>, else OpenBLAS.
    /// </summary>
    private void Sgemm(bool transA, bool transB, int M, int N, int K, float alpha, float* a, int lda, float* b, int ldb,
                       float beta, float* c, int ldc)
    {
        if (GemmKernel == CpuGemm.Avx512)
        {
            PackedSgemmBatch(new(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc), 0, 0, 0, 0, 1);
            return;
        }
        OpenBlas.UseThreads(Threads);
        OpenBlas.Sgemm(OpenBlas.RowMajor, transA ? OpenBlas.Trans : OpenBlas.NoTrans, transB ? OpenBlas.Trans : OpenBlas.NoTrans,
                       M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    }

    /// <summary>
    /// <paramref name="batch"/> products in one fork, item i on operands offset by i·stride (C blocks disjoint): each
    /// cut into the same number of tasks, so that every item's tasks spread over the threads.
    /// </summary>
    private void PackedSgemmBatch(in SgemmOperands o, long strideA, long strideB, long strideC, long strideBias, int batch)
    {
        var job = new PackedSgemmJob { Operands = o, StrideA = strideA, StrideB = strideB, StrideC = strideC, StrideBias = strideBias };
        int panels = (o.N + PackedSgemm.NR - 1) / PackedSgemm.NR, blocks = (o.M + PackedSgemm.MR - 1) / PackedSgemm.MR;
        int tasks = (long)o.M * o.N * o.K < MinParallelWork ? 1 : Threads;
        // Columns first: each task then packs only its own part of B and reads A in place.
        job.SplitRows = panels < tasks;
        job.Tasks = Math.Max(1, Math.Min(tasks, job.SplitRows ? blocks : panels));
        Pool.For(checked(batch * job.Tasks), job);
    }

    /// <summary>
    /// Tasks [start, end) of <see cref="PackedSgemm"/> calls: task t is item t / Tasks's C cut into Tasks column ranges
    /// (or row ranges) of whole tiles.
    /// </summary>
    private struct PackedSgemmJob : IRangeJob
    {
        public SgemmOperands Operands;
        public long StrideA, StrideB, StrideC, StrideBias;
        public int Tasks;
        public bool SplitRows;

        public readonly void Execute(int start, int end)
        {
            float* scratch = JobScratch(PackedSgemm.ScratchFloats);
            int m = Operands.M, n = Operands.N;
            for (int task = start; task < end; task++)
            {
                int item = task / Tasks, t = task % Tasks;
                var o = Operands.Offset(item * StrideA, item * StrideB, item * StrideC, item * StrideBias);
                if (SplitRows)
                {
                    var (m0, m1) = Range(m, PackedSgemm.MR, t);
                    PackedSgemm<V512>.Run(o, m0, m1, 0, n, scratch);
                }
                else
                {
                    var (n0, n1) = Range(n, PackedSgemm.NR, t);
                    PackedSgemm<V512>.Run(o, 0, m, n0, n1, scratch);
                }
            }
        }

        // Task t's share of [0, length) in whole tiles of the given size.
        private readonly (int Start, int End) Range(int length, int tile, int t)
        {
            long tiles = (length + tile - 1) / tile;
            return ((int)Math.Min(length, tiles * t / Tasks * tile), (int)Math.Min(length, tiles * (t + 1) / Tasks * tile));
        }
    }

    /// <summary>
    /// C_i [M,N] = alpha·A_i [M,K]·B_i [N,K]ᵀ for every batch item i, as M·N dot products per item, split over the
    /// batch·N rows of the B_i in one fork (a stack of decode-sized products pays one worker wake-up, not one each).
    /// Every element is one <see cref="SimdMath.Dot{TV, TB}"/>, so it does not depend on M, the batch, the split or the
    /// thread count, nor on whether B is bf16 or its f32 widening.
    /// </summary>
    private void Gemv<TB>(int M, int N, int K, float alpha, float* a, int lda, long strideA, TB* b, int ldb, long strideB,
                          float* c, int ldc, long strideC, int batch) where TB : unmanaged, IFloatStorage<TB>
    {
        var job = new GemvJob<TB>
        {
            A = a, B = b, C = c, M = M, N = N, K = K, Lda = lda, Ldb = ldb, Ldc = ldc, Alpha = alpha,
            StrideA = strideA, StrideB = strideB, StrideC = strideC,
        };
        int rows = checked(batch * N);
        ParallelFor(rows, job, TasksPerChunk(rows, (long)M * K));
    }

    private struct GemvJob<TB> : ISimdJob where TB : unmanaged, IFloatStorage<TB>
    {
        public float* A, C;
        public TB* B;
        public int M, N, K, Lda, Ldb, Ldc;
        public long StrideA, StrideB, StrideC;
        public float Alpha;

        /// <summary>
        /// Rows [start, end) of the batch's B rows laid end to end, one batch item's run at a time. With M &gt; 1 the rows
        /// go in slices of about <see cref="GemvSliceBytes"/>, each read from memory once and from cache for the other
        /// rows of A: a 7B model's weight matrix is far larger than the caches, and M passes over a whole run would
        /// stream it M times.
        /// </summary>
        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            int slice = M == 1 ? N : (int)Math.Clamp(GemvSliceBytes / Math.Max(1L, (long)K * sizeof(TB)), 1, N);
            while (start < end)
            {
                int i = start / N, n0 = start - i * N, n1 = Math.Min(N, n0 + end - start);
                float* a = A + i * StrideA;
                for (int s0 = n0; s0 < n1; s0 += slice)
                {
                    int rows = Math.Min(slice, n1 - s0);
                    float* c = C + i * StrideC + s0;
                    TB* b = B + i * StrideB + (long)s0 * Ldb;
                    for (int m = 0; m < M; m++)
                        SimdMath.DotRows<TV, TB>(c + (long)m * Ldc, a + (long)m * Lda, b, Ldb, rows, K, Alpha);
                }
                start += n1 - n0;
            }
        }
    }

    /// <summary>
    /// C_i [M,N] = alpha·A_i [M,K]·W_iᵀ + beta·C_i for W_i [N,K] stored bf16 (pitch ldw): W_i's rows are widened into
    /// scratch <see cref="WidenedBlockRows"/> at a time and each block is one OpenBLAS sgemm onto C_i's columns
    /// [n0, n0+nb). With one block that is the F32 Gemm's one sgemm on the widened matrix, bit for bit; several blocks
    /// can differ from it by rounding: OpenBLAS's summation order over K depends on where an element falls among its
    /// kernel's tiles and threads' ranges, which the block moves (0.3.21's Haswell kernels: up to 2⁻²⁵·Σ_k|a_k·w_k|).
    /// </summary>
    private void GemmWidened(int M, int N, int K, float alpha, float* a, int lda, long strideA, BF16* w, int ldw, long strideW,
                             float beta, float* c, int ldc, long strideC, int batch)
    {
        int rows = WidenedBlockRows(N, K);
        float* block = Scratch((long)rows * K);
        for (int i = 0; i < batch; i++)
            for (int n0 = 0; n0 < N; n0 += rows)
            {
                int nb = Math.Min(rows, N - n0);
                var widen = new WidenJob { Dst = block, Src = w + i * strideW + (long)n0 * ldw, K = K, Ldw = ldw };
                ParallelFor(nb, widen, TasksPerChunk(nb, K));
                Sgemm(false, true, M, nb, K, alpha, a + i * strideA, lda, block, K, beta, c + i * strideC + n0, ldc);
            }
    }

    /// <summary>
    /// Rows of an [N,K] bf16 matrix widened per sgemm call: the fewest blocks of at most
    /// max(<see cref="WidenedBlockFloats"/>/K, <see cref="MinWidenedRows"/>) rows, evened out so the last is no sliver.
    /// </summary>
    internal static int WidenedBlockRows(int N, int K)
    {
        long most = Math.Max(WidenedBlockFloats / Math.Max(K, 1), MinWidenedRows);
        long blocks = (N + most - 1) / most;
        return (int)((N + blocks - 1) / blocks);
    }

    /// <summary>Rows [start, end) of a bf16 block (pitch Ldw) widened into Dst [rows, K].</summary>
    private struct WidenJob : ISimdJob
    {
        public float* Dst;
        public BF16* Src;
        public int K, Ldw;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            for (int r = start; r < end; r++) SimdMath.Widen<TV>(Dst + (long)r * K, Src + (long)r * Ldw, K);
        }
    }
}
