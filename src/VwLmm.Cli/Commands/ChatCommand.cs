using System.Globalization;
using VwLmm.Data.Conversations;
using VwLmm.Data.Images;
using VwLmm.Model;

namespace VwLmm.Cli.Commands;

public sealed class ChatCommand : ICommand
{
    public string Name => "chat";
    public string Summary => "ask a model about an image (one question, or an interactive loop without one)";
    public string Help => """
        usage: vwlmm chat --model DIR --image X [QUESTION] [--template NAME] [--max-new-tokens N]
                          [--temperature T] [--top-k K] [--top-p P] [--seed S] [--device D] [--threads N]
          Greedy by default (temperature 0). Without QUESTION, reads questions from standard input until EOF; each turn
          keeps the conversation so far.
          --template   vicuna_v1 (default), mistral, plain, shapes_chat
          --seed S     seeds the sampling of --temperature > 0 (default 1): the same seed gives the same answers
        example: vwlmm chat --model runs/demo/model --image world/images/0001.png "what colour is the circle ?"
        """;
    public IReadOnlyList<string> Flags => ["--allow-unused"];
    public IReadOnlyList<string> Valued => [.. Backends.Options, "--model", "--image", "--template", "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed"];
    public int MaxPositionals => int.MaxValue;

    public int Run(CliArgs args, TextWriter stdout)
    {
        var template = ConversationTemplate.Get(args.Get("--template") ?? "vicuna_v1");
        var options = new SamplingOptions
        {
            MaxNewTokens = args.GetInt("--max-new-tokens", 128, 1, 1 << 20),
            Temperature = (float)args.GetDouble("--temperature", 0),
            TopK = args.GetInt("--top-k", 0, 0),
            TopP = (float)args.GetDouble("--top-p", 1),
            Seed = (ulong)args.GetInt("--seed", 1, 0),
        };
        if (options.Temperature < 0 || options.TopP is <= 0 or > 1) throw new UsageException("--temperature must be ≥ 0 and --top-p in (0, 1]");
        string modelDir = args.Require("--model");
        // Decoded before the model loads: a wrong image path should not cost loading gigabytes of weights first.
        var image = ImageCodec.Decode(args.Require("--image"));
        using var backend = Backends.Create(args, Console.Error);
        var (model, tok) = Shared.LoadModel(backend, modelDir, args.Has("--allow-unused"), Console.Error);
        using (model)
        {
            var pixels = Shared.Preprocessor(model.Config).Process(image);
            options = options with { StopIds = [tok.EosId] };
            using var gen = new Generator(model);
            var turns = new List<Turn>();
            string Ask(string question)
            {
                turns.Add(new Turn(Speaker.Human, (turns.Count == 0 ? Llava.ImagePlaceholder + "\n" : "") + question));
                var prompt = template.EncodePrompt(turns, hasImage: true, tok);
                var ids = gen.Generate([prompt], pixels, options)[0].Where(id => id != tok.EosId).ToArray();
                string answer = tok.Decode(ids).Trim();
                turns.Add(new Turn(Speaker.Gpt, answer));
                return answer;
            }
            if (args.Positionals.Count > 0)
            {
                stdout.WriteLine(Ask(string.Join(" ", args.Positionals)));
                return 0;
            }
            while (true)
            {
                if (!Console.IsInputRedirected) stdout.Write("> ");
                string? line = Console.In.ReadLine();
                if (line is null) return 0;
                if (line.Trim().Length == 0) continue;
                stdout.WriteLine(Ask(line.Trim()));
            }
        }
    }
}
