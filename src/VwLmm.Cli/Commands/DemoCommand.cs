using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using VwLmm.Cli.Reports;
using VwLmm.Core;
using VwLmm.Data.Images;
using VwLmm.Data.ShapesGrid;
using VwLmm.Data.Text;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using VwLmm.Model.Recipes;
using VwLmm.Model.Training;

namespace VwLmm.Cli.Commands;

public sealed class DemoCommand : ICommand
{
    public string Name => "demo";
    public string Summary => "the main job: train VW-LMM on the built-in ShapesGrid world, evaluate, write a report";
    public string Help => """
        usage: vwlmm demo [--quick] [--variant V] [--stages S] [--answer-prior on|off] [--out DIR] [--cache DIR] [--seed S] [--device D] [--threads N] [--retrain] [--ablations FILE] [--quiet]
          OUT defaults to runs/demo, or runs/demo[-quick][-VARIANT][-noprior][-llava][-seedS] for other settings; the checkpoint
          (with trainer state) stays in the cache, .cache by default.
          Generates the ShapesGrid world, trains its tokenizer, runs the staged recipe (vision pretraining, then instruction
          tuning with the visual-word loss), evaluates on held-out colour×shape combinations,
          writes OUT/report.html (loss curves, accuracy, visual-word maps), OUT/results.json, OUT/predictions.jsonl,
          OUT/metrics.jsonl (the training log) and OUT/model (what chat, eval and visualize load), and answers up to two questions
          about a held-out image, saved as OUT/test-N.png. A trained model is cached and reused (--retrain ignores it);
          a training that Ctrl-C or SIGTERM stopped continues from its checkpoint when the same command runs again.
          --quick     the small budget CI uses (a couple of minutes)
          --variant   vwlmm (default: forward KL, target not detached, λ 1), baseline (λ 0: LLaVA), detach, pif,
              reverse (reverse KL), lmhead (VM head initialised from lm_head instead of embed_tokens),
              pif-frozen (pif with the VM head frozen at its random initialisation, λ 0.1), twins (each shape question
              trained beside its counterfactual twin: the asked object in another colour, the same answer, and a
              loss on the difference of the two answers' logits; needs the answer prior)
          --stages    lookup (default: instruction tuning of the LLM and VM head on colour and shape questions, each
                      image's followed by a colour and a shape question that name their objects by cell; the projector
                      stays at its random initialisation), llava (LM pretraining, caption alignment, captions,
                      instruction tuning on every question kind: the session 2–6 recipe)
          --answer-prior  on (default): instruction tuning against a question-only answer prior (a product of experts,
                      training only, docs/RESULTS.md); off: plain cross-entropy (with --stages llava: the session 2–6 recipe)
          --ablations the ablations.json scripts/ablations.py writes: the report gains its variant × metric table
        example: vwlmm demo --out runs/demo
        """;
    public IReadOnlyList<string> Flags => ["--quick", "--retrain"];
    public IReadOnlyList<string> Valued => [.. Backends.Options, "--out", "--cache", "--seed", "--variant", "--stages", "--answer-prior", "--ablations"];

    /// <summary>The vision pretraining's held-out probe accuracy, kept beside the cached checkpoint for the report.</summary>
    private const string VisionProbeFile = "vision_probe.json";

    private const string MetricsFile = "metrics.jsonl";

    /// <summary>Enough for any ShapesGrid answer.</summary>
    private const int AnswerTokens = 8;

    /// <summary>--variant's names: also the variant's part of the run's cache and output folder names.</summary>
    private static readonly (string Name, ShapesGridVariant Variant)[] Variants =
    [
        ("vwlmm", ShapesGridVariant.VwLmm), ("baseline", ShapesGridVariant.Baseline), ("detach", ShapesGridVariant.Detach),
        ("pif", ShapesGridVariant.Pif), ("reverse", ShapesGridVariant.Reverse), ("lmhead", ShapesGridVariant.LmHead),
        ("pif-frozen", ShapesGridVariant.PifFrozenHead), ("twins", ShapesGridVariant.Twins),
    ];

    public int Run(CliArgs args, TextWriter stdout)
    {
        var sw = Stopwatch.StartNew();
        bool quick = args.Has("--quick"), quiet = args.Has("--quiet");
        ulong seed = (ulong)args.GetInt("--seed", 1, 0);
        var budget = quick ? ShapesGridBudget.Quick : ShapesGridBudget.Default;
        string variantName = args.Get("--variant") ?? "vwlmm";
        int known = Array.FindIndex(Variants, v => v.Name == variantName);
        if (known < 0)
            throw new UsageException($"--variant must be {string.Join(", ", Variants[..^1].Select(v => v.Name))} or {Variants[^1].Name}, not '{variantName}'");
        var variant = Variants[known].Variant;
        var stages = args.Get("--stages") switch
        {
            null or "lookup" => ShapesGridStages.Lookup,
            "llava" => ShapesGridStages.Llava,
            var v => throw new UsageException($"--stages must be lookup or llava, not '{v}'"),
        };
        bool answerPrior = args.Get("--answer-prior") switch
        {
            null or "on" => true,
            "off" => false,
            var v => throw new UsageException($"--answer-prior must be on or off, not '{v}'"),
        };
        if (variant == ShapesGridVariant.Twins && !answerPrior)
            throw new UsageException("--variant twins needs --answer-prior on: the twins compare the logits of its words");
        string name = variantName + (answerPrior ? "" : "-noprior") + (stages == ShapesGridStages.Llava ? "-llava" : "");
        // Another seed's run gets its own folder, as it gets its own cache: it would otherwise replace seed 1's report.
        string defaultOut = (quick ? "demo-quick" : "demo") + (name == "vwlmm" ? "" : "-" + name) + (seed == 1 ? "" : $"-seed{seed}");
        string outDir = CliArgs.NotAFile("--out", args.Get("--out") ?? Path.Combine("runs", defaultOut));
        string cache = ShapesGridRecipe.CacheDir(CliArgs.NotAFile("--cache", args.Get("--cache") ?? ".cache"), seed);
        string runDir = Path.Combine(cache, (quick ? "quick-" : "default-") + name);
        var ablations = args.Get("--ablations") is { } ablationsFile ? AblationTable.Load(ablationsFile) : null;
        // Created before anything is written: it is what checks --device and --threads, and a usage error must leave no trace.
        using var backend = Backends.Create(args, Console.Error);
        CliArgs.CreateDirectory("--out", outDir);
        using var runLock = RunDirectoryLock.Acquire("--cache", runDir);
        void Say(string s)
        {
            if (!quiet) stdout.WriteLine(s);
        }

        var recipe = new ShapesGridRecipe(seed);
        Say($"ShapesGrid world (seed {seed}): {recipe.World.Options.ImageSize}px images, {recipe.World.Options.Grid}×{recipe.World.Options.Grid} patches; held-out combos: {string.Join(", ", recipe.World.HeldOut)}");
        var tok = recipe.LoadOrTrainTokenizer(cache);
        string tokenizerFile = Path.Combine(cache, ShapesGridRecipe.TokenizerFile);
        Say($"tokenizer: {tok.VocabSize} BPE pieces ({tokenizerFile})");

        string ckpt = Path.Combine(runDir, Trainer.CheckpointDirName);
        var train = recipe.TrainConfig(budget, seed, answerPrior, stages, variant);
        VwLmmModel model;
        bool retrain = args.Has("--retrain"), trained = !retrain && IsFinished(ckpt, train);
        // The cache is named by the recipe's version; the stages the checkpoint recorded catch a recipe that changed
        // without a new version.
        if (trained && Trainer.DifferenceFrom(ckpt, train) is { } changed)
        {
            Say($"not reusing {ckpt}: {changed}; training again");
            trained = false;
            retrain = true;
        }
        if (trained)
        {
            Say($"reusing the trained model in {ckpt} (--retrain to train again)");
            model = ModelCheckpoint.Load(backend, ckpt);
        }
        else
        {
            ITrainingSource Source(string name) => recipe.Source(name, tok);
            var (trainee, trainer) = retrain ? (null, null) : ResumeInterrupted(backend, runDir, train, Source, tok, Say);
            if (trainee is null)
            {
                trainee = new VwLmmModel(backend, recipe.ModelConfig(tok, variant));
                trainee.InitializeRandom(seed, ShapesGridRecipe.Init(stages));
                Say($"model: {trainee.Parameters.All.Sum(p => p.Numel):N0} parameters on {backend.Name}; {budget.VisionSteps} vision pretraining steps, then {train.TotalSteps} steps in {train.Stages.Count} stages");
                VisionProbeAccuracy probe;
                using (var progress = new TrainingProgress(stdout, quiet))
                {
                    var start = Stopwatch.StartNew();
                    probe = recipe.PretrainVision(trainee, budget, seed, (step, loss) => progress.Report("vision", step, budget.VisionSteps, step, budget.VisionSteps,
                        string.Create(CultureInfo.InvariantCulture, $"probe loss {loss:0.0000}  {step * ShapesGridBudget.VisionBatchSize / start.Elapsed.TotalSeconds:0} img/s")));
                }
                AtomicFile.WriteAllText(Path.Combine(runDir, VisionProbeFile), JsonSerializer.Serialize(probe));
                Say(string.Create(CultureInfo.InvariantCulture, $"vision tower: held-out patches read as colour {probe.Colour:P1}, shape {probe.Shape:P1}, background {probe.Background:P1}; objects in held-out combinations colour {probe.HeldOutColour:P1}, shape {probe.HeldOutShape:P1}"));
                trainer = new Trainer(trainee, train, Source, tokenizer: tok);
            }
            model = trainee;
            using (trainer)
            {
                var tokBytes = File.ReadAllBytes(tokenizerFile);
                trainer!.OnCheckpoint = dir => AtomicFile.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), tokBytes);
                int rc = TrainCommand.RunTrainer(trainer, runDir, quiet, stdout, append: trainer.State.GlobalStep > 0,
                                                 continueWith: "the same vwlmm demo command continues from there");
                if (rc != 0)
                {
                    model.Dispose();
                    return rc;
                }
            }
        }
        using (model)
        {
            double trainSeconds = sw.Elapsed.TotalSeconds;
            Say("evaluating on the held-out split and on unseen training-distribution images…");
            var eval = new ShapesGridEvaluator(model, tok, recipe);
            var results = eval.Evaluate(budget.EvalImages);
            var ci = CultureInfo.InvariantCulture;
            Say(string.Create(ci, $"QA exact match {results.QaAccuracy:P1} over {results.Questions} questions ({string.Join(", ", results.QaAccuracyByKind.Select(kv => $"{kv.Key} {kv.Value:P0}"))}); held-out combos {results.QaAccuracyHeldOutCombos:P1}"));
            Say($"colour / shape questions about held-out pairs {PairCounts(results, heldOut: true)}; about training pairs in the same images {PairCounts(results, heldOut: false)}");
            Say(string.Create(ci, $"unseen training-distribution images: QA exact match {results.TrainDistributionAccuracy["overall"]:P1} over {results.TrainDistribution.Count} questions"));
            Say(string.Create(ci, $"visual-word accuracy {results.VisualWordAccuracy:P1} on {results.ObjectPatches} object patches (chance {results.VisualWordChance:P1}; logit lens E·x {results.LogitLensAccuracy:P1}; LM head before the patch {results.NextPatchAccuracy:P1})"));

            // A held-out image past the evaluated ones, with colour and shape questions first: they are what the
            // default recipe trains.
            static bool Lookup(QaPair q) => q.Kind is QuestionKind.Colour or QuestionKind.Shape;
            var sample = Enumerable.Range(budget.EvalImages + 7, 50).Select(i => recipe.World.Sample(Split.Test, i)).FirstOrDefault(s => s.Questions.Any(Lookup))
                         ?? recipe.World.Sample(Split.Test, budget.EvalImages + 7);
            var asked = sample.Questions.OrderBy(q => Lookup(q) ? 0 : 1).Take(2).ToList();
            foreach (var qa in asked)
            {
                var answer = AnswerOne(model, tok, recipe, eval, sample, qa.Question);
                Say($"  Q ({sample.Id}): {qa.Question}  →  {answer}   (truth: {qa.Answer})");
            }

            WriteOutputs(outDir, runDir, name, recipe, eval, results, train, budget, model, tok.VocabSize, sw.Elapsed.TotalSeconds, trainSeconds, trained, ablations);
            string image = Path.Combine(outDir, sample.Id + ".png");
            AtomicFile.WriteAllBytes(image, ImageCodec.EncodePng(sample.Image));
            model.RecordConversationTemplate(ShapesGridRecipe.Template); // a cached model may predate the record
            string published = PublishModel(model, tokenizerFile, outDir);
            Say($"report: {Path.GetFullPath(Path.Combine(outDir, "report.html"))}");
            Say($"model: {Path.GetFullPath(published)}; ask it about the held-out image above:");
            Say($"  ./vwlmm chat --model {ShellWord(published)} --image {ShellWord(image)} {ShellWord(asked[0].Question)}");
            return 0;
        }
    }

    /// <summary>
    /// Publishes the model as a directory chat, eval and visualize load (config.json, weights, tokenizer.model; no
    /// optimizer state), built beside OUT/model and renamed over it, so an older model stays whole until the new one is.
    /// </summary>
    private static string PublishModel(VwLmmModel model, string tokenizerFile, string outDir)
    {
        string final = Path.Combine(outDir, "model");
        AtomicFile.ReplaceDirectory(final, temp =>
        {
            ModelCheckpoint.Save(model, temp);
            File.Copy(tokenizerFile, Path.Combine(temp, "tokenizer.model"));
        });
        return final;
    }

    /// <summary>Quotes <paramref name="s"/> for a POSIX shell unless it is plainly one word.</summary>
    private static string ShellWord(string s) =>
        s.Length > 0 && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '/' or '.' or '_' or '-' or '+' or ',' or ':' or '=')
            ? s : "'" + s.Replace("'", "'\\''") + "'";

    /// <summary>
    /// The model and trainer of a run that Ctrl-C or SIGTERM interrupted, restored from its checkpoint so that it ends
    /// as the uninterrupted run would have; (null, null) when there is none, or when it cannot be resumed (a checkpoint
    /// of other stages, or a damaged one: said, and the demo trains again).
    /// </summary>
    private static (VwLmmModel?, Trainer?) ResumeInterrupted(IBackend backend, string runDir, TrainConfig train,
                                                             Func<string, ITrainingSource> sources, ITokenizer tok, Action<string> say)
    {
        if (Trainer.ResumableCheckpoint(runDir, TextWriter.Null) is not { } partial || !File.Exists(Path.Combine(runDir, VisionProbeFile)))
            return (null, null);
        VwLmmModel? model = null;
        Trainer? trainer = null;
        try
        {
            model = ModelCheckpoint.Load(backend, partial);
            trainer = new Trainer(model, train, sources, tokenizer: tok);
            trainer.Resume(partial);
            say($"resuming the interrupted training at step {trainer.State.GlobalStep} of {train.TotalSteps} from {partial} (--retrain to start over)");
            return (model, trainer);
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            say($"not resuming {partial}: {e.Message}; training again");
            trainer?.Dispose();
            model?.Dispose();
            return (null, null);
        }
    }

    private static bool IsFinished(string ckpt, TrainConfig train)
    {
        string state = Path.Combine(ckpt, "trainer_state.json");
        if (!File.Exists(state)) return false;
        using var doc = JsonDocument.Parse(File.ReadAllText(state));
        return doc.RootElement.TryGetProperty("stage", out var s) && s.GetInt32() >= train.Stages.Count;
    }

    private static string AnswerOne(VwLmmModel model, VwLmm.Data.Text.ITokenizer tok, ShapesGridRecipe recipe, ShapesGridEvaluator eval,
                                    ShapesGridSample sample, string question)
    {
        using var gen = new Generator(model);
        var ids = gen.Generate([eval.Prompt(question)], recipe.Pixels(sample.Image),
                               new SamplingOptions { MaxNewTokens = AnswerTokens, StopIds = [tok.EosId] })[0];
        return tok.Decode(ids.Where(i => i != tok.EosId).ToArray()).Trim();
    }

    // The question kinds whose answers depend on the asked-about object's colour×shape pair, in printed order.
    private static readonly QuestionKind[] PairKinds = [QuestionKind.Colour, QuestionKind.Shape];

    // "33/40 (82.5%) / 16/51 (31.4%)": colour, then shape.
    private static string PairCounts(ShapesGridResults r, bool heldOut) => string.Join(" / ", PairKinds.Select(k =>
    {
        var (right, asked) = r.AboutPairs(k, heldOut);
        return asked == 0 ? "0/0" : string.Create(CultureInfo.InvariantCulture, $"{right}/{asked} ({(double)right / asked:P1})");
    }));

    private static void WriteOutputs(string outDir, string runDir, string name, ShapesGridRecipe recipe, ShapesGridEvaluator eval, ShapesGridResults r,
                                     TrainConfig train, ShapesGridBudget budget, VwLmmModel model, int vocab, double seconds, double trainSeconds,
                                     bool reused, AblationTable? ablations)
    {
        var ci = CultureInfo.InvariantCulture;
        string probeFile = Path.Combine(runDir, VisionProbeFile);
        var probe = File.Exists(probeFile) ? JsonSerializer.Deserialize<VisionProbeAccuracy>(File.ReadAllText(probeFile)) : null;
        var results = new Dictionary<string, object?>
        {
            ["qa_accuracy"] = r.QaAccuracyWithOverall,
            ["qa_accuracy_held_out_combos"] = r.QaAccuracyHeldOutCombos,
            ["qa_accuracy_train_distribution"] = r.TrainDistributionAccuracy,
            ["colour_shape_questions_by_pair"] = PairKinds.ToDictionary(
                k => k.ToString().ToLowerInvariant(),
                k => new[] { true, false }.ToDictionary(h => h ? "held_out" : "training", h =>
                {
                    var (right, asked) = r.AboutPairs(k, h);
                    return new Dictionary<string, int> { ["right"] = right, ["asked"] = asked };
                })),
            ["wrong_answers_naming_another_object"] = r.WrongAnswersNamingAnotherObject,
            ["visual_word_accuracy"] = r.VisualWordAccuracy,
            ["visual_word_chance"] = r.VisualWordChance,
            ["background_word_accuracy"] = r.BackgroundWordAccuracy,
            ["logit_lens_accuracy"] = r.LogitLensAccuracy,
            ["next_patch_accuracy"] = r.NextPatchAccuracy,
            ["next_patch_agreement"] = r.NextPatchAgreement,
            ["questions"] = r.Questions,
            ["object_patches"] = r.ObjectPatches,
            ["variant"] = name,
            ["answer_prior"] = train.Stages.Any(s => s.AnswerPrior is not null),
            ["steps"] = train.TotalSteps,
            ["vision_steps"] = budget.VisionSteps,
            ["seconds"] = Math.Round(seconds, 1),
            ["training_reused_from_cache"] = reused,
        };
        if (probe is not null)
        {
            var accuracy = new Dictionary<string, double> { ["colour"] = probe.Colour, ["shape"] = probe.Shape, ["background"] = probe.Background };
            // A vision_probe.json cached before the held-out breakdown existed has no such patches.
            if (probe.HeldOutObjectPatches > 0)
                (accuracy["held_out_combo_colour"], accuracy["held_out_combo_shape"]) = (probe.HeldOutColour, probe.HeldOutShape);
            results["vision_probe_accuracy"] = accuracy;
        }
        AtomicFile.WriteAllText(Path.Combine(outDir, "results.json"), Shared.Json(results));
        AtomicFile.WriteAllText(Path.Combine(outDir, "predictions.jsonl"),
            string.Join("\n", r.Predictions.Select(p => JsonSerializer.Serialize(p))) + "\n");

        string metricsFile = Path.Combine(runDir, MetricsFile);
        var metrics = ReadMetrics(metricsFile);
        if (File.Exists(metricsFile))
            AtomicFile.Write(Path.Combine(outDir, MetricsFile), s =>
            {
                using var log = File.OpenRead(metricsFile);
                log.CopyTo(s);
            });
        var stages = new List<(int, string)>();
        int at = 0;
        foreach (var s in train.Stages)
        {
            stages.Add((at, s.Name));
            at += s.Steps;
        }
        var report = new HtmlReport("VW-LMM on ShapesGrid")
            .Paragraph(string.Create(ci, $"{model.Parameters.All.Sum(p => p.Numel):N0} parameters, vocabulary {vocab}, {budget.VisionSteps} vision pretraining steps, then {train.TotalSteps} steps in {train.Stages.Count} stages, {seconds:0} s in all (training {(reused ? "reused from the cache" : $"{trainSeconds:0} s")}). Held-out colour×shape combinations: {string.Join(", ", recipe.World.HeldOut)}."))
            .Heading("Question answering (exact match)")
            .Table([
                ["questions", "held-out split", "unseen images of the training distribution"],
                // Rows by kind, the training distribution beside: what the model has not learned, apart from what does not carry over.
                .. r.QaAccuracyWithOverall.OrderBy(kv => kv.Key == "overall" ? "" : kv.Key).Select(kv => (IReadOnlyList<string>)[
                    kv.Key, kv.Value.ToString("P1", ci),
                    r.TrainDistributionAccuracy.TryGetValue(kv.Key, out double t) ? t.ToString("P1", ci) : "–"]),
                ["about held-out colour×shape combinations", r.QaAccuracyHeldOutCombos.ToString("P1", ci), "–"],
                ["colour / shape questions about held-out pairs", PairCounts(r, heldOut: true), "–"],
                ["colour / shape questions about training pairs", PairCounts(r, heldOut: false), "–"],
            ])
            .Heading("Losses")
            .LossChart([
                new Series("L_text", "#2166ac", metrics.Select(m => (m.GlobalStep, m.LossText)).ToList()),
                new Series("L_vm", "#d73027", metrics.Where(m => m.LossVm > 0).Select(m => (m.GlobalStep, m.LossVm)).ToList()),
                .. metrics.Any(m => m.LossTwin is not null)
                    ? [new Series("L_twin", "#1a9850", metrics.Where(m => m.LossTwin is not null).Select(m => (m.GlobalStep, m.LossTwin!.Value)).ToList())]
                    : Array.Empty<Series>(),
            ], stages);
        if (ablations is not null)
        {
            report.Heading("Ablations: mean ± std over seeds (%)");
            if (ablations.Description is not null) report.Paragraph(ablations.Description);
            report.Table(ablations.Rows(), wide: true);
        }
        report.Heading("Visual words of held-out images")
            .Paragraph("Each cell is one ViT patch labelled with its visual word argmax softmax(W_vm·x) over the whole vocabulary, as in the VW-LMM paper's visualisation; the verdict uses the argmax over content words (colours, shapes, backgrounds). Hover a cell for its top words.")
            .Maps(Enumerable.Range(0, 6).Select(i => Map(recipe, eval, recipe.World.Sample(Split.Test, i))).ToList())
            .Heading("Answers, visual words and the vision tower (held-out split)")
            .Table([
                ["measure", "value"],
                ["wrong colour and shape answers that name another object in the image (it read the wrong object)", r.WrongAnswersNamingAnotherObject?.ToString("P1", ci) ?? "none wrong"],
                ["visual-word accuracy (object patches)", r.VisualWordAccuracy.ToString("P1", ci)],
                ["chance (2 / content words)", r.VisualWordChance.ToString("P1", ci)],
                ["background patches named by their background word", r.BackgroundWordAccuracy.ToString("P1", ci)],
                ["logit lens: object patches whose content-word argmax of E·x (input embeddings, not the VM head) names them", r.LogitLensAccuracy.ToString("P1", ci)],
                ["next patch: object patches whose content-word argmax of the LM head at the position before names them (what the decoder knows of a patch before it)", r.NextPatchAccuracy.ToString("P1", ci)],
                ["next patch: patches whose visual word is the LM head's argmax at the position before (what the visual-word loss trains for)", r.NextPatchAgreement.ToString("P1", ci)],
                .. (probe is null ? [] : (IReadOnlyList<string>[])[
                    ["vision tower after pretraining: linear probe, colour / shape / background",
                     $"{probe.Colour.ToString("P1", ci)} / {probe.Shape.ToString("P1", ci)} / {probe.Background.ToString("P1", ci)}"]]),
                .. (probe is not { HeldOutObjectPatches: > 0 } ? [] : (IReadOnlyList<string>[])[
                    ["the same probes on objects in held-out combinations, colour / shape",
                     $"{probe.HeldOutColour.ToString("P1", ci)} / {probe.HeldOutShape.ToString("P1", ci)} ({probe.HeldOutObjectPatches} patches)"]]),
            ]);
        report.Save(Path.Combine(outDir, "report.html"));
    }

    private static VisualWordMap Map(ShapesGridRecipe recipe, ShapesGridEvaluator eval, ShapesGridSample s)
    {
        var cells = eval.VisualWords(s, topK: 5).Select(p => new MapCell(
            p.Word, p.Top,
            p.IsObject ? (p.Correct ? CellVerdict.Correct : CellVerdict.Wrong) : CellVerdict.Background,
            $"{p.Truth} (content argmax: {p.ContentWord})")).ToList();
        return new VisualWordMap($"{s.Id}: {s.Caption}", s.Image, recipe.World.Options.Grid, cells);
    }

    private static List<StepMetrics> ReadMetrics(string path)
    {
        if (!File.Exists(path)) return [];
        var opts = new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
        var metrics = new List<StepMetrics>();
        int line = 0;
        foreach (var l in File.ReadLines(path))
        {
            line++;
            if (l.Length == 0) continue;
            try
            {
                metrics.Add(JsonSerializer.Deserialize<StepMetrics>(l, opts) ?? throw new JsonException("null"));
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}: line {line} is not a metrics record ({e.Message.Split('.')[0]}); delete the run folder or use --retrain");
            }
        }
        return metrics;
    }
}
