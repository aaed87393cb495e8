using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using VwLmm.Cuda.Native;

namespace VwLmm.Cuda;

/// <summary>What one NVRTC compile produced: PTX text for a virtual arch (compute_XX), a CUBIN for a real one (sm_XX).</summary>
public sealed record PtxCompileResult(string Name, string Arch, byte[] Output, string Log)
{
    public bool IsCubin => Arch.StartsWith("sm_", StringComparison.Ordinal);

    public string Ptx => IsCubin ? throw new InvalidOperationException($"{Name} was compiled for {Arch}: a CUBIN, not PTX") : Encoding.UTF8.GetString(Output);
}

/// <summary>
/// kernels/*.cu → PTX or CUBIN through NVRTC, with the options kernels/tools/ptxgen.c uses at build time (that file says
/// why each is chosen): -std=c++17 -lineinfo, no fast math, no -default-device. A CUBIN compile runs ptxas, which checks
/// registers and shared memory; its "-v" figures come back as <see cref="KernelResources"/>.
/// </summary>
public static partial class PtxCompiler
{
    /// <summary>The PTX targets embedded in VwLmm.Cuda, and the real archs every kernel is validated for.</summary>
    public static readonly IReadOnlyList<string> PtxArchs = [KernelModules.Compute80, KernelModules.Compute90];
    public static readonly IReadOnlyList<string> ValidationArchs = ["sm_80", "sm_90"];

    /// <summary>NVRTC's version, e.g. "11.8".</summary>
    public static unsafe string Version
    {
        get
        {
            Nvrtc.EnsureLoaded();
            int major, minor;
            Check(Nvrtc.nvrtcVersion(&major, &minor), "nvrtcVersion");
            return $"{major}.{minor}";
        }
    }

    /// <summary>The NVRTC options for <paramref name="arch"/> ("compute_80", "sm_90", …).</summary>
    public static IReadOnlyList<string> Options(string arch, IEnumerable<string> includePaths) =>
        [$"--gpu-architecture={arch}", "--std=c++17", "-lineinfo", .. includePaths.Select(p => $"--include-path={p}")];

    /// <summary>
    /// Compiles <paramref name="source"/> (file name <paramref name="name"/>, used in diagnostics) for <paramref name="arch"/>.
    /// <paramref name="headers"/> are (include name, text) pairs that #include finds before searching <paramref name="includePaths"/>.
    /// Throws <see cref="CudaException"/> whose message carries the first error line of the log.
    /// </summary>
    public static PtxCompileResult Compile(string source, string name, string arch,
                                           IEnumerable<(string Name, string Content)> headers, IEnumerable<string>? includePaths = null)
    {
        if (!ArchRegex().IsMatch(arch)) throw new ArgumentException($"arch '{arch}' is neither compute_XX nor sm_XX", nameof(arch));
        Nvrtc.EnsureLoaded();
        var headerList = headers.ToArray();
        var options = Options(arch, includePaths ?? []).ToList();
        bool cubin = arch.StartsWith("sm_", StringComparison.Ordinal);
        if (cubin) options.AddRange(["-Xptxas", "-v"]);

        var (rc, output, log) = Run(source, name, headerList, options, cubin);
        // NVRTC 11.8 drops ptxas's error text from the log when -v is on: compile once more without it to report the error.
        if (rc != Nvrtc.Success && cubin)
            (_, _, log) = Run(source, name, headerList, options.GetRange(0, options.Count - 2), cubin);
        if (rc != Nvrtc.Success)
            throw new CudaException($"nvrtcCompileProgram({name}, {arch})", rc, Nvrtc.ErrorName(rc), FirstErrorLine(log), log);
        return new PtxCompileResult(name, arch, output!, log);
    }

    /// <summary>Compiles CUBINs for sm_80 and sm_90 (failing like <see cref="Compile"/>) and returns ptxas's figures.</summary>
    public static IReadOnlyList<KernelResources> Validate(string source, string name,
                                                          IEnumerable<(string Name, string Content)> headers, IEnumerable<string>? includePaths = null)
    {
        var headerList = headers.ToArray();
        var module = Path.GetFileNameWithoutExtension(name);
        return ValidationArchs
            .SelectMany(arch => KernelResources.ParsePtxasLog(module, arch, Compile(source, name, arch, headerList, includePaths).Log))
            .ToArray();
    }

    private static unsafe (int Rc, byte[]? Output, string Log) Run(string source, string name, (string Name, string Content)[] headers,
                                                                   IReadOnlyList<string> options, bool cubin)
    {
        var strings = new List<nint>();
        byte* Utf8(string s)
        {
            var p = Marshal.StringToCoTaskMemUTF8(s);
            strings.Add(p);
            return (byte*)p;
        }
        nint program = 0;
        try
        {
            var headerTexts = stackalloc byte*[Math.Max(headers.Length, 1)];
            var headerNames = stackalloc byte*[Math.Max(headers.Length, 1)];
            for (int i = 0; i < headers.Length; i++)
            {
                headerTexts[i] = Utf8(headers[i].Content);
                headerNames[i] = Utf8(headers[i].Name);
            }
            Check(Nvrtc.nvrtcCreateProgram(&program, Utf8(source), Utf8(name), headers.Length, headerTexts, headerNames),
                  $"nvrtcCreateProgram({name})");
            var opts = stackalloc byte*[options.Count];
            for (int i = 0; i < options.Count; i++) opts[i] = Utf8(options[i]);
            int rc = Nvrtc.nvrtcCompileProgram(program, options.Count, opts);

            nuint size;
            Check(Nvrtc.nvrtcGetProgramLogSize(program, &size), $"nvrtcGetProgramLogSize({name})");
            var logBytes = new byte[(int)size];
            fixed (byte* p = logBytes) Check(Nvrtc.nvrtcGetProgramLog(program, p), $"nvrtcGetProgramLog({name})");
            string log = Encoding.UTF8.GetString(logBytes).TrimEnd('\0');
            if (rc != Nvrtc.Success) return (rc, null, log);

            byte[] output;
            if (cubin)
            {
                Check(Nvrtc.nvrtcGetCUBINSize(program, &size), $"nvrtcGetCUBINSize({name})");
                output = new byte[(int)size];
                fixed (byte* p = output) Check(Nvrtc.nvrtcGetCUBIN(program, p), $"nvrtcGetCUBIN({name})");
            }
            else
            {
                Check(Nvrtc.nvrtcGetPTXSize(program, &size), $"nvrtcGetPTXSize({name})");
                output = new byte[(int)size];
                fixed (byte* p = output) Check(Nvrtc.nvrtcGetPTX(program, p), $"nvrtcGetPTX({name})");
                output = output.AsSpan().TrimEnd((byte)0).ToArray();
            }
            return (rc, output, log);
        }
        finally
        {
            if (program != 0) Nvrtc.nvrtcDestroyProgram(&program);
            foreach (var p in strings) Marshal.FreeCoTaskMem(p);
        }
    }

    private static void Check(int rc, string operation)
    {
        if (rc != Nvrtc.Success) throw new CudaException(operation, rc, Nvrtc.ErrorName(rc), "NVRTC call failed");
    }

    /// <summary>The log line a reader needs: the first one that reports an error, else the first non-empty one.</summary>
    private static string FirstErrorLine(string log)
    {
        var lines = log.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        return lines.FirstOrDefault(l => l.Contains("error", StringComparison.OrdinalIgnoreCase)) ?? lines.FirstOrDefault() ?? "compilation failed with an empty log";
    }

    [GeneratedRegex(@"^(compute|sm)_\d+$")]
    private static partial Regex ArchRegex();
}
