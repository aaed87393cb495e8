using VwLmm.Core;

namespace VwLmm.Model;

/// <summary>Trainable groups of a VW-LMM model, as stages of the recipe name them.</summary>
public enum ParameterGroup { Vision, Projector, Llm, VmHead }

/// <summary>
/// Every parameter of a model by its HF/LLaVA checkpoint name, in creation order (the order optimisers, norms and
/// checkpoints use, so it is part of determinism). Owns the parameters' device memory.
/// </summary>
public sealed class ParameterStore : IDisposable
{
    private readonly IBackend _backend;
    private readonly Dictionary<string, Parameter> _byName = new(StringComparer.Ordinal);
    private readonly List<Parameter> _all = new();
    private readonly List<ParameterStack> _stacks = new();

    private readonly IReadOnlySet<string> _linear;

    /// <param name="weights">Storage of linear-layer weights: F32, or BF16 for inference only.</param>
    /// <param name="linearWeights">The names of the linear-layer weights (the checkpoint layout's
    /// <see cref="Checkpoints.ExpectedTensor.Linear"/>); every other parameter is F32.</param>
    public ParameterStore(IBackend backend, DType weights = DType.F32, IReadOnlySet<string>? linearWeights = null)
    {
        if (weights != DType.F32 && linearWeights is null)
            throw new ArgumentException($"{weights} weights need the names of the linear-layer weights", nameof(linearWeights));
        _backend = backend;
        Weights = weights;
        _linear = linearWeights ?? new HashSet<string>();
    }

    public IReadOnlyList<Parameter> All => _all;

    /// <summary>How linear-layer weights are stored; every other parameter (embeddings, norms, biases, convolution) is F32.</summary>
    public DType Weights { get; }

    /// <summary>A parameter stored as <see cref="Weights"/> if it is a linear layer's weight, else F32.</summary>
    public Parameter Add(string name, params int[] dims)
    {
        var p = new Parameter(_backend, name, new Shape(dims), StorageOf(name));
        Register(p);
        return p;
    }

    /// <summary>Parameters of one shape, in one <see cref="ParameterStack"/>; each is also registered by its own name.</summary>
    public ParameterStack AddStack(IReadOnlyList<string> names, params int[] dims)
    {
        var stack = NewStack(names, dims);
        foreach (var p in stack.Members) Register(p);
        return stack;
    }

    /// <summary>
    /// G linear layers with biases, [N,K] weights and [N] biases, as two stacks; registered as the layers' modules
    /// list them (weight 0, bias 0, weight 1, …), the order they had as separate parameters.
    /// </summary>
    public (ParameterStack Weights, ParameterStack Biases) AddLinearStack(IReadOnlyList<string> weights, IReadOnlyList<string> biases, int n, int k)
    {
        if (weights.Count != biases.Count) throw new ArgumentException($"{weights.Count} weights and {biases.Count} biases");
        var (w, b) = (NewStack(weights, n, k), NewStack(biases, n));
        for (int i = 0; i < weights.Count; i++)
        {
            Register(w.Members[i]);
            Register(b.Members[i]);
        }
        return (w, b);
    }

    private ParameterStack NewStack(IReadOnlyList<string> names, params int[] dims)
    {
        var dtype = StorageOf(names[0]);
        if (names.Any(n => StorageOf(n) != dtype))
            throw new ArgumentException($"parameters {string.Join(", ", names)} share a stack but not a storage type");
        var stack = new ParameterStack(_backend, names, new Shape(dims), dtype);
        _stacks.Add(stack);
        return stack;
    }

    private DType StorageOf(string name) => _linear.Contains(name) ? Weights : DType.F32;

    private void Register(Parameter p)
    {
        if (!_byName.TryAdd(p.Name, p)) throw new ArgumentException($"parameter '{p.Name}' defined twice");
        _all.Add(p);
    }

    public Parameter this[string name] =>
        _byName.TryGetValue(name, out var p) ? p : throw new KeyNotFoundException($"no parameter named '{name}'");

    public bool TryGet(string name, out Parameter p) => _byName.TryGetValue(name, out p!);

    public static ParameterGroup GroupOf(string name) =>
        name.StartsWith("model.vision_tower.", StringComparison.Ordinal) ? ParameterGroup.Vision
        : name.StartsWith("model.mm_projector", StringComparison.Ordinal) ? ParameterGroup.Projector
        : name == "vm_head.weight" ? ParameterGroup.VmHead
        : ParameterGroup.Llm;

    public IEnumerable<Parameter> InGroup(ParameterGroup g) => _all.Where(p => GroupOf(p.Name) == g);

    /// <summary>Makes exactly the parameters of the given groups trainable.</summary>
    public void SetTrainable(IReadOnlyCollection<ParameterGroup> groups)
    {
        foreach (var p in _all) p.Trainable = groups.Contains(GroupOf(p.Name));
    }

    public long Count(ParameterGroup g) => InGroup(g).Sum(p => p.Numel);

    public void Dispose()
    {
        // A stack disposes its members.
        foreach (var p in _all) if (p.Stack is null) p.Dispose();
        foreach (var s in _stacks) s.Dispose();
        _all.Clear();
        _stacks.Clear();
        _byName.Clear();
    }
}
