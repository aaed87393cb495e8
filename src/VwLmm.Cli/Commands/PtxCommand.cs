using VwLmm.Cuda;

namespace VwLmm.Cli.Commands;

public sealed class PtxCommand : ICommand
{
    public string Name => "ptx";
    public string Summary => "write the kernels' PTX and a resource report (registers, shared memory) per kernel";
    public string Help => """
        usage: vwlmm ptx [--arch sm_80|sm_90] [--out DIR]
          Prints the resource report of the embedded kernels for the arch (both when omitted); with --out also writes
          that arch's PTX (sm_80 runs compute_80's, sm_90 compute_90's) as DIR/<module>.<compute_XX>.ptx, and
          DIR/resources.txt (both archs).
        example: vwlmm ptx --arch sm_90 --out ptx
        """;
    public IReadOnlyList<string> Flags => [];
    public IReadOnlyList<string> Valued => ["--arch", "--out"];

    public int Run(CliArgs args, TextWriter stdout)
    {
        string? arch = args.Get("--arch");
        string? dir = args.Get("--out") is { } o ? CliArgs.NotAFile("--out", o) : null;
        if (arch is not null && arch is not ("sm_80" or "sm_90"))
            throw new UsageException($"--arch must be sm_80 or sm_90, not '{arch}'");
        var rows = KernelModules.Resources().Where(r => arch is null || r.Arch == arch).ToList();
        if (rows.Count == 0) throw new CliException("no embedded PTX: build with ./build.sh (it compiles kernels/*.cu with NVRTC or nvcc)");
        // Before the table: a folder that cannot be made is the whole answer, not a line after it.
        if (dir is not null) CliArgs.CreateDirectory("--out", dir);
        stdout.WriteLine($"{"module",-12} {"kernel",-34} {"arch",-6} {"regs",5} {"smem B",7} {"spill",6}");
        foreach (var r in rows.OrderBy(r => r.Module).ThenBy(r => r.Kernel).ThenBy(r => r.Arch))
            stdout.WriteLine($"{r.Module,-12} {r.Kernel,-34} {r.Arch,-6} {r.Registers,5} {r.SharedBytes,7} {r.SpillStoreBytes + r.SpillLoadBytes,6}");
        if (dir is not null)
        {
            // sm_80 runs compute_80's PTX, sm_90 compute_90's.
            var archs = PtxCompiler.PtxArchs.Where(p => arch is null || p.EndsWith(arch[3..], StringComparison.Ordinal)).ToList();
            foreach (string module in KernelModules.Names)
                foreach (string ptxArch in archs)
                    VwLmm.Core.AtomicFile.WriteAllText(Path.Combine(dir, $"{module}.{ptxArch}.ptx"), KernelModules.GetPtx(module, ptxArch));
            VwLmm.Core.AtomicFile.WriteAllText(Path.Combine(dir, "resources.txt"), KernelModules.ResourceReport!);
            // On stderr: stdout is the table, which a redirect may be collecting.
            Console.Error.WriteLine($"wrote PTX for {KernelModules.Names.Count} modules ({string.Join(", ", archs)}) to {dir}");
        }
        return 0;
    }
}
