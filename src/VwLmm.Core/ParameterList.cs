namespace VwLmm.Core;

/// <summary>
/// A fixed list of parameters with their gradients and AdamW moments (entry i: value, grad, m, v, all [nᵢ] F32, and its
/// weight decay), for the ops that visit every entry in one pass: zeroing the gradients, their per-entry sums of squares
/// and the AdamW update. A backend may keep a prepared form of the list in <see cref="BackendState"/> (the CUDA
/// backend: a device table of pointers and chunk offsets, so that each such op is one or two launches, not one per
/// parameter). Each entry gets exactly the arithmetic of the per-tensor op, so results are bit-identical to it.
/// The list owns its backend state, not the tensors.
/// </summary>
public sealed class ParameterList : IDisposable
{
    public ParameterList(Tensor[] values, Tensor[] grads, Tensor[] m, Tensor[] v, float[] weightDecay)
    {
        int n = values.Length;
        if (grads.Length != n || m.Length != n || v.Length != n || weightDecay.Length != n)
            throw new ArgumentException("ParameterList: values, grads, moments and weight decays must have one entry each");
        for (int i = 0; i < n; i++)
        {
            long numel = values[i].Numel;
            if (grads[i].Numel != numel || m[i].Numel != numel || v[i].Numel != numel)
                throw new ArgumentException($"ParameterList entry {i}: value, grad and moments differ in size");
        }
        Values = values;
        Grads = grads;
        M = m;
        V = v;
        WeightDecay = weightDecay;
    }

    public Tensor[] Values { get; }
    public Tensor[] Grads { get; }
    public Tensor[] M { get; }
    public Tensor[] V { get; }
    public float[] WeightDecay { get; }
    public int Count => Values.Length;

    /// <summary>What the backend prepared for this list on first use (disposed with the list when disposable).</summary>
    public object? BackendState { get; set; }

    public void Dispose()
    {
        (BackendState as IDisposable)?.Dispose();
        BackendState = null;
    }
}
