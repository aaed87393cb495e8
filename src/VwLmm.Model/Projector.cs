using VwLmm.Core;

namespace VwLmm.Model;

/// <summary>LLaVA's mm_projector: mlp2x_gelu (Linear → exact-erf GELU → Linear, both with bias) or linear.</summary>
public sealed class Projector
{
    private readonly Parameter _w0, _b0;
    private readonly Parameter? _w2, _b2;

    public Projector(ParameterStore store, VwLmmConfig config)
    {
        int m = config.MmHiddenSize, d = config.Llm.HiddenSize;
        if (config.ProjectorType == ProjectorType.Linear)
        {
            _w0 = store.Add("model.mm_projector.weight", d, m);
            _b0 = store.Add("model.mm_projector.bias", d);
        }
        else
        {
            _w0 = store.Add("model.mm_projector.0.weight", d, m);
            _b0 = store.Add("model.mm_projector.0.bias", d);
            _w2 = store.Add("model.mm_projector.2.weight", d, d);
            _b2 = store.Add("model.mm_projector.2.bias", d);
        }
    }

    /// <summary>z [N, mm_hidden] → x [N, d].</summary>
    public Tensor Forward(Tape tape, Tensor z)
    {
        var x = Ops.Linear(tape, z, _w0.Value, _b0.Value);
        if (_w2 is null) return x;
        return Ops.Linear(tape, Ops.Activation(tape, x, Activation.Gelu), _w2.Value, _b2!.Value);
    }
}
