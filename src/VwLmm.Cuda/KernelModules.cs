using System.Reflection;

namespace VwLmm.Cuda;

/// <summary>
/// The PTX that the build embeds in this assembly: one module per kernels/&lt;module&gt;.cu, each for compute_80 and
/// compute_90 (resource names "ptx/&lt;module&gt;.&lt;arch&gt;.ptx"), plus ptxas's resource report "ptx/resources.txt".
/// </summary>
public static class KernelModules
{
    public const string Compute80 = "compute_80", Compute90 = "compute_90";
    private const string Prefix = "ptx/", Suffix = ".ptx";

    private static readonly Assembly Assembly = typeof(KernelModules).Assembly;

    private static readonly HashSet<(string Module, string Arch)> Embedded = Assembly.GetManifestResourceNames()
        .Where(r => r.StartsWith(Prefix, StringComparison.Ordinal) && r.EndsWith(Suffix, StringComparison.Ordinal))
        .Select(r => r[Prefix.Length..^Suffix.Length])
        .Select(s => (s[..s.LastIndexOf('.')], s[(s.LastIndexOf('.') + 1)..]))
        .ToHashSet();

    /// <summary>Module names (kernels/*.cu file stems) with embedded PTX, sorted.</summary>
    public static IReadOnlyList<string> Names { get; } = Embedded.Select(e => e.Module).Distinct().Order(StringComparer.Ordinal).ToArray();

    /// <summary>The PTX target for a device: compute_90 PTX on compute capability 9.x and newer (the driver JITs it
    /// forward), compute_80 on 8.x. Older devices cannot run our kernels.</summary>
    public static string ArchFor(int computeMajor, int computeMinor) => computeMajor switch
    {
        >= 9 => Compute90,
        8 => Compute80,
        _ => throw new NotSupportedException($"compute capability {computeMajor}.{computeMinor} is below 8.0, the oldest our PTX targets"),
    };

    /// <summary>The PTX text of <paramref name="module"/> for <paramref name="arch"/> ("compute_80" or "compute_90").</summary>
    public static string GetPtx(string module, string arch)
    {
        using var stream = Assembly.GetManifestResourceStream($"{Prefix}{module}.{arch}{Suffix}")
            ?? throw new ArgumentException($"no embedded PTX for kernel module '{module}' ({arch}); kernels/{module}.cu must exist when ./build.sh build runs", nameof(module));
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>The build's resource report (artifacts/ptx/resources.txt): a "# compiler: …" line, then one line per
    /// kernel and real arch; null when the build embedded none.</summary>
    public static string? ResourceReport { get; } = ReadReport();

    /// <summary>ptxas's figures for every embedded kernel (registers, static shared memory, stack, spills per arch).</summary>
    public static IReadOnlyList<KernelResources> Resources() => ResourceReport == null ? [] : KernelResources.ParseReport(ResourceReport);

    private static string? ReadReport()
    {
        using var stream = Assembly.GetManifestResourceStream(Prefix + "resources.txt");
        if (stream == null) return null;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
