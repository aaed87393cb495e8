using System.Globalization;
using System.Text.Json;
using VwLmm.Core;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Data.Images;
using VwLmm.Model;

namespace VwLmm.Cli.Commands;

public sealed class EvalCommand : ICommand
{
    public string Name => "eval";
    public string Summary => "exact-match accuracy of a model on LLaVA-format QA (overall and per question type)";
    public string Help => $$"""
        usage: vwlmm eval --model DIR --data FILE.json [--images DIR] [--template NAME] [--out PREDICTIONS.jsonl]
                          [--max-new-tokens N] [--batch N] [--weights bf16] [--device D] [--threads N]
          Every human turn is a question and the gpt turn after it the reference answer; earlier turns are given as in
          the data (teacher forcing). A prediction is correct when it equals the reference after trimming and
          lower-casing. The question type is the question's first two words (VQA's convention). Prints one JSON object:
          {"overall", "by_type": {…}, "questions"}.
          {{Shared.TemplateHelp}}
          --out FILE   one JSON line per question (id, type, question, reference, prediction, correct);
                       default runs/eval/predictions.jsonl
          --batch N    questions generated together (default 8); with 1, a sample's later questions keep the KV-cache
                       rows of its image and earlier turns instead of prefilling them again
          {{Shared.WeightsHelp}}
          {{Shared.AllowUnusedHelp}}
        example: vwlmm eval --model runs/demo/model --data world-test/data.json
        """;
    public IReadOnlyList<string> Flags => ["--allow-unused"];
    public IReadOnlyList<string> Valued => [.. Backends.Options, .. Shared.InferenceOptions, "--model", "--data", "--images", "--template", "--out", "--max-new-tokens", "--batch"];

    /// <summary>Beside demo's runs/demo, so a bare eval leaves its predictions where the other verbs' outputs go.</summary>
    private const string DefaultOut = "runs/eval/predictions.jsonl";

    private sealed record Item(ConversationSample Sample, int Turn, string Type, string Question, string Reference, TokenizedConversation Prompt);

    public int Run(CliArgs args, TextWriter stdout)
    {
        string modelDir = args.Require("--model");
        string data = args.Require("--data");
        string outPath = CliArgs.NotADirectory("--out", args.Get("--out") ?? DefaultOut);
        var templateOption = Shared.TemplateOption(args);
        int maxNew = args.GetInt("--max-new-tokens", 32, 1, 4096), batch = args.GetInt("--batch", 8, 1, 1024);
        var dataset = LlavaDataset.Load(data, args.Get("--images") ?? Path.GetDirectoryName(Path.GetFullPath(data))!);
        // An accuracy over no questions is no number at all: said before a large model spends minutes loading.
        if (dataset.Samples.Count == 0) throw new CliException($"{data}: no samples, so no questions to evaluate");
        var weights = Shared.Weights(args);
        using var backend = Backends.Create(args, Console.Error);
        var (model, tok) = Shared.LoadModel(backend, modelDir, args.Has("--allow-unused"), Console.Error, weights);
        using (model)
        {
            var pre = Shared.Preprocessor(model.Config);
            var template = Shared.Template(templateOption, model.Config);
            var splice = new BatchBuilder(model.Vision.TokensPerImage, int.MaxValue, model.Config.Llm.VocabSize);
            var items = new List<Item>();
            foreach (var (s, entry) in dataset.Samples.Select((s, i) => (s, i)))
            {
                if (template.Problem(s.Turns, s.HasImage, endsWithAnswer: true) is { } problem)
                    throw new CliException($"{data}: entry {entry} (id {s.Id}): {problem} (see --template)");
                for (int t = 0; t + 1 < s.Turns.Count; t += 2)
                {
                    string q = s.Turns[t].Value.Replace(Llava.ImagePlaceholder, "").Trim();
                    var prompt = template.EncodePrompt(s.Turns.Take(t + 1).ToList(), s.HasImage, tok);
                    // Said before any answer is generated: a long sample late in the data would otherwise end a long
                    // run with nothing written.
                    if (splice.SplicedLength(prompt) is var length && length + maxNew > model.Config.Llm.MaxPositionEmbeddings)
                        throw new CliException($"{data}: sample {s.Id}, question {t / 2 + 1}: {length} positions in template {template.Name} + {maxNew} new tokens exceed the model's context of {model.Config.Llm.MaxPositionEmbeddings} (see --template, --max-new-tokens)");
                    items.Add(new Item(s, t, TypeOf(q), q, s.Turns[t + 1].Value, prompt));
                }
            }
            var stops = template.StopIds(tok);
            var options = new SamplingOptions { MaxNewTokens = maxNew, StopIds = stops };
            using var gen = new Generator(model);
            var predictions = new List<(Item Item, string Predicted, bool Correct)>();
            // Text-only and image samples cannot share a batch's pixel list shape, so batch them separately.
            foreach (var group in items.GroupBy(i => i.Sample.HasImage))
                foreach (var chunk in group.Chunk(batch))
                {
                    var prompts = chunk.Select(i => i.Prompt).ToList();
                    float[] pixels = group.Key ? chunk.SelectMany(i => pre.Process(ImageCodec.Decode(dataset.ImagePath(i.Sample)))).ToArray() : [];
                    // One at a time, a sample's later questions repeat its earlier turns: Continue keeps their cache rows.
                    var outs = chunk.Length == 1 ? [gen.Continue(prompts[0], pixels, options)] : gen.Generate(prompts, pixels, options);
                    for (int j = 0; j < chunk.Length; j++)
                    {
                        string p = tok.Decode(outs[j].Where(id => !stops.Contains(id)).ToArray()).Trim();
                        predictions.Add((chunk[j], p, Normal(p) == Normal(chunk[j].Reference)));
                    }
                }
            AtomicFile.WriteAllText(outPath, string.Concat(predictions.Select(p => JsonSerializer.Serialize(new
            {
                id = p.Item.Sample.Id, type = p.Item.Type, question = p.Item.Question, reference = p.Item.Reference,
                prediction = p.Predicted, correct = p.Correct,
            }) + "\n")));
            var summary = new
            {
                overall = predictions.Average(p => p.Correct ? 1.0 : 0.0),
                by_type = predictions.GroupBy(p => p.Item.Type).OrderBy(g => g.Key, StringComparer.Ordinal)
                    .ToDictionary(g => g.Key, g => g.Average(p => p.Correct ? 1.0 : 0.0)),
                questions = predictions.Count,
            };
            stdout.WriteLine(JsonSerializer.Serialize(summary, new JsonSerializerOptions { WriteIndented = true }));
            // stdout is the summary alone (scripts parse it), so where the predictions went is said on stderr.
            if (!args.Has("--quiet")) Console.Error.WriteLine($"wrote {outPath}");
            return 0;
        }
    }

    private static string Normal(string s) => s.Trim().ToLower(CultureInfo.InvariantCulture);

    private static string TypeOf(string question) =>
        string.Join(" ", question.ToLower(CultureInfo.InvariantCulture).Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(2));
}
