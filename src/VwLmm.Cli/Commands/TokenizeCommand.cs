using System.Text.Json;
using VwLmm.Data.Text;

namespace VwLmm.Cli.Commands;

public sealed class TokenizeCommand : ICommand
{
    public string Name => "tokenize";
    public string Summary => "text → token ids (or ids → text with --decode) with a SentencePiece model";
    public string Help => """
        usage: vwlmm tokenize --tokenizer PATH [--no-bos] TEXT
               vwlmm tokenize --tokenizer PATH --decode IDS
          Prints the ids as a JSON array; with --decode, IDS is a JSON array (or ids separated by white space) and the text is printed.
          --tokenizer PATH   a SentencePiece tokenizer.model (BPE)
          --no-bos           do not prepend BOS
        example: vwlmm tokenize --tokenizer model/tokenizer.model "a red circle"
        """;
    public IReadOnlyList<string> Flags => ["--no-bos", "--decode"];
    public IReadOnlyList<string> Valued => ["--tokenizer"];
    public int MaxPositionals => int.MaxValue;

    public int Run(CliArgs args, TextWriter stdout)
    {
        var tok = SentencePieceTokenizer.Load(args.Require("--tokenizer"));
        string text = string.Join(" ", args.Positionals);
        if (args.Has("--decode"))
        {
            if (args.Has("--no-bos")) throw new UsageException("--no-bos shapes encoding; --decode prints the ids given");
            if (args.Positionals.Count == 0) throw new UsageException("give the IDS to decode");
            int[] ids = ParseIds(text);
            stdout.WriteLine(tok.Decode(ids));
            return 0;
        }
        if (args.Positionals.Count == 0) throw new UsageException("give the TEXT to tokenize");
        stdout.WriteLine(JsonSerializer.Serialize(tok.Encode(text, addBos: !args.Has("--no-bos"))));
        return 0;
    }

    private static int[] ParseIds(string s)
    {
        s = s.Trim();
        try
        {
            if (s.StartsWith('[')) return JsonSerializer.Deserialize<int[]>(s) ?? [];
            return s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
        }
        catch (Exception e) when (e is JsonException or FormatException or OverflowException)
        {
            throw new UsageException($"--decode: '{s}' is not a list of integer ids");
        }
    }
}
