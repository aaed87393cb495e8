namespace VwLmm.Tests.Ops.Reference;

/// <summary>Row gather/splice and its scatter-add backward in double; row scatter, a copy, in float.</summary>
public static class EmbeddingReference
{
    /// <summary>y [R,C]: srcA[map[r]] (map ≥ 0), srcB[−2−map[r]] (map ≤ −2), zeros (map = −1).</summary>
    public static double[] Gather(float[] srcA, float[]? srcB, int[] map, int R, int C)
    {
        var y = new double[R * C];
        for (int r = 0; r < R; r++)
        {
            int m = map[r];
            for (int c = 0; c < C; c++)
                y[r * C + c] = m >= 0 ? srcA[m * C + c] : m <= -2 ? srcB![(-2 - m) * C + c] : 0;
        }
        return y;
    }

    /// <summary>(dA [rowsA,C], dB [rowsB,C]) = scatter-add of dy [R,C] through map.</summary>
    public static (double[] DA, double[] DB) GatherBackward(float[] dy, int[] map, int R, int C, int rowsA, int rowsB)
    {
        var da = new double[rowsA * C];
        var db = new double[rowsB * C];
        for (int r = 0; r < R; r++)
        {
            int m = map[r];
            if (m == -1) continue;
            var (dst, row) = m >= 0 ? (da, m) : (db, -2 - m);
            for (int c = 0; c < C; c++) dst[row * C + c] += dy[r * C + c];
        }
        return (da, db);
    }

    /// <summary>dst [·,C] with row rows[r] replaced by src [R,C] row r, every other row as it was.</summary>
    public static float[] Scatter(float[] dst, float[] src, int[] rows, int R, int C)
    {
        var y = (float[])dst.Clone();
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++)
                y[rows[r] * C + c] = src[r * C + c];
        return y;
    }
}
