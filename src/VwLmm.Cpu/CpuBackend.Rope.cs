using VwLmm.Core;

namespace VwLmm.Cpu;

/// <summary>
/// Rotate-half RoPE (HF LLaMA). Angles follow HF's float32 arithmetic step by step: exponent (float)2i/(float)D,
/// theta^exponent rounded to float, its float reciprocal, the float product pos·inv_freq, and cos/sin of that float
/// angle, so large positions round the way PyTorch does. cos/sin are computed once per (b, t) row, a vector of angles
/// at a time, and shared by its H heads.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    public void RopeForward(Tensor y, Tensor x, Tensor positions, int B, int T, int H, int D, float theta) =>
        ParallelFor(B * T, new RopeJob { Out = F(y), In = F(x), Positions = I(positions), H = H, D = D, Theta = theta, Backward = false }, MinTasksPerChunk((long)H * D));

    public void RopeBackward(Tensor dx, Tensor dy, Tensor positions, int B, int T, int H, int D, float theta) =>
        ParallelFor(B * T, new RopeJob { Out = F(dx), In = F(dy), Positions = I(positions), H = H, D = D, Theta = theta, Backward = true }, MinTasksPerChunk((long)H * D));

    /// <summary>inv_freq[i] = 1/theta^(2i/D) for i &lt; D/2, rounded like HF's float32 expression 1.0 / (theta ** (arange(0, D, 2).float() / D)).</summary>
    private static void RopeInverseFrequencies(Span<float> invFreq, int D, float theta)
    {
        for (int i = 0; i < invFreq.Length; i++) invFreq[i] = 1f / (float)Math.Pow(theta, (float)(2 * i) / D);
    }

    /// <summary>Forward: out = R·in. Backward: out += Rᵀ·in (the rotation by −angle).</summary>
    private struct RopeJob : ISimdJob
    {
        public float* Out, In;
        public int* Positions;
        public int H, D;
        public float Theta;
        public bool Backward;

        public readonly void Execute<TV>(int start, int end) where TV : unmanaged, IVec<TV>
        {
            int half = D / 2;
            float* invFreq = stackalloc float[half];
            RopeInverseFrequencies(new Span<float>(invFreq, half), D, Theta);
            float* cos = stackalloc float[half];
            float* sin = stackalloc float[half];
            float sign = Backward ? -1f : 1f;
            for (int row = start; row < end; row++)
            {
                float pos = Positions[row];
                int i = 0;
                for (; i <= half - TV.Count; i += TV.Count)
                {
                    var (s, c) = TV.SinCos(TV.Create(pos) * TV.Load(invFreq + i));
                    c.Store(cos + i);
                    (s * TV.Create(sign)).Store(sin + i);
                }
                for (; i < half; i++)
                {
                    float angle = pos * invFreq[i];
                    cos[i] = MathF.Cos(angle);
                    sin[i] = sign * MathF.Sin(angle);
                }
                for (int h = 0; h < H; h++)
                {
                    long offset = ((long)row * H + h) * D;
                    Rotate<TV>(Out + offset, In + offset, cos, sin, half, Backward);
                }
            }
        }

        /// <summary>(o1, o2) (+)= (x1·c − x2·s, x2·c + x1·s) over the two halves; reads both halves before writing, so out may alias x.</summary>
        private static void Rotate<TV>(float* o, float* x, float* cos, float* sin, int half, bool accumulate) where TV : unmanaged, IVec<TV>
        {
            int i = 0;
            for (; i <= half - TV.Count; i += TV.Count)
            {
                TV x1 = TV.Load(x + i), x2 = TV.Load(x + half + i), c = TV.Load(cos + i), s = TV.Load(sin + i);
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
                float x1 = x[i], x2 = x[half + i];
                float r1 = x1 * cos[i] - x2 * sin[i], r2 = x2 * cos[i] + x1 * sin[i];
                o[i] = accumulate ? o[i] + r1 : r1;
                o[half + i] = accumulate ? o[half + i] + r2 : r2;
            }
        }
    }
}
