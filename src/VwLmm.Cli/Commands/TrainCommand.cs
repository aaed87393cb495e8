using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using VwLmm.Core;
using VwLmm.Data.Conversations;
using VwLmm.Data.Text;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using VwLmm.Model.Recipes;
using VwLmm.Model.Training;

namespace VwLmm.Cli.Commands;

public sealed class TrainCommand : ICommand
{
    public string Name => "train";
    public string Summary => "run a staged training recipe from a JSON config (resumable; Ctrl-C or SIGTERM saves)";
    public string Help => """
        usage: vwlmm train --config FILE.json [--out DIR] [--seed S] [--resume | --overwrite] [--device D] [--threads N] [--quiet]
          --seed S     overrides the config's "seed" (initialisation and data order; --resume needs the checkpoint's)
          --overwrite  start over in an OUT that holds a checkpoint, replacing it (without it or --resume, that is an
                       error: a forgotten --resume would lose the run)
          Config (snake_case; unknown keys are errors):
            "model":      {"preset": "tiny|shapesgrid|bench-5m|llava-7b"} | {"config": "config.json"} | {"init": "model dir"}
                          and "init_scheme": "hf" (N(0, 0.02), default) | "torch" (PyTorch's defaults, tower at hf);
                          with preset or config, the VW-LMM switches as config.json names them: "vm_loss_weight" (λ),
                          "vm_detach_target", "vm_kl_direction": "forward|reverse", "vm_head_init":
                          "random|lm_head|embed_tokens", "use_pif"
            "shapesgrid": {"seed": 1}      the built-in world: stage data "text", "captions", "qa", "qa:colour,shape"
                          (only those question kinds; "+cells" at the end adds a colour and a shape question about
                          objects named by cell, "what shape is in row 2 column 3 ?"); tokenizer trained if absent;
                          with it, preset "shapesgrid" is the demo's model: the world's image size and patch,
                          vm_head_init "embed_tokens"
            "datasets":   {"NAME": {"json": "data.json", "images": "dir", "template": "vicuna_v1"}}   LLaVA-format data
            "tokenizer":  "tokenizer.model" (else beside model.init, or the ShapesGrid one)
            "out": "runs/x", "seed": 1, "log_every": 10, "checkpoint_every": 0,
            "max_length": positions an example may take, images spliced in (default and most: the model's context)
            "stages": [{"name", "data", "trainable": ["vision","projector","llm","vm_head"], "steps" or "epochs": passes
                        over the data, ⌈epochs × examples / (batch_size × grad_accum)⌉ steps, "lr",
                        "warmup_ratio", "min_lr_ratio", "batch_size": examples a micro-batch (default 16, at most
                        65536), "grad_accum": micro-batches a step (default 1, at most 65536), "weight_decay", "grad_clip":
                        the global gradient norm's cap (default 1, 0: none), "vm_loss_weight", "init_vm_head": re-apply
                        vm_head_init at the stage start,
                        "answer_prior": [["red","blue"],["circle","square"]]: word classes of a product-of-experts
                        question-only prior (training only), "answer_prior_samples": how many of the examples the
                        stage trains on it is counted on (default: all), "ema_decay": d in [0,1): the stage ends
                        with the moving average a ← d·a + (1 − d)·θ of its weights over its steps, started from
                        its first weights (default 0: none),
                        "dropout": p in [0,1): the decoder's attention and MLP outputs dropped at rate p before they
                        join the residual stream (default 0), "twin_weight": β ≥ 0: examples the data source has
                        a counterfactual twin for (the "qa…" sources of "shapesgrid": a shape question's
                        object in another colour, the same answer) train beside it, and β × the squared difference
                        of their answers' logits over the answer_prior words is added to the loss (default 0: none;
                        needs answer_prior), "branches": N, "branch_from": S in [0, steps): the
                        stage's steps past S run N times, each branch from the weights, moments and average of step
                        S and on its own data order past it, and the stage ends with the mean of the N branches'
                        final weights (default 1: none; each further branch costs steps − S steps)}]
          Each stage starts a fresh AdamW (zero moments). Writes OUT/checkpoint (HF layout + tokenizer + trainer state)
          and OUT/metrics.jsonl. --resume continues OUT/checkpoint (or, when a crash interrupted a save, the
          OUT/checkpoint.old-PID it left) and reproduces the uninterrupted run's losses bit for bit on the CPU.
          Ctrl-C (SIGINT) or SIGTERM saves OUT/checkpoint mid-stage and exits 130 or 143; a step that accumulates
          micro-batches stops before its next one, and the checkpoint holds the last whole step.
        example: vwlmm train --config recipes/shapesgrid.json --out runs/sg
        """;
    public IReadOnlyList<string> Flags => ["--resume", "--overwrite"];
    public IReadOnlyList<string> Valued => [.. Backends.Options, "--config", "--out", "--seed"];

    public int Run(CliArgs args, TextWriter stdout)
    {
        string configPath = args.Require("--config");
        if (args.Has("--resume") && args.Has("--overwrite")) throw new UsageException("--resume and --overwrite exclude each other");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(InputFile.Existing(configPath, "file")));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{configPath}: malformed JSON at line {e.LineNumber + 1}, position {e.BytePositionInLine + 1}");
        }
        using var _ = doc;
        var root = doc.RootElement;
        var run = TrainConfig.Parse(root, configPath);
        if (args.Has("--seed")) run = run with { Seed = (ulong)args.GetInt("--seed", 0, min: 0) };
        string? configOut = Str(root, "out", configPath);
        string outSource = args.Has("--out") ? "--out" : $"{configPath}: 'out'";
        string outDir = CliArgs.NotAFile(outSource, args.Get("--out") ?? configOut ?? "runs/train");
        string baseDir = Path.GetDirectoryName(Path.GetFullPath(configPath))!;
        // What can be checked without the run folder is checked before the lock creates OUT (and the ShapesGrid
        // tokenizer is trained into it): a usage error, a bad dataset or a --resume with nothing to resume leaves nothing behind.
        using var backend = Backends.Create(args, Console.Error);
        var llava = LlavaDatasets(root, configPath, baseDir);
        if (args.Has("--resume")) ResumeCheckpoint(outDir, TextWriter.Null);
        using var runLock = RunDirectoryLock.Acquire(outSource, outDir);

        ShapesGridRecipe? world = root.TryGetProperty("shapesgrid", out var sg) ? new ShapesGridRecipe((ulong)Int(sg, "seed", configPath + ": shapesgrid", ["seed"], 1)) : null;
        string? tokenizerPath = ResolveTokenizer(root, configPath, baseDir, world, outDir);

        string? resumeFrom = null;
        if (!args.Has("--resume") && !args.Has("--overwrite") && Trainer.ResumableCheckpoint(outDir, TextWriter.Null) is { } existing)
            throw new CliException($"{existing} holds a run: --resume continues it, --overwrite starts over and replaces it");
        if (args.Has("--resume"))
        {
            // Again now that the lock keeps other runs from moving it.
            resumeFrom = ResumeCheckpoint(outDir, Console.Error);
            tokenizerPath ??= Path.Combine(resumeFrom, "tokenizer.model");
        }
        tokenizerPath ??= InitTokenizer(root, configPath, baseDir);
        if (tokenizerPath is null) throw new CliException($"{configPath}: no tokenizer: set \"tokenizer\", or use model.init with a tokenizer.model beside the weights");
        var tok = SentencePieceTokenizer.Load(tokenizerPath);
        using var model = resumeFrom is not null
            ? ModelCheckpoint.Load(backend, resumeFrom, log: Console.Error)
            : CreateModel(backend, root, configPath, baseDir, run.Seed, world, tok);
        if (tok.VocabSize != model.Config.Llm.VocabSize)
            throw new CliException($"{configPath}: tokenizer has {tok.VocabSize} pieces, the model's vocab_size is {model.Config.Llm.VocabSize}");
        if (resumeFrom is not null) CheckResumedModel(ModelConfigOf(root, configPath, baseDir, world, tok), model.Config, configPath, resumeFrom);
        var datasets = llava.ToDictionary(d => d.Key, ITrainingSource (d) => new LlavaSource(d.Value.Data, d.Value.Template, tok, Shared.Preprocessor(model.Config)));
        ITrainingSource Source(string name)
        {
            if (datasets.TryGetValue(name, out var d)) return d;
            if (world is null || !ShapesGridRecipe.IsSourceName(name))
                throw new CliException($"{configPath}: stage data '{name}' names no dataset (define it under \"datasets\"{(world is null ? "" : " or use text/captions/qa/qa:KIND,…")})");
            try
            {
                return world.Source(name, tok);
            }
            catch (ArgumentException e)
            {
                throw new CliException($"{configPath}: {e.Message}");
            }
        }
        using var trainer = NewTrainer(model, run, Source, tok, configPath);
        var tokBytes = File.ReadAllBytes(tokenizerPath);
        trainer.OnCheckpoint = dir => AtomicFile.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), tokBytes);
        if (resumeFrom is not null) trainer.Resume(resumeFrom);
        return RunTrainer(trainer, outDir, args.Has("--quiet"), stdout, append: args.Has("--resume"), continueWith: "continue with --resume");
    }

    /// <summary>The trainer, whose checks of the config against the model and tokenizer name the config file.</summary>
    private static Trainer NewTrainer(VwLmmModel model, TrainConfig run, Func<string, ITrainingSource> sources, ITokenizer tok, string configPath)
    {
        try
        {
            return new Trainer(model, run, sources, tokenizer: tok);
        }
        catch (InvalidDataException e)
        {
            throw new CliException($"{configPath}: {e.Message}");
        }
    }

    /// <summary>
    /// Runs to the end or to Ctrl-C (SIGINT) or SIGTERM, which save a resumable checkpoint and exit with 128 + the
    /// signal's number (130, 143), with progress and JSONL metrics. SIGTERM is what job schedulers and container
    /// runtimes send before they kill a process; a process started in the background by a shell ignores SIGINT.
    /// </summary>
    internal static int RunTrainer(Trainer trainer, string outDir, bool quiet, TextWriter stdout, bool append, string continueWith)
    {
        using var cts = new CancellationTokenSource();
        PosixSignal? received = null;
        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            received ??= context.Signal;
            cts.Cancel();
        }
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var terminate = Register(PosixSignal.SIGTERM, OnSignal);
        using var metrics = new StreamWriter(Path.Combine(outDir, "metrics.jsonl"), append) { AutoFlush = true };
        using (var progress = new TrainingProgress(stdout, quiet))
        {
            // LLaVA cuts long examples silently; a cut that drops an answer trains nothing on it, so say so once a stage.
            string? warned = null;
            trainer.OnStep = m =>
            {
                if (m.TruncatedExamples > 0 && m.Stage != warned)
                {
                    warned = m.Stage;
                    Console.Error.WriteLine($"warning: stage '{m.Stage}', step {m.StageStep}: {m.TruncatedExamples} examples are longer than max_length with their images spliced in, and were cut (metrics.jsonl counts them as truncated_examples)");
                }
                progress.Report(m);
            };
            trainer.Run(outDir, cts.Token, metrics);
        }
        if (received is { } sig)
        {
            bool term = sig == PosixSignal.SIGTERM;
            stdout.WriteLine($"interrupted at step {trainer.State.GlobalStep} ({(term ? "SIGTERM" : "Ctrl-C")}): saved {Path.Combine(outDir, Trainer.CheckpointDirName)} ({continueWith})");
            return term ? 143 : 130;
        }
        if (!quiet) stdout.WriteLine($"done: {trainer.State.GlobalStep} steps, model in {Path.Combine(outDir, Trainer.CheckpointDirName)}");
        return 0;
    }

    /// <summary>A signal handler, or null where the platform has no such signal (PosixSignalRegistration throws).</summary>
    private static PosixSignalRegistration? Register(PosixSignal signal, Action<PosixSignalContext> handler)
    {
        try
        {
            return PosixSignalRegistration.Create(signal, handler);
        }
        catch (PlatformNotSupportedException)
        {
            return null;
        }
    }

    private static VwLmmModel CreateModel(IBackend backend, JsonElement root, string path, string baseDir, ulong seed,
                                          ShapesGridRecipe? world, SentencePieceTokenizer tok)
    {
        var config = ModelConfigOf(root, path, baseDir, world, tok);
        var m = ModelBlock(root, path);
        string at = path + ": model";
        if (Str(m, "init", at) is { } init) return ModelCheckpoint.Load(backend, Rooted(baseDir, init), log: Console.Error);
        var scheme = Str(m, "init_scheme", at) switch
        {
            null or "hf" => InitScheme.Hf,
            "torch" => InitScheme.Torch,
            var other => throw new InvalidDataException($"{path}: model.init_scheme must be \"hf\" or \"torch\", not \"{other}\""),
        };
        var model = new VwLmmModel(backend, config);
        model.InitializeRandom(seed, scheme);
        return model;
    }

    /// <summary>The config of the model the "model" block describes (for model.init, that directory's config.json).</summary>
    private static VwLmmConfig ModelConfigOf(JsonElement root, string path, string baseDir, ShapesGridRecipe? world, SentencePieceTokenizer tok)
    {
        var m = ModelBlock(root, path);
        string at = path + ": model";
        var switches = m.EnumerateObject().Where(p => VmSwitches.Contains(p.Name)).ToList();
        if (Str(m, "init", at) is { } init)
        {
            if (switches.Count > 0)
                throw new InvalidDataException($"{at}: '{switches[0].Name}' applies to a preset or config model; for model.init set it in {Path.Combine(Rooted(baseDir, init), VwLmmConfig.FileName)}");
            return VwLmmConfig.Load(Rooted(baseDir, init));
        }
        VwLmmConfig config;
        if (Str(m, "preset", at) is { } preset)
        {
            // The ShapesGrid preset follows the world's image options and tokenizer.
            config = world is not null && preset == "shapesgrid" ? world.ModelConfig(tok) : Preset(preset, at);
            config = config with { Llm = config.Llm with { VocabSize = tok.VocabSize } };
        }
        else if (Str(m, "config", at) is { } file)
            config = VwLmmConfig.Load(Rooted(baseDir, file));
        else
            throw new InvalidDataException($"{path}: 'model' needs one of preset, config, init");
        return WithSwitches(config, switches, at);
    }

    /// <summary>
    /// A resumed run continues the checkpoint's model, so the config's model block must describe that model (the
    /// conversation template aside, which training records): otherwise the run would silently train another one.
    /// </summary>
    private static void CheckResumedModel(VwLmmConfig described, VwLmmConfig resumed, string configPath, string checkpoint)
    {
        using var want = JsonDocument.Parse((described with { ConversationTemplate = null }).ToJson());
        using var have = JsonDocument.Parse((resumed with { ConversationTemplate = null }).ToJson());
        if (JsonDifference.First(want.RootElement, have.RootElement) is { } d)
            throw new CliException($"--resume: {checkpoint}'s model has {d.Key} {d.Now}, the model block of {configPath} gives {d.Was}");
    }

    private static VwLmmConfig Preset(string name, string at)
    {
        try
        {
            return VwLmmConfig.Presets.Get(name);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{at}: 'preset': {e.Message}");
        }
    }

    private static JsonElement ModelBlock(JsonElement root, string path)
    {
        if (!root.TryGetProperty("model", out var m) || m.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{path}: 'model' must be an object with one of preset, config, init");
        TrainConfig.RejectUnknown(m, ["preset", "config", "init", "init_scheme", .. VmSwitches], path + ": model");
        string[] sources = [.. new[] { "preset", "config", "init" }.Where(k => m.TryGetProperty(k, out _))];
        if (sources.Length > 1)
            throw new InvalidDataException($"{path}: model: '{sources[0]}' and '{sources[1]}' exclude each other; give one of preset, config, init");
        return m;
    }

    /// <summary>The VW-LMM ablation switches a train config may set on its model, with config.json's names.</summary>
    private static readonly string[] VmSwitches = ["vm_loss_weight", "vm_detach_target", "vm_kl_direction", "vm_head_init", "use_pif"];

    /// <summary>config with the switches set, read by config.json's own parser so that names, values and checks agree.</summary>
    private static VwLmmConfig WithSwitches(VwLmmConfig config, IReadOnlyList<JsonProperty> switches, string at)
    {
        if (switches.Count == 0) return config;
        var json = JsonNode.Parse(config.ToJson())!.AsObject();
        foreach (var p in switches) json[p.Name] = JsonNode.Parse(p.Value.GetRawText());
        return VwLmmConfig.FromJson(json.ToJsonString(), at, baseDirectory: "");
    }

    /// <summary>The tokenizer.model beside model.init's weights, if there is one.</summary>
    private static string? InitTokenizer(JsonElement root, string path, string baseDir)
    {
        if (Str(ModelBlock(root, path), "init", path + ": model") is not { } init) return null;
        string file = Path.Combine(Rooted(baseDir, init), "tokenizer.model");
        return File.Exists(file) ? file : null;
    }

    private static string? ResolveTokenizer(JsonElement root, string path, string baseDir, ShapesGridRecipe? world, string outDir)
    {
        if (Str(root, "tokenizer", path) is { } t) return Rooted(baseDir, t);
        if (world is null) return null;
        world.LoadOrTrainTokenizer(outDir);
        return Path.Combine(outDir, ShapesGridRecipe.TokenizerFile);
    }

    /// <summary>The checkpoint --resume continues, or a one-line error when OUT has none.</summary>
    private static string ResumeCheckpoint(string outDir, TextWriter log) =>
        Trainer.ResumableCheckpoint(outDir, log) ?? throw new CliException($"--resume: no checkpoint at {Path.Combine(outDir, Trainer.CheckpointDirName)}");

    /// <summary>The "datasets" block: each LLaVA dataset, read and checked, with its conversation template.</summary>
    private static Dictionary<string, (LlavaDataset Data, ConversationTemplate Template)> LlavaDatasets(JsonElement root, string path, string baseDir)
    {
        var result = new Dictionary<string, (LlavaDataset, ConversationTemplate)>(StringComparer.Ordinal);
        if (!root.TryGetProperty("datasets", out var ds)) return result;
        if (ds.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: 'datasets' must be an object");
        if (JsonKeys.FirstRepeated(ds) is { } repeated) throw new InvalidDataException($"{path}: datasets: key '{repeated}' is given twice");
        foreach (var d in ds.EnumerateObject())
        {
            string at = $"{path}: datasets.{d.Name}";
            if (d.Value.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{at}: expected an object");
            TrainConfig.RejectUnknown(d.Value, ["json", "images", "template"], at);
            string json = Rooted(baseDir, Str(d.Value, "json", at) ?? throw new InvalidDataException($"{at}: 'json' is missing"));
            string images = Rooted(baseDir, Str(d.Value, "images", at) ?? Path.GetDirectoryName(json)!);
            var template = Template(Str(d.Value, "template", at) ?? "vicuna_v1", at);
            result[d.Name] = (LlavaDataset.Load(json, images), template);
        }
        return result;
    }

    private static ConversationTemplate Template(string name, string at)
    {
        try
        {
            return ConversationTemplate.Get(name);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{at}: 'template': {Program.OneLine(e)}");
        }
    }

    private static string Rooted(string baseDir, string p) => Path.IsPathRooted(p) ? p : Path.Combine(baseDir, p);

    private static string? Str(JsonElement o, string key, string at) =>
        !o.TryGetProperty(key, out var v) ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString() : throw new InvalidDataException($"{at}: '{key}' must be a string");

    private static int Int(JsonElement o, string key, string at, string[] known, int fallback)
    {
        if (o.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{at}: expected an object");
        TrainConfig.RejectUnknown(o, known, at);
        return TrainConfig.NonNegative(o, key, at) ?? fallback;
    }
}
