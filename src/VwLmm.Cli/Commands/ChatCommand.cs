using System.Globalization;
using System.Text;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Data.Images;
using VwLmm.Data.Text;
using VwLmm.Model;

namespace VwLmm.Cli.Commands;

public sealed class ChatCommand : ICommand
{
    public string Name => "chat";
    public string Summary => "ask a model about an image (one question, or an interactive loop without one)";
    public string Help => $$"""
        usage: vwlmm chat --model DIR --image X [QUESTION] [--template NAME] [--max-new-tokens N]
                          [--temperature T] [--top-k K] [--top-p P] [--seed S] [--weights bf16] [--device D] [--threads N]
          Greedy by default (temperature 0). Without QUESTION, reads questions from standard input until EOF; each turn
          keeps the conversation so far, and prefills only what it adds (the image and earlier turns stay in the KV
          cache). The answer is printed as it is decoded. A question that leaves no room in the model's context is
          skipped with a note on stderr, the next one is read, and the exit code at the end is 1.
          {{Shared.TemplateHelp}}
          --max-new-tokens N   at most N new tokens (default 128), and at most what is left of the model's context
          --temperature T, --top-k K, --top-p P   sample from softmax(logits / T) (T > 0), restricted to the K most
                       likely tokens, then to the fewest of those whose share of them reaches P
          --seed S     seeds the sampling (default 1): the same seed gives the same answers; each turn of a
                       conversation draws from its own stream
          {{Shared.WeightsHelp}}
          {{Shared.AllowUnusedHelp}}
        example: vwlmm chat --model llava-v1.5-7b --image cat.jpg "What is in the picture?"
                 (`vwlmm demo` ends by printing a chat line for its own model, runs/demo/model)
        """;
    public IReadOnlyList<string> Flags => ["--allow-unused"];
    public IReadOnlyList<string> Valued => [.. Backends.Options, .. Shared.InferenceOptions, "--model", "--image", "--template", "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed"];
    public int MaxPositionals => int.MaxValue;

    public int Run(CliArgs args, TextWriter stdout)
    {
        var templateOption = Shared.TemplateOption(args);
        const int DefaultMaxNewTokens = 128;
        var options = new SamplingOptions
        {
            MaxNewTokens = args.GetInt("--max-new-tokens", DefaultMaxNewTokens, 1, 1 << 20),
            Temperature = (float)args.GetDouble("--temperature", 0),
            TopK = args.GetInt("--top-k", 0, 0),
            TopP = (float)args.GetDouble("--top-p", 1),
            Seed = (ulong)args.GetInt("--seed", 1, 0),
        };
        if (options.Temperature < 0 || options.TopP is <= 0 or > 1) throw new UsageException("--temperature must be ≥ 0 and --top-p in (0, 1]");
        if (options.Temperature == 0 && (args.Has("--top-k") || args.Has("--top-p") || args.Has("--seed")))
            Console.Error.WriteLine("warning: --top-k, --top-p and --seed shape sampling, which needs --temperature > 0; decoding greedily");
        string modelDir = args.Require("--model");
        // Decoded before the model loads: a wrong image path should not cost loading gigabytes of weights first.
        var image = ImageCodec.Decode(args.Require("--image"));
        var weights = Shared.Weights(args);
        using var backend = Backends.Create(args, Console.Error);
        var (model, tok) = Shared.LoadModel(backend, modelDir, args.Has("--allow-unused"), Console.Error, weights);
        using (model)
        {
            var pixels = Shared.Preprocessor(model.Config).Process(image);
            var template = Shared.Template(templateOption, model.Config);
            var stops = template.StopIds(tok);
            options = options with { StopIds = stops };
            using var gen = new Generator(model);
            var splice = new BatchBuilder(model.Vision.TokensPerImage, int.MaxValue, model.Config.Llm.VocabSize);
            var turns = new List<Turn>();
            var stream = new StreamingDecoder(tok);
            // Null once answered; else why the question was not asked (the conversation stays as it was).
            string? Ask(string question)
            {
                turns.Add(new Turn(Speaker.Human, (turns.Count == 0 ? Llava.ImagePlaceholder + "\n" : "") + question));
                var prompt = template.EncodePrompt(turns, hasImage: true, tok);
                // Small models have short contexts (the demo's is 128): an answer gets at most what is left of it. Each
                // turn samples from its own stream, so that asking again draws anew.
                int context = model.Config.Llm.MaxPositionEmbeddings;
                int used = splice.SplicedLength(prompt);
                if (used >= context)
                {
                    turns.RemoveAt(turns.Count - 1);
                    return $"the conversation in template {template.Name} fills the model's context of {context} positions ({used} with this question)";
                }
                int left = context - used;
                var turn = options with { MaxNewTokens = Math.Min(options.MaxNewTokens, left), Seed = options.Seed + (ulong)(turns.Count / 2) };
                // The answer is printed as it is decoded: a 7B model on a CPU takes seconds per word.
                var answer = new StringBuilder();
                void Print(string text)
                {
                    answer.Append(text);
                    stdout.Write(text);
                    stdout.Flush();
                }
                // Each turn's prompt repeats the conversation so far: Continue prefills only what the cache lacks.
                gen.Continue(prompt, pixels, turn, (_, id) =>
                {
                    if (!stops.Contains(id)) Print(stream.Push(id));
                });
                Print(stream.Finish());
                stdout.WriteLine();
                turns.Add(new Turn(Speaker.Gpt, answer.ToString()));
                return null;
            }
            if (args.Positionals.Count > 0)
                return Ask(string.Join(" ", args.Positionals)) is { } why ? throw new CliException(why) : 0;
            // A question that does not fit is said and skipped, and the next one is read: a shorter one may fit. The exit
            // code still tells a script that one went unasked.
            bool skipped = false;
            while (true)
            {
                if (!Console.IsInputRedirected) stdout.Write("> ");
                string? line = Console.In.ReadLine();
                if (line is null) return skipped ? 1 : 0;
                if (line.Trim().Length == 0) continue;
                if (Ask(line.Trim()) is { } why)
                {
                    Console.Error.WriteLine($"vwlmm chat: {why}; not asked");
                    skipped = true;
                }
            }
        }
    }
}
