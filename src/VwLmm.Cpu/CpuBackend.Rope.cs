using VwLmm.Core;

namespace VwLmm.Cpu;

/// <summary>
/// Rotate-half RoPE (HF LLaMA). Angles follow HF's float32 arithmetic step by step: exponent (float)2i/(float)D,
/// theta^exponent rounded to float, its float reciprocal, the float product pos·inv_freq, and cos/sin of that float
/// angle, so large positions round the way PyTorch does. cos/sin of a position are computed a vector of angles at a
/// time and kept in a table for the next call: a forward pass rotates q and k of every layer at the same positions,
/// and the angles cost more than the rotations (bench-5m: 8 calls a pass). Positions past the table's limit are
/// computed per call, by the same code, so a row's bits do not depend on where its angles came from.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    /// <summary>Floats the cos/sin table holds at most (4 MiB): D floats a position.</summary>
    private const int RopeTableFloats = 1 << 20;

    // The inverse frequencies of (_ropeD, _ropeTheta), and the table: row p is cos (D/2 floats) then sin (D/2) of
    // position p's angles, for p < _ropeCount.
    private float[]? _ropeFrequencies, _ropeTable;
    private int _ropeCount, _ropeD;
    private float _ropeTheta;

    /// <summary>Positions the table may cover; tests lower it to 0 to compare the table with the per-call angles.</summary>
    internal int RopeTableLimit { get; set; } = int.MaxValue;

    public void RopeForward(Tensor y, Tensor x, Tensor positions, int B, int T, int H, int D, float theta) =>
        Rope(F(y), F(x), I(positions), B * T, H, D, theta, backward: false, accumulate: false);

    public void RopeBackward(Tensor dx, Tensor dy, Tensor positions, int B, int T, int H, int D, float theta, bool accumulate) =>
        Rope(F(dx), F(dy), I(positions), B * T, H, D, theta, backward: true, accumulate);

    private void Rope(float* output, float* input, int* positions, int rows, int H, int D, float theta, bool backward, bool accumulate)
    {
        if (_ropeD != D || _ropeTheta != theta)
        {
            // inv_freq[i] = 1/theta^(2i/D), rounded as HF's float32 1.0 / (theta ** (arange(0, D, 2).float() / D)).
            float* f = Grow(ref _ropeFrequencies, D / 2);
            for (int i = 0; i < D / 2; i++) f[i] = 1f / (float)Math.Pow(theta, (float)(2 * i) / D);
            (_ropeCount, _ropeD, _ropeTheta) = (0, D, theta);
        }
        int most = 0;
        for (int r = 0; r < rows; r++) most = Math.Max(most, positions[r]);
        var job = new RopeJob
        {
            Out = output, In = input, Positions = positions, H = H, D = D, Backward = backward, Accumulate = accumulate,
            Frequencies = Grow(ref _ropeFrequencies, D / 2), Table = RopeTable(most, D),
        };
        job.TableCount = job.Table == null ? 0 : _ropeCount;
        ParallelFor(rows, job, MinTasksPerChunk((long)H * D));
    }

    /// <summary>
    /// The table for the current (D, theta), grown to cover position <paramref name="most"/> where the limit allows (a
    /// power of two of positions, at least 256); null when it holds no position.
    /// </summary>
    private float* RopeTable(int most, int D)
    {
        int limit = Math.Min(RopeTableLimit, RopeTableFloats / D);
        if (most >= _ropeCount && _ropeCount < limit)
        {
            int count = (int)Math.Min(limit, Math.Max(256, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)most + 1)));
            // Every row is written anew: after a change of (D, theta) the old buffer serves if it is large enough.
            var job = new RopeAnglesJob { Table = Grow(ref _ropeTable, (long)count * D), Frequencies = Grow(ref _ropeFrequencies, D / 2), D = D };
            ParallelFor(count, job, MinTasksPerChunk(D));
            _ropeCount = count;
        }
        return _ropeCount == 0 ? null : Grow(ref _ropeTable, (long)_ropeCount * D);
    }

    /// <summary>cos and sin of position pos's angles pos·invFreq[i], i &lt; half, both float32 steps as HF's.</summary>
    private static void RopeAngles<TV>(float pos, float* invFreq, float* cos, float* sin, int half) where TV : unmanaged, IVec<TV>
    {
        int i = 0;
        for (; i <= half - TV.Count; i += TV.Count)
        {
            var (s, c) = TV.SinCos(TV.Create(pos) * TV.Load(invFreq + i));
            c.Store(cos + i);
            s.Store(sin + i);
        }
        for (; i < half; i++)
        {
            float angle = pos * invFreq[i];
            cos[i] = MathF.Cos(angle);
            sin[i] = MathF.Sin(angle);
        }
    }

    /// <summary>Table rows [start, end): the angles of positions start … end − 1.</summary>
    private struct RopeAnglesJob : ISimdJob
    {
        public float* Table, Frequencies;
        public int D;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            int half = D / 2;
            for (int p = start; p < end; p++) RopeAngles<TV>(p, Frequencies, Table + (long)p * D, Table + (long)p * D + half, half);
        }
    }

    /// <summary>Forward: out = R·in. Backward: out += Rᵀ·in (the rotation by −angle), or out = Rᵀ·in without Accumulate.</summary>
    private struct RopeJob : ISimdJob
    {
        public float* Out, In, Table, Frequencies;
        public int* Positions;
        public int H, D, TableCount;
        public bool Backward, Accumulate;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            int half = D / 2;
            float* angles = stackalloc float[D];
            for (int row = start; row < end; row++)
            {
                int pos = Positions[row];
                float* cos = angles;
                if (pos < TableCount) cos = Table + (long)pos * D;
                else RopeAngles<TV>(pos, Frequencies, angles, angles + half, half);
                for (int h = 0; h < H; h++)
                {
                    long offset = ((long)row * H + h) * D;
                    Rotate<TV>(Out + offset, In + offset, cos, cos + half, half, Backward, Accumulate);
                }
            }
        }

        /// <summary>
        /// Forward, (o1, o2) = (x1·c − x2·s, x2·c + x1·s) over the two halves; backward, the same with −s, added to
        /// (o1, o2) when accumulating. Reads both halves before writing, so out may alias x.
        /// </summary>
        private static void Rotate<TV>(float* o, float* x, float* cos, float* sin, int half, bool backward, bool accumulate) where TV : unmanaged, IVec<TV>
        {
            var sign = TV.Create(backward ? -1f : 1f);
            int i = 0;
            for (; i <= half - TV.Count; i += TV.Count)
            {
                TV x1 = TV.Load(x + i), x2 = TV.Load(x + half + i), c = TV.Load(cos + i), s = TV.Load(sin + i) * sign;
                TV r1 = x1 * c - x2 * s, r2 = x2 * c + x1 * s;
                if (accumulate)
                {
                    r1 += TV.Load(o + i);
                    r2 += TV.Load(o + half + i);
                }
                r1.Store(o + i);
                r2.Store(o + half + i);
            }
            for (; i < half; i++)
            {
                float x1 = x[i], x2 = x[half + i], c = cos[i], s = backward ? -sin[i] : sin[i];
                float r1 = x1 * c - x2 * s, r2 = x2 * c + x1 * s;
                o[i] = accumulate ? o[i] + r1 : r1;
                o[half + i] = accumulate ? o[half + i] + r2 : r2;
            }
        }
    }
}
