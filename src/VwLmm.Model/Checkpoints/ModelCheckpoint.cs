using VwLmm.Core;

namespace VwLmm.Model.Checkpoints;

/// <summary>
/// Loads and saves whole models in the HF/LLaVA layout: config.json + safetensors (single or sharded), the CLIP
/// tower either embedded under model.vision_tower.vision_tower.vision_model. or read from the local CLIP directory that
/// mm_vision_tower names. A checkpoint without vm_head (plain LLaVA) gets the VM head its config's init asks for.
/// </summary>
public static class ModelCheckpoint
{
    // A CLIP tower read to its select layer leaves the later blocks' tensors unused: the note names a few, not all.
    private const int UnusedNamesShown = 5;

    /// <summary>Reads dir/config.json and the weights; every problem is one InvalidDataException naming the file.</summary>
    /// <param name="weights">Storage of the linear layers' weights (<see cref="VwLmmModel(IBackend, VwLmmConfig, DType)"/>):
    /// BF16 tensors load as stored, others are rounded to nearest even.</param>
    public static VwLmmModel Load(IBackend backend, string dir, bool allowUnused = false, TextWriter? log = null,
                                  DType weights = DType.F32)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"model directory '{dir}' does not exist");
        var config = VwLmmConfig.Load(Path.Combine(dir, VwLmmConfig.FileName));
        using var reader = CheckpointReader.Open(dir);
        bool embedded = reader.Names.Any(n => n.StartsWith(HfNames.EmbeddedVisionPrefix, StringComparison.Ordinal));
        CheckpointReader? clip = null;
        try
        {
            if (!embedded) clip = OpenVisionTower(config, dir);
            var unused = Validate(reader, config, embedded, allowUnused);
            if (unused.Count > 0)
                log?.WriteLine($"note: skipped {CheckpointValidator.Count(unused.Count, "tensor")} the model does not use: " +
                               string.Join(", ", unused.Take(UnusedNamesShown)) + (unused.Count > UnusedNamesShown ? ", …" : ""));

            var model = new VwLmmModel(backend, config, weights);
            try
            {
                bool vmHeadMissing = false;
                foreach (var p in model.Parameters.All)
                {
                    var (src, name) = !embedded && p.Name.StartsWith(HfNames.EmbeddedVisionPrefix, StringComparison.Ordinal)
                        ? (clip!, HfNames.ClipVisionPrefix + p.Name[HfNames.EmbeddedVisionPrefix.Length..])
                        : (reader, p.Name);
                    if (p.Name == HfNames.VmHead && !src.Contains(name))
                    {
                        log?.WriteLine($"note: no vm_head in the checkpoint; initialised as '{config.VmHeadInit}'");
                        vmHeadMissing = true;
                        continue;
                    }
                    if (p.Value.DType == DType.BF16)
                    {
                        var bits = new ushort[p.Numel];
                        src.ReadBf16(name, bits);
                        backend.Upload<ushort>(p.Value, bits);
                        continue;
                    }
                    var host = new float[p.Numel];
                    src.ReadFloat(name, host);
                    backend.Upload<float>(p.Value, host);
                }
                if (vmHeadMissing) InitMissingVmHead(model);
                return model;
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        finally
        {
            clip?.Dispose();
        }
    }

    /// <summary>
    /// The CLIP directory that mm_vision_tower names, for a checkpoint in <paramref name="dir"/> without embedded tower
    /// tensors: opened and checked against the tower the config describes (the text half of a CLIPModel is ignored).
    /// </summary>
    public static CheckpointReader OpenVisionTower(VwLmmConfig config, string dir)
    {
        string clipDir = config.LocalVisionTowerDirectory(dir)
            ?? throw new InvalidDataException($"{Path.Combine(dir, VwLmmConfig.FileName)}: the checkpoint has no vision tower tensors and mm_vision_tower '{config.MmVisionTower}' is not a local directory");
        var clip = CheckpointReader.Open(clipDir);
        try
        {
            CheckLayerCount(clip, HfNames.ClipVisionPrefix + HfNames.VisionLayerInfix, config.VisionLayersUsed, "vision_config.num_hidden_layers");
            CheckpointValidator.Validate(clip, HfNames.VisionTower(config, HfNames.ClipVisionPrefix), allowUnused: true,
                                         ignore: HfNames.IsClipNonVision);
            return clip;
        }
        catch
        {
            clip.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Checks a checkpoint against its config (<see cref="CheckpointValidator"/>), with vm_head allowed to be absent: a
    /// plain LLaVA checkpoint has none and gets one on load. Returns the present tensors the model will not load.
    /// </summary>
    public static IReadOnlyList<string> Validate(CheckpointReader reader, VwLmmConfig config, bool embedded, bool allowUnused)
    {
        CheckLayerCount(reader, HfNames.DecoderLayerPrefix, config.Llm.NumHiddenLayers, "num_hidden_layers");
        if (embedded) CheckLayerCount(reader, HfNames.EmbeddedVisionPrefix + HfNames.VisionLayerInfix, config.VisionLayersUsed, "vision_config.num_hidden_layers");
        var expected = HfNames.Expected(config, embedded)
            .Select(e => e.Name == HfNames.VmHead ? e with { Required = false } : e).ToList();
        // The validator counts a present optional tensor as not loaded (tower layers past the select layer); vm_head is
        // the one optional tensor that is loaded when present.
        return CheckpointValidator.Validate(reader, expected, allowUnused).Where(n => n != HfNames.VmHead).ToList();
    }

    /// <summary>
    /// Refuses a config that asks for more layers under <paramref name="prefix"/> than the checkpoint holds, in one line
    /// naming both counts, where the validator would list every tensor of every missing layer. A checkpoint with no
    /// such layer at all is left to the validator, whose list then says what else is missing.
    /// </summary>
    private static void CheckLayerCount(CheckpointReader reader, string prefix, int needed, string key)
    {
        int held = 0;
        foreach (string name in reader.Names)
        {
            if (!name.StartsWith(prefix, StringComparison.Ordinal)) continue;
            int dot = name.IndexOf('.', prefix.Length);
            if (dot > prefix.Length && int.TryParse(name.AsSpan(prefix.Length, dot - prefix.Length), System.Globalization.NumberStyles.None,
                                                    System.Globalization.CultureInfo.InvariantCulture, out int i))
                held = Math.Max(held, i + 1);
        }
        if (held > 0 && needed > held)
            throw new InvalidDataException($"{reader.Path}: config.json's {key} needs {needed} layers, the checkpoint holds {held} ({prefix}N)");
    }

    // A plain LLaVA checkpoint has no VM head: copy a loaded head or draw N(0, 0.02) from a fixed seed.
    private static void InitMissingVmHead(VwLmmModel model)
    {
        if (model.Config.VmHeadInit != VmHeadInit.Random)
        {
            model.ApplyVmHeadInit();
            return;
        }
        var rng = new Rng(0x766D68656164UL);
        var host = new float[model.VmHead.Numel];
        for (int i = 0; i < host.Length; i++) host[i] = (float)(0.02 * rng.NextNormal());
        model.VmHead.SetValues(host);
    }

    /// <summary>Writes config.json and the weights (F32, BF16-stored weights widened exactly; sharded above maxShardBytes) into dir, each file atomically.</summary>
    public static void Save(VwLmmModel model, string dir, long maxShardBytes = long.MaxValue)
    {
        Directory.CreateDirectory(dir);
        var entries = model.Parameters.All
            .Select(p => new SafetensorsEntry(p.Name, p.Shape, p.Value.ToArray()))
            .ToList();
        SafetensorsWriter.WriteCheckpoint(dir, entries, new Dictionary<string, string> { ["format"] = "pt" }, maxShardBytes: maxShardBytes);
        model.Config.Save(Path.Combine(dir, VwLmmConfig.FileName));
    }
}
