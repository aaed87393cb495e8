using VwLmm.Core;

namespace VwLmm.Cli;

/// <summary>A usage mistake: printed as one line, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>A runtime failure with a message fit for the user (file, field, option): one line, exit code 1.</summary>
public sealed class CliException(string message) : Exception(message);

/// <summary>
/// Parsed command line of one verb: "--name value" options, "--flag" switches and positionals. Every option a verb
/// reads must be declared; anything else is a usage error naming it.
/// </summary>
public sealed class CliArgs
{
    private readonly Dictionary<string, string?> _options = new(StringComparer.Ordinal);
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    public List<string> Positionals { get; } = new();

    /// <param name="flags">options that take no value (everything else starting with -- takes the next word).</param>
    /// <param name="maxPositionals">how many positionals the verb takes; one more is a usage error naming it.</param>
    public static CliArgs Parse(IReadOnlyList<string> args, IEnumerable<string> flags, IEnumerable<string> valued, int maxPositionals)
    {
        var flagSet = new HashSet<string>(flags, StringComparer.Ordinal) { "--help", "--verbose", "--quiet" };
        var valuedSet = new HashSet<string>(valued, StringComparer.Ordinal);
        var r = new CliArgs();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (a == "--")
            {
                r.Positionals.AddRange(args.Skip(i + 1));
                break;
            }
            if (a.StartsWith("--", StringComparison.Ordinal) && a.Length > 2)
            {
                string name = a;
                string? value = null;
                int eq = a.IndexOf('=');
                if (eq > 0) { name = a[..eq]; value = a[(eq + 1)..]; }
                // The last of two would win silently, and which one the user meant is a guess.
                if (r._options.ContainsKey(name)) throw new UsageException($"option {name} is given twice");
                if (flagSet.Contains(name))
                {
                    if (value is not null) throw new UsageException($"option {name} takes no value");
                    r._options[name] = null;
                }
                else if (valuedSet.Contains(name))
                {
                    if (value is null)
                    {
                        if (i + 1 >= args.Count) throw new UsageException($"option {name} needs a value");
                        value = args[++i];
                    }
                    // "--out=" would otherwise write into the current directory, or fail deep inside naming nothing.
                    if (value.Length == 0) throw new UsageException($"option {name} needs a value, not an empty one");
                    r._options[name] = value;
                }
                else throw new UsageException($"unknown option {name}");
            }
            else r.Positionals.Add(a);
        }
        if (r.Positionals.Count > maxPositionals) throw new UsageException($"unexpected argument '{r.Positionals[maxPositionals]}'");
        return r;
    }

    public bool Has(string name) => _options.ContainsKey(name);

    public string? Get(string name) => _options.TryGetValue(name, out var v) ? v : null;

    public string Require(string name) => Get(name) ?? throw new UsageException($"missing required option {name}");

    /// <summary>
    /// <paramref name="path"/>, where a verb writes a directory, unless it names an existing file: the writes would
    /// otherwise fail deep inside with an I/O message about some path below it.
    /// </summary>
    public static string NotAFile(string source, string path) =>
        File.Exists(path) ? throw new CliException($"{source}: '{path}' is a file, not a directory") : path;

    /// <summary><paramref name="path"/>, where a verb writes a file, unless it names an existing directory: said
    /// before any work, rather than by the final rename in an I/O message that names no option.</summary>
    public static string NotADirectory(string source, string path) =>
        Directory.Exists(path) ? throw new CliException($"{source}: '{path}' is a directory, not a file") : path;

    /// <summary>
    /// Creates the directory <paramref name="path"/> a verb writes into (named by <paramref name="source"/>), or says in
    /// one line why it cannot.
    /// </summary>
    public static string CreateDirectory(string source, string path)
    {
        try
        {
            Directory.CreateDirectory(path);
            return path;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"{source}: cannot create the folder {path}: {AtomicFile.WhyNotCreated(path, e)}");
        }
    }

    public int GetInt(string name, int fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        var s = Get(name);
        if (s is null) return fallback;
        if (!int.TryParse(s, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int v) || v < min || v > max)
            throw new UsageException($"option {name}: '{s}' is not an integer in [{min}, {max}]");
        return v;
    }

    public double GetDouble(string name, double fallback)
    {
        var s = Get(name);
        if (s is null) return fallback;
        if (!double.TryParse(s, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v))
            throw new UsageException($"option {name}: '{s}' is not a number");
        return v;
    }
}
