using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Cuda;

namespace VwLmm.Cli;

/// <summary>The --device / --threads options every compute verb shares.</summary>
public static class Backends
{
    public static readonly string[] Options = ["--device", "--threads"];

    /// <summary>
    /// --device checked and resolved: cpu, emu (CUDA kernels on the CPU emulator: for correctness, not speed), cuda (its
    /// GPU checked usable), or auto turned into cuda when a GPU is usable, else cpu with a note on <paramref name="log"/>.
    /// </summary>
    public static string Device(CliArgs args, TextWriter log)
    {
        string device = args.Get("--device") ?? "cpu";
        if (device is not ("cpu" or "emu" or "cuda" or "auto"))
            throw new UsageException($"--device must be cpu, emu, cuda or auto, not '{device}'");
        if (device is "cpu" or "emu") return device;
        var probe = CudaDevice.Probe();
        if (probe.Available) return "cuda";
        if (device == "cuda") throw new CliException($"--device cuda: {probe.Reason}");
        log.WriteLine($"note: no usable GPU ({probe.Reason}); running on the CPU");
        return "cpu";
    }

    /// <summary>Environment variable that picks the CPU backend's GEMM: auto (default), openblas or avx512.</summary>
    public const string CpuGemmVariable = "VWLMM_CPU_GEMM";

    /// <summary>The backend of a device <see cref="Device"/> resolved; <paramref name="threads"/> serve the CPU.</summary>
    public static IBackend Create(string device, int threads) => device switch
    {
        "cpu" => new CpuBackend(threads, CpuGemmChoice()),
        "emu" => new CudaBackend(new EmulatedRuntime()),
        "cuda" => new CudaBackend(new DriverRuntime()),
        _ => throw new ArgumentException($"device '{device}' is not resolved", nameof(device)),
    };

    /// <summary>What <see cref="CpuGemmVariable"/> asks for, checked: an A/B switch for benchmarks, Auto when unset.</summary>
    public static CpuGemm CpuGemmChoice()
    {
        var value = Environment.GetEnvironmentVariable(CpuGemmVariable);
        CpuGemm gemm = value switch
        {
            null or "" or "auto" => CpuGemm.Auto,
            "openblas" => CpuGemm.OpenBlas,
            "avx512" => CpuGemm.Avx512,
            _ => throw new CliException($"{CpuGemmVariable}='{value}': expected auto, openblas or avx512"),
        };
        if (!CpuBackend.Supports(gemm))
            throw new CliException($"{CpuGemmVariable}=avx512: this CPU does not accelerate Vector512; use auto or openblas");
        return gemm;
    }

    /// <summary>The backend --device and --threads (default: every core) ask for.</summary>
    public static IBackend Create(CliArgs args, TextWriter log) =>
        Create(Device(args, log), args.GetInt("--threads", Environment.ProcessorCount, 1, 1024));
}
