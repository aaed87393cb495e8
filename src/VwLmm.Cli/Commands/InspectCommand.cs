using System.Globalization;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;

namespace VwLmm.Cli.Commands;

public sealed class InspectCommand : ICommand
{
    public string Name => "inspect";
    public string Summary => "summarise a model directory: config, parameters per module, dtypes";
    public string Help => $$"""
        usage: vwlmm inspect DIR | --model DIR [--allow-unused]
          Reads config.json and the safetensors headers (no weights are loaded) and checks them against each other;
          says how much memory the weights take when loaded, as f32 and with --weights bf16.
          {{Shared.AllowUnusedHelp}}
        example: vwlmm inspect runs/demo/model
        """;
    public IReadOnlyList<string> Flags => ["--allow-unused"];
    public IReadOnlyList<string> Valued => ["--model"];
    public int MaxPositionals => 1;

    public int Run(CliArgs args, TextWriter stdout)
    {
        string dir = (args.Get("--model"), args.Positionals.Count) switch
        {
            (null, 1) => args.Positionals[0],
            ({ } model, 0) => model,
            (null, _) => throw new UsageException("give the model directory (DIR or --model DIR)"),
            _ => throw new UsageException($"give the model directory once, as DIR or --model DIR, not both ('{args.Positionals[0]}')"),
        };
        Shared.ModelDirectory(dir);
        var config = VwLmmConfig.Load(Path.Combine(dir, VwLmmConfig.FileName));
        using var reader = CheckpointReader.Open(dir);
        bool embedded = reader.Names.Any(n => n.StartsWith(HfNames.EmbeddedVisionPrefix, StringComparison.Ordinal));
        var unused = ModelCheckpoint.Validate(reader, config, embedded, args.Has("--allow-unused"));
        // A tower read from the CLIP directory mm_vision_tower names is checked and counted with the rest.
        using var clip = embedded ? null : ModelCheckpoint.OpenVisionTower(config, dir);
        var v = config.Vision;
        var l = config.Llm;
        var ci = CultureInfo.InvariantCulture;
        stdout.WriteLine($"model       {Path.GetFullPath(dir)}");
        stdout.WriteLine($"vision      CLIP {v.ImageSize}px patch {v.PatchSize}, width {v.HiddenSize}, {v.NumHiddenLayers} layers ({config.VisionLayersUsed} used, select layer {config.MmVisionSelectLayer}), {v.NumAttentionHeads} heads, {v.HiddenAct}{(embedded ? "" : $", from {config.MmVisionTower}")}");
        stdout.WriteLine($"projector   {config.ProjectorType} {config.MmHiddenSize} → {l.HiddenSize}");
        stdout.WriteLine($"llm         d={l.HiddenSize}, {l.NumHiddenLayers} layers, {l.NumAttentionHeads} heads / {l.NumKeyValueHeads} kv, ffn {l.IntermediateSize}, vocab {l.VocabSize}, rope θ {l.RopeTheta.ToString(ci)}, context {l.MaxPositionEmbeddings}");
        stdout.WriteLine($"vw-lmm      λ {config.VmLossWeight.ToString(ci)}, KL {config.VmKlDirection}, detach {config.VmDetachTarget}, vm_head init {config.VmHeadInit}, pif {config.UsePif}, image tokens {config.ImageTokens}");
        stdout.WriteLine($"vm_head     {(reader.Contains(HfNames.VmHead) ? "present" : "absent (initialised on load)")}");
        stdout.WriteLine($"template    {config.ConversationTemplate ?? "not recorded (chat, eval and forward default to vicuna_v1)"}");
        // What loading allocates for the weights: the tensors the model runs (not the tower layers past the select layer).
        var loaded = HfNames.Expected(config).Where(t => t.Required).ToList();
        long f32 = loaded.Sum(t => 4 * t.Shape.Numel), bf16 = loaded.Sum(t => (t.Linear ? 2 : 4) * t.Shape.Numel);
        stdout.WriteLine($"memory      weights {Size(f32)} as f32, {Size(bf16)} with --weights bf16 (the KV cache and activations come on top)");
        stdout.WriteLine();
        stdout.WriteLine("parameters by module:");
        long total = 0;
        var modules = Merge(reader.ParameterCountsByModule(), clip?.ParameterCountsByModule(HfNames.IsClipNonVision));
        foreach (var (module, count) in modules.OrderByDescending(kv => kv.Value))
        {
            stdout.WriteLine($"  {module,-14} {count,15:N0}");
            total += count;
        }
        stdout.WriteLine($"  {"total",-14} {total,15:N0}");
        var dtypes = Merge(reader.ParameterCountsByDType(), clip?.ParameterCountsByDType(HfNames.IsClipNonVision));
        stdout.WriteLine("dtypes: " + string.Join(", ", dtypes.Select(kv => $"{kv.Key} {kv.Value:N0}")));
        if (unused.Count > 0) stdout.WriteLine($"{unused.Count} tensors present but not used by the model");
        return 0;
    }

    private static string Size(long bytes) => bytes >= 1L << 30
        ? (bytes / (double)(1L << 30)).ToString("0.00 GiB", CultureInfo.InvariantCulture)
        : (bytes / (double)(1L << 20)).ToString("0.0 MiB", CultureInfo.InvariantCulture);

    private static Dictionary<TKey, long> Merge<TKey>(IReadOnlyDictionary<TKey, long> a, IReadOnlyDictionary<TKey, long>? b) where TKey : notnull
    {
        var sum = new Dictionary<TKey, long>(a);
        foreach (var (key, count) in b ?? new Dictionary<TKey, long>()) sum[key] = sum.GetValueOrDefault(key) + count;
        return sum;
    }
}
