using System.Reflection;

namespace VwLmm.Cli;

public static class Program
{
    /// <summary>Every verb, in the order `vwlmm --help` lists them.</summary>
    public static readonly ICommand[] Commands =
    [
        new Commands.DemoCommand(),
        new Commands.TrainCommand(),
        new Commands.ChatCommand(),
        new Commands.EvalCommand(),
        new Commands.VisualizeCommand(),
        new Commands.ForwardCommand(),
        new Commands.InspectCommand(),
        new Commands.TokenizeCommand(),
        new Commands.PreprocessCommand(),
        new Commands.DataShapesGridCommand(),
        new Commands.PtxCommand(),
        new Commands.BenchCommand(),
    ];

    public static string Version =>
        typeof(Program).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Entry point shared by Main and in-process tests. Exit codes: 0 ok, 1 runtime error, 2 usage error.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        // Global options may come before the verb as well as after it; the verb's parser reads them either way.
        int globals = args.TakeWhile(a => a is "--verbose" or "--quiet").Count();
        if (globals > 0 && globals < args.Length) args = [.. args[globals..], .. args[..globals]];
        bool verbose = args.Contains("--verbose");
        if (args.Length == 0)
        {
            stderr.Write(Overview());
            return 2;
        }
        if (args[0] is "--help" or "-h" or "help")
        {
            stdout.Write(Overview());
            return 0;
        }
        if (args[0] == "--version")
        {
            stdout.WriteLine($"vwlmm {Version}");
            return 0;
        }
        var cmd = FindCommand(args, out int consumed);
        if (cmd is null)
        {
            // A two-word verb's first word alone ("vwlmm data --help") names the verbs it starts.
            var started = Commands.Where(c => c.Name.StartsWith(args[0] + " ", StringComparison.Ordinal)).Select(c => c.Name).ToList();
            stderr.WriteLine(started.Count > 0
                ? $"vwlmm: '{args[0]}' needs a second word: {string.Join(", ", started)} (see vwlmm {started[0]} --help)"
                : $"vwlmm: unknown command '{args[0]}' (see vwlmm --help)");
            return 2;
        }
        try
        {
            var parsed = CliArgs.Parse(args.Skip(consumed).ToArray(), cmd.Flags, cmd.Valued, cmd.MaxPositionals);
            if (parsed.Has("--help") || parsed.Positionals is ["-h"])
            {
                stdout.Write(cmd.Help.TrimEnd() + Environment.NewLine);
                return 0;
            }
            return cmd.Run(parsed, stdout);
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"vwlmm {cmd.Name}: {e.Message} (see vwlmm {cmd.Name} --help)");
            return 2;
        }
        catch (Exception e)
        {
            stderr.WriteLine($"vwlmm {cmd.Name}: {(verbose ? e.ToString() : OneLine(e))}");
            return 1;
        }
    }

    private static ICommand? FindCommand(string[] args, out int consumed)
    {
        // Two-word verbs ("data shapesgrid") win over one-word ones.
        if (args.Length >= 2)
        {
            var two = Commands.FirstOrDefault(c => c.Name == args[0] + " " + args[1]);
            if (two is not null) { consumed = 2; return two; }
        }
        consumed = 1;
        return Commands.FirstOrDefault(c => c.Name == args[0]);
    }

    /// <summary>The message a user sees: the exception's own text, unwrapped from aggregate/type-init wrappers.</summary>
    public static string OneLine(Exception e)
    {
        while (e is AggregateException or TypeInitializationException && e.InnerException is not null)
            e = e.InnerException;
        // ArgumentException appends " (Parameter 'name')", and ArgumentOutOfRangeException a line "Actual value was
        // v.": a C# parameter name tells a user nothing, and our messages name the value themselves.
        string msg = e.Message;
        if (e is ArgumentOutOfRangeException { ActualValue: { } v }) msg = msg.Replace($"{Environment.NewLine}Actual value was {v}.", "");
        if (e is ArgumentException { ParamName: { } p }) msg = msg.Replace($" (Parameter '{p}')", "");
        msg = msg.ReplaceLineEndings(" ");
        return e is CliException or IOException or InvalidDataException or FormatException or ArgumentException or UnauthorizedAccessException
                 or InsufficientMemoryException
            ? msg : $"{msg} ({e.GetType().Name})";
    }

    private static string Overview()
    {
        var w = new StringWriter();
        w.WriteLine($"vwlmm {Version} — train and run VW-LMM vision-language models (CPU and CUDA)");
        w.WriteLine();
        w.WriteLine("usage: vwlmm <command> [options]   (vwlmm <command> --help for details)");
        w.WriteLine();
        foreach (var c in Commands) w.WriteLine($"  {c.Name,-16} {c.Summary}");
        w.WriteLine();
        w.WriteLine("global: --help, --version, --verbose (stack traces on errors), --quiet");
        return w.ToString();
    }
}
