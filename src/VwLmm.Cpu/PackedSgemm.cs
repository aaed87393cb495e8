using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace VwLmm.Cpu;

/// <summary>
/// The operands of one GEMM: element (i, k) of op(A) is A[i·RsA + k·CsA], element (k, j) of op(B) is B[k·RsB + j·CsB],
/// or B16[…] widened when B is stored bf16 (B16 set, B null). After the product, Bias (when set) is added to every row of
/// C, then Addend (when set, C's layout) to C, each a rounding of its own.
/// </summary>
internal readonly unsafe struct SgemmOperands(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda,
                                             float* b, int ldb, float beta, float* c, int ldc)
{
    public readonly int M = m, N = n, K = k, Ldc = ldc;
    public readonly float Alpha = alpha, Beta = beta;
    public float* A { get; init; } = a;
    public float* B { get; init; } = b;
    public BF16* B16 { get; init; }
    public float* C { get; init; } = c;
    public float* Bias { get; init; }
    public float* Addend { get; init; }
    public readonly long RsA = transA ? 1 : lda, CsA = transA ? lda : 1, RsB = transB ? 1 : ldb, CsB = transB ? ldb : 1;

    /// <summary>The same product on A, B, C (and the addend with it) and the bias moved on by the given numbers of elements.</summary>
    public SgemmOperands Offset(long a, long b, long c, long bias) => this with
    {
        A = A + a, B = B == null ? null : B + b, B16 = B16 == null ? null : B16 + b, C = C + c, Bias = Bias == null ? null : Bias + bias,
        Addend = Addend == null ? null : Addend + c,
    };
}

/// <summary>
/// Row-major C [M,N] = alpha·op(A) [M,K]·op(B) [K,N] + beta·C for one task's block of C, one thread: the GEMM of
/// <see cref="CpuBackend"/> where Vector512 is accelerated (TV = V512), and the products inside fused attention at
/// either width. A 12×(2·TV.Count) tile of C lives in 24 vector registers (zmm: 12×32); op(B) is packed KC×NR at a
/// time (one L1-sized micro-panel, zero-padded past N); op(A) is read in place, each element broadcast from its row
/// (transposed or not), so nothing of A is copied, unless its rows are a multiple of 4 KiB apart (below). The blocking (KC 256, MC 132 rows of A per L2 pass, NC 1024
/// columns of packed B) follows BLIS's loop order. A bf16 B is widened as it is packed, exactly, so its products have
/// the bits of the same product on the widened matrix. At 256 bits the tile needs more registers than AVX2 has; the
/// spills cost speed, not correctness, and there the backend's own GEMMs go to OpenBLAS.
/// <para>
/// Why our own: OpenBLAS 0.3.21 predates Zen 5, and where it mis-detects the core the environment pins it to its
/// Haswell (AVX2) kernels, which reach half of a full-width AVX-512 core's FMA rate (docs/BENCHMARKS.md, session 20).
/// </para>
/// <para>
/// Rows of A a multiple of 4 KiB apart all map to one L1 set, and a 12-row tile's twelve lines then outnumber the ways
/// of an 8-way L1 (Zen 4's): every k evicts lines the next k needs (1024³ ran at 70% of the peak, 512³ at 93%;
/// docs/BENCHMARKS.md, session 31). Such an A is copied, a block of rows at a time, to rows kc floats apart instead;
/// a transposed A whose k lie 4 KiB apart likewise, to k one tile height apart.
/// </para>
/// <para>
/// Every element of C is the same sum in the same order wherever it falls: per KC block of k, one FMA chain from
/// zero in increasing k, scaled by alpha, then added to C (the first block applies beta). So the result depends on
/// neither the thread split, nor the tile an element lands in, nor how N is cut into calls.
/// </para>
/// </summary>
internal static unsafe class PackedSgemm
{
    public const int MR = 12, KC = 256, MC = 132, NC = 1024;

    /// <summary>Columns of a tile at the widest width (2 × 16 floats), which the task split of the backend's GEMM uses.</summary>
    public const int NR = 32;

    /// <summary>
    /// Floats of per-thread scratch one task needs at either width: packed B, a packed block of A rows (or an edge tile
    /// of them), an edge tile of C, a square block of bf16 B widened for its transpose.
    /// </summary>
    public const int ScratchFloats = KC * NC + (MC + MR) * KC + MR * NR + 16 * 16;

    /// <summary>Whether the backend's GEMMs can run here at full speed: Vector512 accelerated.</summary>
    public static bool IsSupported => Vector512.IsHardwareAccelerated;
}

/// <inheritdoc cref="PackedSgemm"/>
internal static unsafe class PackedSgemm<TV> where TV : unmanaged, IVec<TV>
{
    private const int MR = PackedSgemm.MR, KC = PackedSgemm.KC, MC = PackedSgemm.MC, NC = PackedSgemm.NC;
    private static int NR => 2 * TV.Count;

    // How a tile's sum reaches C: the first K block overwrites (beta = 0) or blends in beta·C; later blocks add.
    private enum Store { Overwrite, Blend, Add }

    /// <summary>Rows [m0, m1) × columns [n0, n1) of C; <paramref name="scratch"/> holds <see cref="ScratchFloats"/>.</summary>
    public static void Run(in SgemmOperands o, int m0, int m1, int n0, int n1, float* scratch)
    {
        float* packB = scratch, packA = scratch + KC * NC, edgeC = packA + (MC + MR) * KC, square = edgeC + MR * NR;
        // A pitch of a multiple of 1024 floats (4 KiB) between the elements a tile reads in turn: see the class comment.
        bool copyA = Math.Max(o.RsA, o.CsA) % 1024 == 0;
        if (o.K == 0)
        {
            // No k to sum: C = beta·C, and exactly 0 for beta = 0 (C may hold anything then), as BLAS defines it.
            for (int i = m0; i < m1; i++)
                for (int j = n0; j < n1; j++)
                {
                    ref float c = ref o.C[(long)i * o.Ldc + j];
                    c = o.Beta == 0 ? 0 : o.Beta * c;
                    if (o.Bias != null) c += o.Bias[j];
                    if (o.Addend != null) c += o.Addend[(long)i * o.Ldc + j];
                }
            return;
        }
        for (int jc = n0; jc < n1; jc += NC)
        {
            int nc = Math.Min(NC, n1 - jc);
            for (int pc = 0; pc < o.K; pc += KC)
            {
                int kc = Math.Min(KC, o.K - pc);
                // With one block of rows, each micro-panel is packed just before its only use, while it is in L1.
                bool onePass = m1 - m0 <= MC;
                if (!onePass) PackB(o, pc, kc, jc, nc, packB, square);
                var store = pc > 0 ? Store.Add : o.Beta == 0 ? Store.Overwrite : Store.Blend;
                // The bias and the addend join the last block's sums, after them, each as an addition of its own.
                bool last = pc + kc >= o.K;
                float* bias = last && o.Bias != null ? o.Bias + jc : null;
                long addend = last && o.Addend != null ? o.Addend - o.C : 0;
                for (int ic = m0; ic < m1; ic += MC)
                {
                    int mc = Math.Min(MC, m1 - ic);
                    if (copyA) PackA(o, ic, mc, pc, kc, packA);
                    for (int jr = 0; jr < nc; jr += NR)
                    {
                        int nr = Math.Min(NR, nc - jr);
                        float* pb = packB + (long)jr * kc;
                        if (onePass) PackB(o, pc, kc, jc + jr, nr, pb, square);
                        for (int ir = 0; ir < mc;)
                        {
                            // Twelve-row tiles, and four-row ones for up to 8 rows left: an edge of 1–8 rows then
                            // costs one or two short tiles, not a whole padded one (M 128 = 10 × 12 + 2 × 4).
                            int left = mc - ir, tile = TileRows(left), mr = Math.Min(tile, left), i = ic + ir;
                            float* pa = o.A + i * o.RsA + pc * o.CsA;
                            long rs = o.RsA, cs = o.CsA;
                            if (copyA)
                            {
                                pa = packA + (long)ir * kc;
                                (rs, cs) = o.CsA == 1 ? ((long)kc, 1L) : (1L, (long)tile);
                            }
                            else if (mr < tile)
                            {
                                // Rows past M would be read out of bounds: the edge rows go to a zero-padded copy.
                                if (jr == 0) CopyEdgeRows(pa, rs, cs, mr, tile, kc, packA);
                                pa = packA;
                                rs = kc;
                                cs = 1;
                            }
                            float* c = o.C + (long)i * o.Ldc + jc + jr;
                            float* b = bias == null ? null : bias + jr;
                            if (mr == tile && nr == NR)
                            {
                                Tile(tile, kc, pa, rs, cs, pb, c, o.Ldc, o.Alpha, o.Beta, store);
                                if (b != null || addend != 0) Finish(c, o.Ldc, tile, b, addend);
                            }
                            else
                            {
                                Tile(tile, kc, pa, rs, cs, pb, edgeC, NR, o.Alpha, 0, Store.Overwrite);
                                MergeEdge(edgeC, c, o.Ldc, mr, nr, o.Beta, store, b, addend);
                            }
                            ir += mr;
                        }
                    }
                }
            }
        }
    }

    /// <summary>op(B) [pc, pc+kc) × [jc, jc+nc) as ⌈nc/NR⌉ micro-panels [kc][NR], columns past nc zero.</summary>
    private static void PackB(in SgemmOperands o, int pc, int kc, int jc, int nc, float* dst, float* square)
    {
        if (o.B16 != null) PackB(o, o.B16, pc, kc, jc, nc, dst, square);
        else PackB(o, (F32*)o.B, pc, kc, jc, nc, dst, square);
    }

    private static void PackB<TB>(in SgemmOperands o, TB* b, int pc, int kc, int jc, int nc, float* dst, float* square)
        where TB : unmanaged, IFloatStorage<TB>
    {
        for (int jr = 0; jr < nc; jr += NR)
        {
            int nr = Math.Min(NR, nc - jr);
            float* panel = dst + (long)jr * kc;
            TB* src = b + pc * o.RsB + (jc + jr) * o.CsB;
            if (o.CsB == 1 && nr == NR)
            {
                for (int k = 0; k < kc; k++)
                {
                    TB* row = src + k * o.RsB;
                    TB.Load<TV>(row).Store(panel + k * NR);
                    TB.Load<TV>(row + TV.Count).Store(panel + k * NR + TV.Count);
                }
                continue;
            }
            if (o.RsB == 1 && nr == NR)
            {
                // B transposed (a linear layer's weight): square blocks of its rows transposed in registers, then
                // single elements for the k past the last whole block.
                long ldb = o.CsB;
                int w = TV.Count, k = 0;
                for (; k + w <= kc; k += w)
                {
                    Transpose(src + k, ldb, panel + k * NR, square);
                    Transpose(src + w * ldb + k, ldb, panel + k * NR + w, square);
                }
                for (; k < kc; k++)
                    for (int j = 0; j < NR; j++) panel[k * NR + j] = TB.ToSingle(src[j * ldb + k]);
                continue;
            }
            if (nr < NR)
                for (int k = 0; k < kc; k++)
                    for (int j = nr; j < NR; j++) panel[k * NR + j] = 0;
            // A row of B's storage (a column of op(B)) at a time: contiguous reads when B is transposed.
            for (int j = 0; j < nr; j++)
            {
                TB* col = src + j * o.CsB;
                for (int k = 0; k < kc; k++) panel[k * NR + j] = TB.ToSingle(col[k * o.RsB]);
            }
        }
    }

    /// <summary>
    /// A TV.Count-square block of B's storage (row pitch ldb) written transposed into a panel (row pitch NR); bf16 rows
    /// are widened into <paramref name="square"/> first.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose<TB>(TB* src, long ldb, float* dst, float* square) where TB : unmanaged, IFloatStorage<TB>
    {
        if (typeof(TB) == typeof(F32))
        {
            TV.Transpose((float*)src, ldb, dst, NR);
            return;
        }
        int w = TV.Count;
        for (int r = 0; r < w; r++) TB.Load<TV>(src + r * ldb).Store(square + r * w);
        TV.Transpose(square, w, dst, NR);
    }

    /// <summary>The height of the tile at a block's row with <paramref name="left"/> rows to go: twelve, or four for up to eight.</summary>
    private static int TileRows(int left) => left > 8 ? MR : 4;

    /// <summary>
    /// op(A) rows [ic, ic+mc) × [pc, pc+kc) as the tiles the loop over the block's rows takes, the tile at row r from
    /// dst + r·kc, rows past the block zero. Untransposed, a tile's rows lie kc floats apart (1 KiB for a whole block
    /// of k: four L1 sets); transposed, its k lie one tile height apart, each a short contiguous copy.
    /// </summary>
    private static void PackA(in SgemmOperands o, int ic, int mc, int pc, int kc, float* dst)
    {
        for (int ir = 0; ir < mc;)
        {
            int left = mc - ir, tile = TileRows(left), mr = Math.Min(tile, left);
            float* a = o.A + (ic + ir) * o.RsA + pc * o.CsA, panel = dst + (long)ir * kc;
            if (o.CsA == 1) CopyEdgeRows(a, o.RsA, 1, mr, tile, kc, panel);
            else if (mr == MR)
                for (int k = 0; k < kc; k++)
                {
                    float* src = a + k * o.CsA, d = panel + k * MR;
                    Vector256.Store(Vector256.Load(src), d);
                    Vector128.Store(Vector128.Load(src + 8), d + 8);
                }
            else
                for (int k = 0; k < kc; k++)
                    for (int i = 0; i < tile; i++) panel[k * tile + i] = i < mr ? a[k * o.CsA + i] : 0;
            ir += mr;
        }
    }

    /// <summary>Rows [0, mr) of the block at a (pitches rs, cs) → dst [tile][kc], rows past mr zero.</summary>
    private static void CopyEdgeRows(float* a, long rs, long cs, int mr, int tile, int kc, float* dst)
    {
        for (int i = 0; i < tile; i++)
        {
            var row = new Span<float>(dst + (long)i * kc, kc);
            if (i >= mr) row.Clear();
            else if (cs == 1) new ReadOnlySpan<float>(a + i * rs, kc).CopyTo(row);
            else
                for (int k = 0; k < kc; k++) row[k] = a[i * rs + k * cs];
        }
    }

    // The bias (a pointer to the tile's columns) and the addend (its offset from C in floats; 0 for none, which C
    // itself never is) of the last block of k, as Finish adds them.
    private static void MergeEdge(float* tile, float* c, int ldc, int mr, int nr, float beta, Store store, float* bias, long addend)
    {
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
            {
                float t = tile[i * NR + j];
                ref float dst = ref c[(long)i * ldc + j];
                dst = store switch { Store.Overwrite => t, Store.Blend => t + beta * dst, _ => dst + t };
                if (bias != null) dst += bias[j];
                if (addend != 0) dst += c[(long)i * ldc + j + addend];
            }
    }

    /// <summary>
    /// A stored R×NR tile's rows plus the bias, then plus the addend (c + addend, C's layout), each a rounding of its
    /// own. Apart from the kernel, on the tile just written (in L1): a vector held for them across the kernel's k loop
    /// would push its accumulators out of the 32 registers (seen: the tile ran at a quarter of its speed).
    /// </summary>
    private static void Finish(float* c, long ldc, int rows, float* bias, long addend)
    {
        for (int i = 0; i < rows; i++, c += ldc)
            for (int j = 0; j < NR; j += TV.Count)
            {
                var x = TV.Load(c + j);
                if (bias != null) x += TV.Load(bias + j);
                if (addend != 0) x += TV.Load(c + addend + j);
                x.Store(c + j);
            }
    }

    private static void Tile(int rows, int kc, float* pa, long rs, long cs, float* pb, float* c, long ldc, float alpha, float beta, Store store)
    {
        if (rows == MR) Kernel<Rows12>(kc, pa, rs, cs, pb, c, ldc, alpha, beta, store);
        else Kernel<Rows4>(kc, pa, rs, cs, pb, c, ldc, alpha, beta, store);
    }

    private interface IRows { static abstract int Count { get; } }
    private struct Rows12 : IRows { public static int Count => 12; }
    private struct Rows4 : IRows { public static int Count => 4; }

    /// <summary>
    /// The R×NR tile (R = 12 or 4): C[i, 0..NR) from Σ_k op(A)[i, k]·panel[k, 0..NR), for i in 0..R. The JIT compiles
    /// each R apart and drops the rows past it, so both are one source and every element is the same chain in either.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel<R>(int kc, float* pa, long rs, long cs, float* pb, float* c, long ldc, float alpha, float beta, Store store)
        where R : struct, IRows
    {
        bool full = R.Count == MR;
        // The tile's rows of C are read or written only after kc steps: asking for them now hides a miss per row
        // (2048³: 360 → 390 GFLOP/s, where each of K's eight blocks passes over a C larger than L2).
        if (Sse.IsSupported)
            for (int i = 0; i < R.Count; i++)
            {
                Sse.Prefetch0(c + i * ldc);
                Sse.Prefetch0(c + i * ldc + 2 * TV.Count - 1);
            }
        // Three row pointers with offsets 0, rs, 2rs, 3rs keep the twelve broadcasts in x86 addressing modes.
        float* p0 = pa, p1 = pa + 4 * rs, p2 = pa + 8 * rs;
        long r2 = 2 * rs, r3 = 3 * rs;
        int w = TV.Count, nr = 2 * w;
        TV c00 = TV.Zero, c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00,
           c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00, c90 = c00, c91 = c00,
           ca0 = c00, ca1 = c00, cb0 = c00, cb1 = c00;
        for (int k = 0; k < kc; k++)
        {
            var b0 = TV.Load(pb);
            var b1 = TV.Load(pb + w);
            var a = TV.Create(p0[0]);
            c00 = TV.Fma(a, b0, c00); c01 = TV.Fma(a, b1, c01);
            a = TV.Create(p0[rs]);
            c10 = TV.Fma(a, b0, c10); c11 = TV.Fma(a, b1, c11);
            a = TV.Create(p0[r2]);
            c20 = TV.Fma(a, b0, c20); c21 = TV.Fma(a, b1, c21);
            a = TV.Create(p0[r3]);
            c30 = TV.Fma(a, b0, c30); c31 = TV.Fma(a, b1, c31);
            if (full)
            {
                a = TV.Create(p1[0]);
                c40 = TV.Fma(a, b0, c40); c41 = TV.Fma(a, b1, c41);
                a = TV.Create(p1[rs]);
                c50 = TV.Fma(a, b0, c50); c51 = TV.Fma(a, b1, c51);
                a = TV.Create(p1[r2]);
                c60 = TV.Fma(a, b0, c60); c61 = TV.Fma(a, b1, c61);
                a = TV.Create(p1[r3]);
                c70 = TV.Fma(a, b0, c70); c71 = TV.Fma(a, b1, c71);
                a = TV.Create(p2[0]);
                c80 = TV.Fma(a, b0, c80); c81 = TV.Fma(a, b1, c81);
                a = TV.Create(p2[rs]);
                c90 = TV.Fma(a, b0, c90); c91 = TV.Fma(a, b1, c91);
                a = TV.Create(p2[r2]);
                ca0 = TV.Fma(a, b0, ca0); ca1 = TV.Fma(a, b1, ca1);
                a = TV.Create(p2[r3]);
                cb0 = TV.Fma(a, b0, cb0); cb1 = TV.Fma(a, b1, cb1);
            }
            p0 += cs; p1 += cs; p2 += cs; pb += nr;
        }
        var va = TV.Create(alpha);
        var vb = TV.Create(beta);
        StoreRow(c, c00, c01, va, vb, store);
        StoreRow(c + ldc, c10, c11, va, vb, store);
        StoreRow(c + 2 * ldc, c20, c21, va, vb, store);
        StoreRow(c + 3 * ldc, c30, c31, va, vb, store);
        if (!full) return;
        StoreRow(c + 4 * ldc, c40, c41, va, vb, store);
        StoreRow(c + 5 * ldc, c50, c51, va, vb, store);
        StoreRow(c + 6 * ldc, c60, c61, va, vb, store);
        StoreRow(c + 7 * ldc, c70, c71, va, vb, store);
        StoreRow(c + 8 * ldc, c80, c81, va, vb, store);
        StoreRow(c + 9 * ldc, c90, c91, va, vb, store);
        StoreRow(c + 10 * ldc, ca0, ca1, va, vb, store);
        StoreRow(c + 11 * ldc, cb0, cb1, va, vb, store);
    }

    // The same operations, element by element, as MergeEdge's scalar ones (no FMA contraction), so edge tiles round alike.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* c, TV x0, TV x1, TV alpha, TV beta, Store store)
    {
        x0 *= alpha;
        x1 *= alpha;
        if (store == Store.Blend)
        {
            x0 += beta * TV.Load(c);
            x1 += beta * TV.Load(c + TV.Count);
        }
        else if (store == Store.Add)
        {
            x0 = TV.Load(c) + x0;
            x1 = TV.Load(c + TV.Count) + x1;
        }
        x0.Store(c);
        x1.Store(c + TV.Count);
    }
}
