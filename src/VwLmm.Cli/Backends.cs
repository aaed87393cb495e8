using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Cuda;

namespace VwLmm.Cli;

/// <summary>The --device / --threads options every compute verb shares.</summary>
public static class Backends
{
    public static readonly string[] Options = ["--device", "--threads"];

    /// <summary>cpu, emu (CUDA kernels on the CPU emulator: for correctness, not speed), cuda, or auto (cuda when usable, else cpu).</summary>
    public static IBackend Create(CliArgs args, TextWriter log)
    {
        int threads = args.GetInt("--threads", Environment.ProcessorCount, 1, 1024);
        string device = args.Get("--device") ?? "cpu";
        switch (device)
        {
            case "cpu":
                return new CpuBackend(threads);
            case "emu":
                return new CudaBackend(new EmulatedRuntime());
            case "cuda":
            {
                var probe = CudaDevice.Probe();
                if (!probe.Available) throw new CliException($"--device cuda: {probe.Reason}");
                return new CudaBackend(new DriverRuntime());
            }
            case "auto":
            {
                var probe = CudaDevice.Probe();
                if (probe.Available) return new CudaBackend(new DriverRuntime());
                log.WriteLine($"note: no usable GPU ({probe.Reason}); running on the CPU");
                return new CpuBackend(threads);
            }
            default:
                throw new UsageException($"--device must be cpu, emu, cuda or auto, not '{device}'");
        }
    }
}
