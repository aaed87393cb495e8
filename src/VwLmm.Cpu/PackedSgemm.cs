using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace VwLmm.Cpu;

/// <summary>
/// Row-major C [M,N] = alpha·op(A) [M,K]·op(B) [K,N] + beta·C on AVX-512, for one task's block of C: the GEMM of
/// <see cref="CpuBackend"/> where Vector512 is accelerated. A 12×32 tile of C lives in 24 zmm registers; op(B) is
/// packed KC×32 at a time (one L1-sized micro-panel, zero-padded past N); op(A) is read in place, each element
/// broadcast from its row (transposed or not), so nothing of A is copied. The blocking (KC 256, MC 96 rows of A per
/// L2 pass, NC 1024 columns of packed B) follows BLIS's loop order.
/// <para>
/// Why our own: OpenBLAS 0.3.21 predates Zen 5, and where it mis-detects the core the environment pins it to its
/// Haswell (AVX2) kernels, which reach half of a full-width AVX-512 core's FMA rate (docs/BENCHMARKS.md, session 20).
/// </para>
/// <para>
/// Every element of C is the same sum in the same order wherever it falls: per KC block of k, one FMA chain from
/// zero in increasing k, scaled by alpha, then added to C (the first block applies beta). So the result depends on
/// neither the thread split, nor the tile an element lands in, nor how N is cut into calls.
/// </para>
/// </summary>
internal static unsafe class PackedSgemm
{
    public const int MR = 12, NR = 32, KC = 256, MC = 96, NC = 1024;

    /// <summary>Floats of per-thread scratch one task needs: packed B, an edge block of A rows, an edge tile of C.</summary>
    public const int ScratchFloats = KC * NC + MR * KC + MR * NR;

    public static bool IsSupported => Vector512.IsHardwareAccelerated;

    /// <summary>The operands of one GEMM: element (i, k) of op(A) is A[i·RsA + k·CsA], element (k, j) of op(B) is B[k·RsB + j·CsB].</summary>
    public readonly struct Operands(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda,
                                    float* b, int ldb, float beta, float* c, int ldc)
    {
        public readonly int M = m, N = n, K = k, Ldc = ldc;
        public readonly float Alpha = alpha, Beta = beta;
        public readonly float* A = a, B = b, C = c;
        public readonly long RsA = transA ? 1 : lda, CsA = transA ? lda : 1, RsB = transB ? 1 : ldb, CsB = transB ? ldb : 1;
    }

    // How a tile's sum reaches C: the first K block overwrites (beta = 0) or blends in beta·C; later blocks add.
    private enum Store { Overwrite, Blend, Add }

    /// <summary>Rows [m0, m1) × columns [n0, n1) of C; <paramref name="scratch"/> holds <see cref="ScratchFloats"/>.</summary>
    public static void Run(in Operands o, int m0, int m1, int n0, int n1, float* scratch)
    {
        float* packB = scratch, edgeA = scratch + KC * NC, edgeC = edgeA + MR * KC;
        for (int jc = n0; jc < n1; jc += NC)
        {
            int nc = Math.Min(NC, n1 - jc);
            for (int pc = 0; pc < o.K; pc += KC)
            {
                int kc = Math.Min(KC, o.K - pc);
                PackB(o, pc, kc, jc, nc, packB);
                var store = pc > 0 ? Store.Add : o.Beta == 0 ? Store.Overwrite : Store.Blend;
                for (int ic = m0; ic < m1; ic += MC)
                {
                    int mc = Math.Min(MC, m1 - ic);
                    for (int jr = 0; jr < nc; jr += NR)
                    {
                        int nr = Math.Min(NR, nc - jr);
                        float* pb = packB + (long)jr * kc;
                        for (int ir = 0; ir < mc; ir += MR)
                        {
                            int mr = Math.Min(MR, mc - ir), i = ic + ir;
                            float* pa = o.A + i * o.RsA + pc * o.CsA;
                            long rs = o.RsA, cs = o.CsA;
                            if (mr < MR)
                            {
                                // Rows past M would be read out of bounds: the edge rows go to a zero-padded copy.
                                if (jr == 0) CopyEdgeRows(pa, rs, cs, mr, kc, edgeA);
                                pa = edgeA;
                                rs = kc;
                                cs = 1;
                            }
                            float* c = o.C + (long)i * o.Ldc + jc + jr;
                            if (mr == MR && nr == NR)
                                Kernel(kc, pa, rs, cs, pb, c, o.Ldc, o.Alpha, o.Beta, store);
                            else
                            {
                                Kernel(kc, pa, rs, cs, pb, edgeC, NR, o.Alpha, 0, Store.Overwrite);
                                MergeEdge(edgeC, c, o.Ldc, mr, nr, o.Beta, store);
                            }
                        }
                    }
                }
            }
        }
    }

    /// <summary>op(B) [pc, pc+kc) × [jc, jc+nc) as ⌈nc/NR⌉ micro-panels [kc][NR], columns past nc zero.</summary>
    private static void PackB(in Operands o, int pc, int kc, int jc, int nc, float* dst)
    {
        for (int jr = 0; jr < nc; jr += NR)
        {
            int nr = Math.Min(NR, nc - jr);
            float* panel = dst + (long)jr * kc;
            float* src = o.B + pc * o.RsB + (jc + jr) * o.CsB;
            if (o.CsB == 1 && nr == NR)
            {
                for (int k = 0; k < kc; k++)
                {
                    float* row = src + k * o.RsB;
                    Vector512.Load(row).Store(panel + k * NR);
                    Vector512.Load(row + 16).Store(panel + k * NR + 16);
                }
                continue;
            }
            if (nr < NR)
                for (int k = 0; k < kc; k++)
                    for (int j = nr; j < NR; j++) panel[k * NR + j] = 0;
            // A row of B's storage (a column of op(B)) at a time: contiguous reads when B is transposed.
            for (int j = 0; j < nr; j++)
            {
                float* col = src + j * o.CsB;
                for (int k = 0; k < kc; k++) panel[k * NR + j] = col[k * o.RsB];
            }
        }
    }

    private static void CopyEdgeRows(float* a, long rs, long cs, int mr, int kc, float* dst)
    {
        for (int i = 0; i < MR; i++)
            for (int k = 0; k < kc; k++) dst[i * kc + k] = i < mr ? a[i * rs + k * cs] : 0;
    }

    private static void MergeEdge(float* tile, float* c, int ldc, int mr, int nr, float beta, Store store)
    {
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
            {
                float t = tile[i * NR + j];
                ref float dst = ref c[(long)i * ldc + j];
                dst = store switch { Store.Overwrite => t, Store.Blend => t + beta * dst, _ => dst + t };
            }
    }

    /// <summary>The 12×32 tile: C[i, 0..32) from Σ_k op(A)[i, k]·panel[k, 0..32), for i in 0..12.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel(int kc, float* pa, long rs, long cs, float* pb, float* c, long ldc, float alpha, float beta, Store store)
    {
        // Three row pointers with offsets 0, rs, 2rs, 3rs keep the twelve broadcasts in x86 addressing modes.
        float* p0 = pa, p1 = pa + 4 * rs, p2 = pa + 8 * rs;
        long r2 = 2 * rs, r3 = 3 * rs;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
                         c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default,
                         c60 = default, c61 = default, c70 = default, c71 = default, c80 = default, c81 = default,
                         c90 = default, c91 = default, ca0 = default, ca1 = default, cb0 = default, cb1 = default;
        for (int k = 0; k < kc; k++)
        {
            var b0 = Vector512.Load(pb);
            var b1 = Vector512.Load(pb + 16);
            var a = Vector512.Create(p0[0]);
            c00 = Vector512.FusedMultiplyAdd(a, b0, c00); c01 = Vector512.FusedMultiplyAdd(a, b1, c01);
            a = Vector512.Create(p0[rs]);
            c10 = Vector512.FusedMultiplyAdd(a, b0, c10); c11 = Vector512.FusedMultiplyAdd(a, b1, c11);
            a = Vector512.Create(p0[r2]);
            c20 = Vector512.FusedMultiplyAdd(a, b0, c20); c21 = Vector512.FusedMultiplyAdd(a, b1, c21);
            a = Vector512.Create(p0[r3]);
            c30 = Vector512.FusedMultiplyAdd(a, b0, c30); c31 = Vector512.FusedMultiplyAdd(a, b1, c31);
            a = Vector512.Create(p1[0]);
            c40 = Vector512.FusedMultiplyAdd(a, b0, c40); c41 = Vector512.FusedMultiplyAdd(a, b1, c41);
            a = Vector512.Create(p1[rs]);
            c50 = Vector512.FusedMultiplyAdd(a, b0, c50); c51 = Vector512.FusedMultiplyAdd(a, b1, c51);
            a = Vector512.Create(p1[r2]);
            c60 = Vector512.FusedMultiplyAdd(a, b0, c60); c61 = Vector512.FusedMultiplyAdd(a, b1, c61);
            a = Vector512.Create(p1[r3]);
            c70 = Vector512.FusedMultiplyAdd(a, b0, c70); c71 = Vector512.FusedMultiplyAdd(a, b1, c71);
            a = Vector512.Create(p2[0]);
            c80 = Vector512.FusedMultiplyAdd(a, b0, c80); c81 = Vector512.FusedMultiplyAdd(a, b1, c81);
            a = Vector512.Create(p2[rs]);
            c90 = Vector512.FusedMultiplyAdd(a, b0, c90); c91 = Vector512.FusedMultiplyAdd(a, b1, c91);
            a = Vector512.Create(p2[r2]);
            ca0 = Vector512.FusedMultiplyAdd(a, b0, ca0); ca1 = Vector512.FusedMultiplyAdd(a, b1, ca1);
            a = Vector512.Create(p2[r3]);
            cb0 = Vector512.FusedMultiplyAdd(a, b0, cb0); cb1 = Vector512.FusedMultiplyAdd(a, b1, cb1);
            p0 += cs; p1 += cs; p2 += cs; pb += NR;
        }
        var va = Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        StoreRow(c, c00, c01, va, vb, store);
        StoreRow(c + ldc, c10, c11, va, vb, store);
        StoreRow(c + 2 * ldc, c20, c21, va, vb, store);
        StoreRow(c + 3 * ldc, c30, c31, va, vb, store);
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
    private static void StoreRow(float* c, Vector512<float> x0, Vector512<float> x1, Vector512<float> alpha, Vector512<float> beta, Store store)
    {
        x0 *= alpha;
        x1 *= alpha;
        if (store == Store.Blend)
        {
            x0 += beta * Vector512.Load(c);
            x1 += beta * Vector512.Load(c + 16);
        }
        else if (store == Store.Add)
        {
            x0 = Vector512.Load(c) + x0;
            x1 = Vector512.Load(c + 16) + x1;
        }
        x0.Store(c);
        x1.Store(c + 16);
    }
}
