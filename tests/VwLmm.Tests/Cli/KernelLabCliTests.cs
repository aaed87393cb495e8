using System.Text.Json;
using NUnit.Framework;
using VwLmm.Cuda;

namespace VwLmm.Tests.Cli;

/// <summary>`vwlmm bench --device emu|cuda` (the GPU kernel lab) through the real binary: on the emulator it covers every
/// kernel family and says its times are not GPU timings; without a GPU, --device cuda fails in one line; --model-bench runs
/// the model benchmark on the device instead. `vwlmm ptx` writes and tabulates the embedded kernels.</summary>
public class KernelLabCliTests
{
    private static readonly string[] Small =
        ["bench", "--device", "emu", "--batch", "1", "--image-tokens", "16", "--text-tokens", "8", "--repeats", "2", "--warmup", "1"];

    [Test]
    public void EmulatorTableCoversEveryKernelFileAndSaysItIsNotATiming()
    {
        var r = CliRunner.Run(Small);
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines[0], Does.StartWith("EMULATOR:").And.Contain("NOT GPU timings"));
        Assert.That(r.Stdout, Does.Contain("no % of peak"));
        var header = lines.Single(l => l.TrimStart().StartsWith("op ", StringComparison.Ordinal));
        Assert.That(header, Does.Contain("time µs").And.Contain("GB/s").And.Contain("TFLOP/s").And.Not.Contain("% peak"));
        foreach (string file in KernelModules.Names.Append("cuBLAS"))
            Assert.That(lines.Any(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains(file)), $"no row for {file}");
    }

    [Test]
    public void EmulatorJsonHasEveryKeyAndIsMarkedEmulated()
    {
        var r = CliRunner.Run([.. Small, "--json"]);
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        var root = JsonDocument.Parse(r.Stdout).RootElement;
        Assert.That(root.GetProperty("mode").GetString(), Is.EqualTo("kernel_lab"));
        Assert.That(root.GetProperty("device").GetString(), Is.EqualTo("emu"));
        Assert.That(root.GetProperty("emulated").GetBoolean(), Is.True);
        Assert.That(root.GetProperty("note").GetString(), Does.Contain("NOT GPU timings"));
        Assert.That(root.GetProperty("peak").ValueKind, Is.EqualTo(JsonValueKind.Null));
        Assert.That(root.GetProperty("l2_flush_bytes").GetInt64(), Is.EqualTo(2 * root.GetProperty("l2_bytes").GetInt64()));
        var kernels = root.GetProperty("kernels").EnumerateArray().ToList();
        Assert.That(kernels.Select(k => k.GetProperty("file").GetString()), Is.SupersetOf(KernelModules.Names.Append("cuBLAS")));
        foreach (var k in kernels)
        {
            string op = k.GetProperty("op").GetString()!;
            foreach (var key in new[] { "time_us", "bytes", "gb_per_s" })
                Assert.That(k.GetProperty(key).GetDouble(), Is.Positive, $"{op}: {key}");
            // Throughputs are the cost model over the median time.
            double us = k.GetProperty("time_us").GetDouble();
            Assert.That(k.GetProperty("gb_per_s").GetDouble(), Is.EqualTo(k.GetProperty("bytes").GetDouble() / (us * 1e3)).Within(1e-9).Percent, op);
            Assert.That(k.GetProperty("tflop_per_s").GetDouble(), Is.EqualTo(k.GetProperty("flops").GetDouble() / (us * 1e6)).Within(1e-9).Percent, op);
            Assert.That(k.TryGetProperty("percent_of_peak", out _), Is.False, $"{op}: no peak on the emulator");
        }
    }

    [Test]
    public void CudaWithoutGpuFailsInOneLine()
    {
        var probe = CudaDevice.Probe();
        if (probe.Available) Assert.Ignore("a GPU is present");
        CliRunner.AssertOneLineError(CliRunner.Run("bench", "--device", "cuda"), 1, "vwlmm bench: --device cuda: ", probe.Reason);
    }

    [Test]
    public void OpsProfileNeedsTheModelBenchmark() =>
        CliRunner.AssertOneLineError(CliRunner.Run("bench", "--device", "emu", "--ops"), 2, "--ops");

    /// <summary>--model-bench runs the model benchmark (train step, forward, prefill, decode) on the CUDA backend instead of
    /// the lab, with the CPU benchmark's keys; the emulator has no fp32 peak, so percent_of_peak is null. Decode time is a
    /// generation less a prefill, so the generation decodes enough tokens (8, median of 3) to stand above the prefill's
    /// jitter on a loaded machine: with 2 tokens and 2 repeats it fell below it under CI-like load.</summary>
    [Test]
    public void ModelBenchmarkRunsOnTheCudaBackend()
    {
        var r = CliRunner.Run("bench", "--device", "emu", "--model-bench", "--batch", "1", "--image-tokens", "4", "--text-tokens", "4",
                              "--decode-tokens", "8", "--repeats", "3", "--warmup", "1", "--json");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        var root = JsonDocument.Parse(r.Stdout).RootElement;
        Assert.That(root.GetProperty("device").GetString(), Is.EqualTo("emu"));
        Assert.That(root.TryGetProperty("mode", out _), Is.False, "not the kernel lab");
        foreach (var key in new[] { "train_step_ms", "forward_ms", "prefill_ms", "decode_tokens_per_s", "gflops" })
            Assert.That(root.GetProperty(key).GetDouble(), Is.Positive, key);
        Assert.That(root.GetProperty("percent_of_peak").ValueKind, Is.EqualTo(JsonValueKind.Null));
    }

    [Test]
    public void PtxWritesEveryModuleForItsArchAndTabulatesItsEntries()
    {
        string dir = CliRunner.TempDir();
        var r = CliRunner.Run("ptx", "--arch", "sm_90", "--out", dir);
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stderr, Does.StartWith($"wrote PTX for {KernelModules.Names.Count} modules (compute_90)"), "the note is not in the table");
        var rows = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1)
                    .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToList();
        Assert.That(rows.Select(c => c[2]), Is.All.EqualTo("sm_90"));
        foreach (string module in KernelModules.Names)
        {
            Assert.That(File.ReadAllText(Path.Combine(dir, $"{module}.{PtxCompiler.PtxArchs[^1]}.ptx")), Does.Contain(".version").And.Contain(".entry"), module);
            Assert.That(File.Exists(Path.Combine(dir, $"{module}.{PtxCompiler.PtxArchs[0]}.ptx")), Is.False, $"{module}: sm_90 runs compute_90's PTX only");
            // The table lists exactly the entry points the written PTX declares.
            string ptx = File.ReadAllText(Path.Combine(dir, $"{module}.{PtxCompiler.PtxArchs[^1]}.ptx"));
            var entries = System.Text.RegularExpressions.Regex.Matches(ptx, @"\.entry\s+(\w+)").Select(m => m.Groups[1].Value).Order().ToList();
            Assert.That(rows.Where(c => c[0] == module).Select(c => c[1]).Order(), Is.EqualTo(entries), module);
        }
        Assert.That(File.Exists(Path.Combine(dir, "resources.txt")));
        CliRunner.AssertOneLineError(CliRunner.Run("ptx", "--arch", "sm_70"), 2, "--arch", "sm_70");
        Directory.Delete(dir, recursive: true);
    }
}
