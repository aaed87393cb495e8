namespace VwLmm.Cuda;

/// <summary>ptxas's figures for one kernel on one GPU arch (bytes except <see cref="Registers"/>); static shared memory
/// only, dynamic shared memory is a launch argument.</summary>
public sealed record KernelResources(string Module, string Kernel, string Arch, int Registers, int SharedBytes,
                                     int StackBytes, int SpillStoreBytes, int SpillLoadBytes)
{
    /// <summary>The most threads a block of this kernel may have for its registers on sm_80/sm_90, as the driver
    /// checks at launch: a block gets at most 65,536 registers, allocated to each warp in units of 256 (a thread's count
    /// rounds up to a multiple of 8), and at most 1,024 threads.</summary>
    public int MaxThreadsPerBlock => Math.Min(1024, 65536 / ((Math.Max(Registers, 1) + 7) / 8 * 8 * 32) * 32);

    /// <summary>The most shared memory, static and dynamic, a block may use on <paramref name="arch"/> once the
    /// launcher opts in (A100: 163 KiB, H100: 227 KiB).</summary>
    public static int MaxSharedBytesPerBlock(string arch) => arch switch
    {
        "sm_80" => 163 << 10,
        "sm_90" => 227 << 10,
        _ => throw new ArgumentException($"no shared-memory limit known for {arch}", nameof(arch)),
    };

    /// <summary>The resources.txt line: "module kernel arch registers smem stack spill_stores spill_loads".</summary>
    public override string ToString() =>
        $"{Module} {Kernel} {Arch} {Registers} {SharedBytes} {StackBytes} {SpillStoreBytes} {SpillLoadBytes}";

    /// <summary>Reads the report kernels/tools/ptxgen.c writes (artifacts/ptx/resources.txt); '#' lines are comments.</summary>
    public static IReadOnlyList<KernelResources> ParseReport(string text)
    {
        var rows = new List<KernelResources>();
        foreach (var line in text.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith('#')) continue;
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length != 8 || !f[3..].All(x => int.TryParse(x, out _)))
                throw new InvalidDataException($"resources.txt: malformed line '{line}'");
            rows.Add(new KernelResources(f[0], f[1], f[2], int.Parse(f[3]), int.Parse(f[4]), int.Parse(f[5]), int.Parse(f[6]), int.Parse(f[7])));
        }
        return rows;
    }

    /// <summary>Reads ptxas -v output: "Compiling entry function 'k' for 'sm_90'", then "N bytes stack frame, N bytes
    /// spill stores, N bytes spill loads", then "Used N registers, N bytes smem, …" (no smem figure means none).</summary>
    public static IReadOnlyList<KernelResources> ParsePtxasLog(string module, string arch, string log)
    {
        const string entryMarker = "Compiling entry function '";
        var rows = new List<KernelResources>();
        string? kernel = null;
        int stack = 0, spillStores = 0, spillLoads = 0;
        foreach (var line in log.Split('\n'))
        {
            int at = line.IndexOf(entryMarker, StringComparison.Ordinal);
            if (at >= 0)
            {
                int start = at + entryMarker.Length;
                kernel = line[start..line.IndexOf('\'', start)];
                stack = spillStores = spillLoads = 0;
            }
            else if (kernel != null && line.Contains(" bytes stack frame", StringComparison.Ordinal))
            {
                stack = FigureBefore(line, " bytes stack frame");
                spillStores = FigureBefore(line, " bytes spill stores");
                spillLoads = FigureBefore(line, " bytes spill loads");
            }
            else if (kernel != null && line.Contains("Used ", StringComparison.Ordinal) && line.Contains(" registers", StringComparison.Ordinal))
            {
                rows.Add(new KernelResources(module, kernel, arch, FigureBefore(line, " registers"), FigureBefore(line, " bytes smem"),
                                             stack, spillStores, spillLoads));
                kernel = null;
            }
        }
        return rows;
    }

    /// <summary>The number written just before <paramref name="label"/> in a line; 0 when the label is absent.</summary>
    private static int FigureBefore(string line, string label)
    {
        int end = line.IndexOf(label, StringComparison.Ordinal);
        if (end < 0) return 0;
        int start = end;
        while (start > 0 && char.IsAsciiDigit(line[start - 1])) start--;
        return int.Parse(line.AsSpan(start, end - start));
    }
}
