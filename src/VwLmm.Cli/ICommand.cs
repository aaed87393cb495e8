namespace VwLmm.Cli;

/// <summary>One verb of the vwlmm command. Flags and Valued declare every option it accepts.</summary>
public interface ICommand
{
    string Name { get; }
    string Summary { get; }
    /// <summary>Full help text: usage line, options, one example.</summary>
    string Help { get; }
    IReadOnlyList<string> Flags { get; }
    IReadOnlyList<string> Valued { get; }
    /// <summary>How many positional arguments the verb takes; one more is a usage error naming it, not silently dropped.</summary>
    int MaxPositionals => 0;
    /// <summary>Runs the verb; returns the exit code. Throws UsageException / CliException for user errors.</summary>
    int Run(CliArgs args, TextWriter stdout);
}
